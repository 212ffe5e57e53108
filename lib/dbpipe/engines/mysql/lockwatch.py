"""A bound on a MariaDB/MySQL dump's wait for a lock (dbpipe-dump --lock-timeout).

mariadb-dump has no option for its session's lock_wait_timeout and refuses
init-command in an option file, so a session holding LOCK TABLES ... WRITE
(or an ALTER TABLE queued for its exclusive lock) would keep the dump - and
Nextcloud in maintenance mode - waiting as long as the server's
lock_wait_timeout allows: a day, a year.  So a watchdog thread looks at the
dump's session in PROCESSLIST about once a second, on a connection of its own
with the dump's credentials, and ends the dump tool once that session has
waited for a lock longer than the timeout.  The server aborts a waiting
statement as soon as its client is gone, so nothing is left waiting there.

The dump's session is told apart from the account's others (Nextcloud's own,
its cron's) by two marks, so the watchdog never judges someone else's wait:
it was opened after the watchdog's connection (connection ids only grow),
and it is the first such session seen running one of mariadb-dump's own
statements.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable

from ...errors import DbpipeError, TempFailure
from ...log import log

POLL = 1.0          # seconds between two looks at the dump's session
JOIN_WAIT = 10.0    # seconds to wait for a look under way when the dump ends
# statements only mariadb-dump/mysqldump send: its data query and its questions about each table
DUMP_STATEMENT = re.compile(r"^\s*(SELECT /\*!40001 SQL_NO_CACHE \*/|show fields from |show table status like "
                            r"|SHOW CREATE TABLE |SHOW TRIGGERS LIKE )")
WAITING = re.compile(r"^Waiting for (.*(lock|flush))$", re.IGNORECASE)
TABLE = re.compile(r"\b(?:FROM|TABLE)\s+`((?:[^`]|``)+)`", re.IGNORECASE)
LITERAL = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"")
QUERY_SHOWN = 80    # characters of a holder's statement in the error line
SESSIONS_SHOWN = 2
# granted metadata locks that keep a reader out (or, upgrading, queue it behind), strongest first
MODES = ("MDL_EXCLUSIVE", "MDL_SHARED_NO_READ_WRITE", "MDL_SHARED_NO_WRITE", "MDL_SHARED_UPGRADABLE")
HOLDERS = ("SELECT THREAD_ID, LOCK_MODE FROM information_schema.METADATA_LOCK_INFO "
           "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND THREAD_ID NOT IN (%s, %s)")
# without the metadata_lock_info plugin: the sessions that are not waiting themselves, on
# the table's database (or none) first, longest in their state first
LIKELY_HOLDERS = ("SELECT ID FROM information_schema.PROCESSLIST WHERE ID NOT IN (%s, %s) "
                  "AND (DB = %s OR DB IS NULL) AND COALESCE(STATE, '') NOT LIKE 'Waiting for%%' "
                  "AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Killed') "
                  "AND USER NOT IN ('system user', 'event_scheduler') "
                  "ORDER BY DB = %s DESC, TIME DESC, ID")
SESSION = "SELECT USER, HOST, COMMAND, TIME, INFO FROM information_schema.PROCESSLIST WHERE ID = %s"


@contextlib.contextmanager
def lock_watch(connect: Callable[[], contextlib.AbstractContextManager], timeout: float):
    """A LockWatch (for DumpCommand.watch) while the context lasts, its
    connection opened now - before the dump tool's.  None when the timeout is
    0 (wait for ever).  When the watchdog cannot connect the dump runs
    unwatched: mostly its tool then fails to connect too and says why in the
    one error line; a dump that succeeds anyway warns that it ran unbounded."""
    if not timeout:
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            watch = LockWatch(stack.enter_context(connect()), timeout)
        except (DbpipeError, RuntimeError) as exc:   # RuntimeError: pymysql lacks the auth method's package
            log.debug("no lock watch: %s", exc)
            watch = unwatched(exc)
        yield watch


def unwatched(why: Exception):
    """The watch of a dump the watchdog could not connect for: a dump tool
    that fails says why itself; one that succeeds warns that it ran unbounded."""
    @contextlib.contextmanager
    def watch(child):
        yield
        if child.returncode == 0:
            log.warning("--lock-timeout was not enforced for this dump: %s", why)
    return watch


class LockWatch:
    """The watchdog of one dump; called with the running dump tool, it is the
    context that watches it and, on leaving, raises TempFailure if it had to
    end the tool."""

    def __init__(self, conn, timeout: float):
        import pymysql  # already imported by the connection

        self.conn, self.timeout, self.errors = conn, timeout, pymysql.err.Error
        try:
            self.own_id, self.user = self._rows("SELECT CONNECTION_ID(), SUBSTRING_INDEX(USER(), '@', 1)")[0]
        except self.errors as exc:
            raise DbpipeError(f"cannot ask the server for this connection: {exc}") from None
        self.dump_id: int | None = None
        self.reason: str | None = None
        self._stop = threading.Event()

    @contextlib.contextmanager
    def __call__(self, child):
        thread = threading.Thread(target=self._run, args=(child,), name="dbpipe-lock-watch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(JOIN_WAIT)
            if self.reason is not None:
                raise TempFailure(self.reason)

    def _run(self, child) -> None:
        try:
            while not self._stop.wait(POLL):
                reason = self._look()
                if reason is not None:
                    self.reason = f"{child.label} {reason}"   # before the kill: the dump's end reads it
                    child.kill()
                    return
        except self.errors as exc:   # the server went away: the dump tool says so itself
            log.debug("lock watch ended: %s", exc)

    def _look(self) -> str | None:
        """Why the dump must end now, or None."""
        rows = self._rows("SELECT ID, STATE, TIME, DB, INFO FROM information_schema.PROCESSLIST "
                          "WHERE USER = %s AND ID > %s ORDER BY ID", (self.user, self.own_id))
        if self.dump_id is None:
            self.dump_id = next((row[0] for row in rows if DUMP_STATEMENT.match(row[4] or "")), None)
        row = next((row for row in rows if row[0] == self.dump_id), None)
        waiting = WAITING.match(row[1] or "") if row else None
        if waiting is None or row[2] < self.timeout:
            return None
        _, _, _, schema, statement = row
        found = TABLE.search(statement or "")
        table = found.group(1).replace("``", "`") if found else None
        where = f"{schema}.{table}" if table and schema else table or f"a table of {schema or 'the server'}"
        try:
            holders = self._holders(schema, table)
        except self.errors as exc:   # who it is must not keep the dump waiting
            holders = f"held by another session (not found: {exc})"
        return (f"waited more than {self.timeout:g} s for a {waiting.group(1)} on {where} (--lock-timeout), "
                f"{holders}; try again once it is released")

    def _holders(self, schema: str | None, table: str | None) -> str:
        """Who holds the lock: the metadata_lock_info plugin knows; without it,
        the likeliest sessions.  Never more than ids, names and a statement
        with its values left out."""
        try:
            held = self._rows(HOLDERS, (schema, table, self.own_id, self.dump_id)) if table else ()
        except self.errors:   # no plugin (Unknown table 'METADATA_LOCK_INFO')
            held = ()
        ranked = sorted(held, key=lambda row: MODES.index(row[1]) if row[1] in MODES else len(MODES))
        ids = list(dict.fromkeys(row[0] for row in ranked))
        if ids:
            return "held by " + self._sessions(ids, "and")
        ids = [row[0] for row in self._rows(LIKELY_HOLDERS, (self.own_id, self.dump_id, schema, schema))]
        if ids:
            return "likely held by " + self._sessions(ids, "or")
        return (f"held by a session user {self.user} cannot see (an account without the PROCESS "
                "privilege sees only its own)")

    def _sessions(self, ids: list[int], conjunction: str) -> str:
        shown = [self._session(session) for session in ids[:SESSIONS_SHOWN]]
        more = len(ids) - len(shown)
        return f" {conjunction} ".join(shown) + (f" {conjunction} {more} more" if more else "")

    def _session(self, session: int) -> str:
        rows = self._rows(SESSION, (session,))
        if not rows:
            return f"session {session} (details hidden from user {self.user}: it lacks the PROCESS privilege)"
        user, host, command, seconds, statement = rows[0]
        return (f"session {session} (user {user}, host {host}, command {command}, time {seconds} s, "
                f"query {shown_statement(statement)})")

    def _rows(self, sql: str, args=None) -> tuple:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()


def shown_statement(statement: str | None) -> str:
    """A statement for an error line: one line, short, every string literal
    replaced by ? - it may hold a password (IDENTIFIED BY '...') or user data."""
    if not statement:
        return "-"
    text = " ".join(LITERAL.sub("?", statement).split())
    return text if len(text) <= QUERY_SHOWN else text[: QUERY_SHOWN - 3] + "..."
