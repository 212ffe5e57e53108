"""MariaDB and MySQL: mariadb-dump/mysqldump, restore via staging database and
one multi-table RENAME TABLE.

RENAME TABLE moves any number of tables between databases atomically, but
not views, and not tables that carry triggers; those are recreated around it.
Accounts that may not create databases get 'replace' mode: the stream is
spooled and verified first, a safety dump of the current content is taken,
and a failed load puts that content back.

A staging (or scratch) database is held by a named lock on the control
connection while it exists; the server releases the lock when its owner
dies, so a later run removes staging databases whose lock is free and that
no connection uses - a killed restore's leftovers, never a running one's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import subprocess
import tempfile
import time


from .. import stamps
from ..credentials import mysql_option_args, mysql_option_fd
from ..errors import (CantCreateError, DataError, DbpipeError, NoInputError, PermissionDenied,
                      TempFailure, UnavailableError)
from ..leftovers import KeptCopy
from ..log import log
from ..safety import HalfRestored, SafetyDumps
from ..process import Child, find_tool, point_of_no_return
from ..stream import Trailer
from ..target import Target
from ..transfer import Pump
from .mysql_lockwatch import lock_watch
from .base import (DUMP_LOCK_TIMEOUT, DumpCommand, Engine, LiveChange, RestoreOptions, RestoreResult,
                   check_engine, feed_child, finish_load, loader, spooled)

DUMP_COMPLETE = b"\n-- Dump completed"
# mariadb-dump writes its header, *then* runs START TRANSACTION WITH CONSISTENT
# SNAPSHOT (--single-transaction), then dumps table by table: a table's
# section (or the footer of an empty database) proves the snapshot exists
SNAPSHOT_FIXED = (b"\n-- Table structure for table ", b"\n-- Temporary table structure for view ",
                  DUMP_COMPLETE)
TABLE_TYPES = ("BASE TABLE", "SEQUENCE", "SYSTEM VERSIONED")
MAX_NAME = 64
DEFAULT_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock")
CONNECT_TIMEOUT = 30
SWAP_WAIT = 600       # seconds a restore waits for another one's swap into the same database
# One table for both ways a MySQL error reaches us: an error code from
# pymysql, or a client tool's stderr line (which carries the code, or words).
ERRORS = (  # (codes, words in the message, error class)
    ((1044, 1045, 1142, 1227), "access denied", PermissionDenied),
    ((1049,), "unknown database", NoInputError),
    ((2002, 2003, 2005, 2006, 2013), "can't connect|lost connection|gone away", UnavailableError),
)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


SCRATCH = re.compile(r"^dbpipe_verify_[0-9a-f]{8}$")
SIDE = "__dbpipe_"               # + role ('new': staging, 'old': kept) + "_" + stamp + "_" + 8 hex
HASH_LENGTH = 8


def _name_hash(database: str) -> str:
    return hashlib.sha256(database.encode()).hexdigest()[:HASH_LENGTH]


def side_name(database: str, role: str) -> str:
    """A database name beside `database` for staging ('new') or keeping ('old')
    data.  The 8 hex digits: the second's fraction in 1/65536ths (names made
    within one second still sort by age), then a random part (two restores
    started in the same instant never share a name).  A database name too long
    to fit whole is cut and followed by a hash of the whole name, so the side
    databases of two names with a long common start never mix."""
    now = time.time()
    suffix = f"{SIDE}{role}_{stamps.for_name(now)}_{int(now % 1 * 65536):04x}{secrets.token_hex(2)}"
    if len(database) + len(suffix) <= MAX_NAME:
        return database + suffix
    tag = "_" + _name_hash(database)
    return database[: MAX_NAME - len(suffix) - len(tag)] + suffix + tag


class SideNames:
    """Finds the side databases that side_name made for one database - and
    older versions made, which cut a long database name to its first 30 (or
    32) characters and added no hash.  Such a cut name is claimed only when no
    other database on the server starts the same way: otherwise it may belong
    to that one, and is left alone."""

    def __init__(self, database: str, role: str):
        self.database, self.role = database, role
        shortest = MAX_NAME - len(side_name("", role)) - 1 - HASH_LENGTH
        self.like = _like_literal(database[:shortest]) + "%" + _like_literal(f"{SIDE}{role}_") + "%"
        # any case: with lower_case_table_names=1 the server keeps the name lowercased
        self.regex = re.compile(rf"^(.*?){SIDE}{role}_{stamps.NAME_PATTERN}_([0-9a-f]{{8}}|[0-9a-f]{{4}})"
                                rf"(?:_([0-9a-f]{{{HASH_LENGTH}}}))?$", re.IGNORECASE)

    def claim(self, names: list[str], others: list[str]) -> list[tuple[str, str]]:
        """(name, key sorting oldest first) of ours among names; others: every
        database on the server (side databases aside) that is not ours."""
        found = []
        for name in names:
            match = self.regex.match(name)
            if match and self._ours(name, match, others):
                found.append((name, stamps.order_key(match.group(2)) + match.group(3).ljust(8, "0")))
        return found

    def _ours(self, name: str, match: re.Match, others: list[str]) -> bool:
        prefix, hashed = match.group(1).lower(), match.group(4)
        database = self.database.lower()
        if hashed is not None:
            return hashed.lower() == _name_hash(self.database) and database.startswith(prefix)
        if len(name) < MAX_NAME or len(match.group(3)) == 8:
            return prefix == database     # not cut: the whole name
        if not database.startswith(prefix):
            return False
        rivals = [other for other in others if other.lower().startswith(prefix)
                  and other.lower() != database and SIDE not in other.lower()]
        if rivals:
            log.warning("database %s may belong to %s or %s (an older dbpipe cut both names to %r); "
                        "left alone", name, self.database, rivals[0], match.group(1))
        return not rivals

    def find(self, conn) -> list[tuple[str, str]]:
        names = _schemas(conn, self.like)
        return self.claim(names, _schemas(conn) if any(len(n) == MAX_NAME for n in names) else [])


def _schemas(conn, like: str | None = None) -> list[str]:
    sql = "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA"
    rows = _execute(conn, sql + " WHERE SCHEMA_NAME LIKE %s", (like,)) if like else _execute(conn, sql)
    return [row[0] for row in rows]


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _dump_tool() -> str:
    return find_tool("mariadb-dump", "mysqldump", package_hint="mariadb-client or mysql-client")


def _client_tool() -> str:
    return find_tool("mariadb", "mysql", package_hint="mariadb-client or mysql-client")


def connection_args(target: Target) -> list[str]:
    """--host/--port/--socket/--user for every MySQL client tool (mysql,
    mysqldump, mariabackup).  A port without a socket forces TCP: a client
    told "localhost" would otherwise use the default socket, not the port."""
    return (
        ([f"--host={target.host}"] if target.host else [])
        + ([f"--port={target.port}", "--protocol=TCP"] if target.port and not target.socket else [])
        + ([f"--socket={target.socket}"] if target.socket else [])
        + ([f"--user={target.user}"] if target.user else [])
    )


class MysqlEngine(Engine):
    name = "mysql"
    failure_patterns = [(rf"\b({'|'.join(map(str, codes))})\b|{words}", error_class)
                        for codes, words, error_class in ERRORS]
    reasons = [r"access denied for user '[^']*'@'[^']*'", r"unknown database '[^']*'"]

    # --- dump -------------------------------------------------------------
    @contextlib.contextmanager
    def dump_command(self, target: Target, scope: str, lock_timeout: float = DUMP_LOCK_TIMEOUT):
        with mysql_option_fd(target.password) as fd, lock_watch(lambda: self.connect(target), lock_timeout) as watch:
            argv = (
                [_dump_tool(), *mysql_option_args(target.defaults_file, fd), *connection_args(target)]
                + ["--single-transaction", "--quick", "--routines", "--triggers", "--events",
                   "--hex-blob", "--no-tablespaces", "--max-allowed-packet=1G",
                   f"--default-character-set={target.charset or 'utf8mb4'}"]
                # a cluster restore drops and recreates each dumped database: no stale tables
                + (["--all-databases", "--add-drop-database"] if scope == "all" else ["--", target.database])
            )
            yield DumpCommand(argv, pass_fds=(fd,) if fd is not None else (), watch=watch)

    def dump_complete(self, tail: bytes) -> bool:
        return DUMP_COMPLETE in tail

    def snapshot_fixed(self, output: bytes) -> bool:
        return any(marker in output for marker in SNAPSHOT_FIXED)

    def server_version(self, target: Target, head: bytes) -> str:
        found = re.search(rb"^-- Server version\s+(.+)$", head, re.MULTILINE)
        return found.group(1).decode("utf-8", "replace").strip() if found else "unknown"

    # --- control connection -----------------------------------------------
    @contextlib.contextmanager
    def connect(self, target: Target, database: str | None = None):
        import pymysql  # here: with cryptography it costs ~40 ms of every start; only a dump's lock watch connects

        socket = target.socket
        if not (socket or target.port or target.defaults_file) and target.host in (None, "localhost"):
            socket = next((path for path in DEFAULT_SOCKETS if os.path.exists(path)), None)
        try:
            conn = pymysql.connect(
                host=target.host if target.host != "localhost" or not socket else None,
                port=target.port or 0, unix_socket=socket, user=target.user,
                password=target.password or "", database=database, charset="utf8mb4",
                autocommit=True, read_default_file=target.defaults_file,
                connect_timeout=CONNECT_TIMEOUT)
        except pymysql.err.MySQLError as exc:
            raise mysql_error(exc, f"cannot connect to {target.describe()}") from None
        try:
            yield conn
        finally:
            conn.close()

    # --- restore ----------------------------------------------------------
    def exists(self, target: Target) -> bool:
        with self.connect(target) as conn:
            return _database_exists(conn, target.database)

    def restore(self, target: Target, pump: Pump, options: RestoreOptions) -> RestoreResult:
        check_engine(self.name, pump)
        with self.connect(target) as conn:
            if options.mode == "replace":
                return self._replace(conn, target, pump, options, "requested")
            staging = side_name(target.database, "new")
            _remove_orphans(conn, [name for name, _ in SideNames(target.database, "new").find(conn)],
                            "staging database")
            try:
                _hold(conn, staging)
                _create_database(conn, staging, like=target.database)
            except PermissionDenied as exc:
                if options.mode == "atomic":
                    raise PermissionDenied(f"{exc}; --mode replace works without that right") from None
                return self._replace(conn, target, pump, options, "account may not create databases")
            try:
                self._load(target.merged(database=staging), pump)
                kept = Swap(conn, target.database, staging).run(options.keep_old, options.live)
            finally:
                _drop_database(conn, staging)
        return RestoreResult("atomic (staging database + RENAME TABLE)", kept)

    def _client_argv(self, target: Target, fd: int | None, database: str | None) -> list[str]:
        return ([_client_tool(), *mysql_option_args(target.defaults_file, fd), *connection_args(target),
                 "--batch", "--max-allowed-packet=1G", "--default-character-set=utf8mb4",
                 f"--connect-timeout={CONNECT_TIMEOUT}"]
                + ([f"--database={database}"] if database else []))

    def _load(self, target: Target, pump: Pump) -> Trailer:
        with mysql_option_fd(target.password) as fd, loader(
                self._client_argv(target, fd, target.database), label="mariadb client",
                pass_fds=(fd,) if fd is not None else ()) as child:
            trailer = pump.run(feed_child(child))
            finish_load(child, pump)
        return trailer

    def _load_file(self, target: Target, path: str, database: str | None) -> None:
        with open(path, "rb") as source, mysql_option_fd(target.password) as fd, Child(
                self._client_argv(target, fd, database), label="mariadb client", stdin=source,
                stdout=subprocess.DEVNULL, pass_fds=(fd,) if fd is not None else ()) as child:
            code = child.wait()
        if code != 0:
            raise DataError(f"the dump could not be loaded: {child.failure(code)}")

    def _replace(self, conn, target: Target, pump: Pump, options: RestoreOptions,
                 reason: str) -> RestoreResult:
        """Verify a spooled copy, keep a safety dump (recorded before anything
        is dropped: safety.py), then drop and reload in place."""
        log.info("restore mode: replace (%s); nothing changes until the stream is verified", reason)
        safety = SafetyDumps(target)
        with spooled(pump, options.temp_dir) as (spool, _):
            record = safety.pending()    # an earlier run's: its safety dump holds the content to go back to
            made_now = record is None
            if record is None:
                previous = ""
                if _database_exists(conn, target.database):
                    _require_recreatable(conn, target.database)
                    previous = self._safety_dump(target, safety)
                else:
                    _create_database(conn, target.database, like=None)
                record = safety.record(previous)
            options.live.begin()
            _drop_everything(conn, target.database)
            try:
                self._load_file(target, spool, target.database)
            except DbpipeError as exc:
                self._roll_back(conn, target, record, safety, options, exc, made_now)
            point_of_no_return(f"after {target.database} was loaded")
            safety.clear()
        if record.previous and made_now and not options.keep_old:
            os.unlink(record.previous)
            return RestoreResult("replace (verified spool, then drop and reload)", "")
        return RestoreResult("replace (verified spool, then drop and reload)", record.previous)

    def _roll_back(self, conn, target, record: HalfRestored, safety: SafetyDumps, options,
                   error: DbpipeError, made_now: bool):
        """Put the previous content back; the error keeps its exit code (a
        cancel stays a cancel).  If that fails too, the record stays."""
        _drop_everything(conn, target.database)
        if not record.previous:
            safety.clear()
            options.live.reverted()
            raise DbpipeError(f"{error}; the database was empty before and is empty again", error.code) from None
        try:
            self._load_file(target, record.previous, target.database)
        except DbpipeError as second:
            raise DbpipeError(f"{error}; putting the previous content back also failed ({second}); "
                              f"it is saved in {record.previous}", error.code) from None
        safety.clear()
        options.live.reverted()
        if made_now:
            os.unlink(record.previous)
        raise DbpipeError(f"{error}; the previous content was put back", error.code) from None

    def put_back(self, target: Target, options: RestoreOptions) -> str:
        """Load what a killed replace-mode restore recorded back into the database."""
        safety = SafetyDumps(target)
        record = safety.pending()
        if record is None:
            raise NoInputError(f"no half-finished --mode replace restore of {target.describe()} is "
                               f"recorded in {safety.directory}: nothing to put back")
        with self.connect(target) as conn:
            options.live.begin()
            _drop_everything(conn, target.database)
            if record.previous:
                self._load_file(target, record.previous, target.database)
        safety.clear()
        return record.previous

    def _safety_dump(self, target: Target, safety: SafetyDumps) -> str:
        """The current content, into the state directory; a full disk says where."""
        with safety.new_dump() as (handle, path), self.dump_command(target, "database") as command, Child(
                command.argv, label=f"{os.path.basename(command.argv[0])} (safety dump)", stdout=handle,
                pass_fds=command.pass_fds) as child:
            code = child.wait()
            if code != 0:
                written = re.search(r"errno (\d+) on write", child.stderr_text(), re.IGNORECASE)
                if written:
                    raise CantCreateError(f"cannot write the safety dump of {target.database} to "
                                          f"{safety.directory}: {os.strerror(int(written.group(1)))}; "
                                          "nothing was changed")
                raise self.dump_failure(child)
        log.info("safety dump of the current content: %s", path)
        return path

    def load_all(self, target: Target, pump: Pump) -> Trailer:
        check_engine(self.name, pump)
        with spooled(pump) as (spool, trailer):
            log.info("stream verified; loading all databases (not atomic across databases)")
            self._load_file(target, spool, None)
        return trailer

    # --- verification -----------------------------------------------------
    @contextlib.contextmanager
    def scratch(self, target: Target):
        name = f"dbpipe_verify_{secrets.token_hex(4)}"
        with self.connect(target) as conn:
            _remove_orphans(conn, [n for n in _schemas(conn, "dbpipe\\_verify\\_%") if SCRATCH.match(n)],
                            "scratch database")
            _hold(conn, name)
            _create_database(conn, name, like=None)
            try:
                yield target.merged(database=name)
            finally:
                _drop_database(conn, name)

    def load_scratch(self, scratch: Target, pump: Pump) -> Trailer:
        check_engine(self.name, pump)
        return self._load(scratch, pump)

    # --- what restores keep ------------------------------------------------
    def kept_copies(self, target: Target, options: RestoreOptions) -> list[KeptCopy]:
        """The side databases of atomic restores, and replace mode's kept dumps."""
        with self.connect(target) as conn:
            ours = dict(SideNames(target.database, "old").find(conn))
            sizes = dict(_execute(conn, "SELECT TABLE_SCHEMA, SUM(DATA_LENGTH + INDEX_LENGTH) "
                                  "FROM information_schema.TABLES WHERE TABLE_SCHEMA IN %s "
                                  "GROUP BY TABLE_SCHEMA", (tuple(ours),))) if ours else {}
        copies = [KeptCopy(f"database {name}", int(sizes.get(name) or 0), key) for name, key in ours.items()]
        copies += SafetyDumps(target).kept()
        # replace mode's kept dumps of versions before safety.py
        directory = options.temp_dir or tempfile.gettempdir()
        prefix = re.escape(f"dbpipe-{target.database}-previous-")
        files = re.compile("^" + prefix + stamps.NAME_PATTERN + r"\.sql$")
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                found = files.match(name)
                if found:
                    path = os.path.join(directory, name)
                    copies.append(KeptCopy(path, os.path.getsize(path), stamps.order_key(found.group(1))))
        return copies

    def remove_kept_copy(self, target: Target, copy: KeptCopy) -> None:
        if copy.name.startswith("database "):
            with self.connect(target) as conn:
                _execute(conn, f"DROP DATABASE {quote(copy.name.split(' ', 1)[1])}")
        else:
            os.unlink(copy.name)

    def table_rows(self, target: Target) -> dict[str, int]:
        with self.connect(target, target.database) as conn, conn.cursor() as cur:
            tables = _tables(cur, target.database)
            counts = {}
            for table in tables:
                cur.execute(f"SELECT COUNT(*) FROM {quote(table)}")
                counts[table] = cur.fetchone()[0]
            return counts


def mysql_error(exc: Exception, context: str) -> DbpipeError:  # a pymysql MySQLError
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    message = f"{context}: {exc.args[1] if len(exc.args) > 1 else exc}"
    error_class = next((cls for codes, _, cls in ERRORS if code in codes), DataError)
    return error_class(message)


def _execute(conn, sql: str, args=None, context: str = ""):
    import pymysql

    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    except pymysql.err.MySQLError as exc:
        raise mysql_error(exc, context or sql.split("(")[0][:80]) from None


def _database_exists(conn, name: str) -> bool:
    return bool(_execute(conn, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (name,)))


def _create_database(conn, name: str, like: str | None) -> None:
    row = _execute(conn, "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                   "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (like,)) if like else ()
    options = f" CHARACTER SET {row[0][0]} COLLATE {row[0][1]}" if row else ""
    try:
        _execute(conn, f"CREATE DATABASE {quote(name)}{options}", context=f"cannot create database {name}")
    except DataError as exc:
        raise CantCreateError(str(exc)) from None


def _lock_name(database: str) -> str:
    return "dbpipe:" + hashlib.sha256(database.encode()).hexdigest()[:40]  # at most 64 characters


def _hold(conn, database: str) -> None:
    """Hold database's named lock for the connection's lifetime (best effort:
    Galera, for one, has no GET_LOCK; then nothing counts as an orphan)."""
    try:
        _execute(conn, "SELECT GET_LOCK(%s, 0)", (_lock_name(database),))
    except DbpipeError as exc:
        log.debug("no named lock for %s: %s", database, exc)


def _in_use(conn, database: str) -> bool:
    """Its lock held, a connection on it, or no way to tell."""
    try:
        free = _execute(conn, "SELECT IS_FREE_LOCK(%s)", (_lock_name(database),))[0][0]
        users = _execute(conn, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s",
                         (database,))[0][0]
    except DbpipeError:
        return True
    return free != 1 or users > 0


def _remove_orphans(conn, names: list[str], what: str) -> None:
    """Drop those of these databases that no live dbpipe run holds."""
    for name in names:
        if _in_use(conn, name):
            continue
        try:
            _execute(conn, f"DROP DATABASE {quote(name)}")
        except DbpipeError as exc:
            log.warning("cannot remove the %s %s, left by a dbpipe run that is gone: %s", what, name, exc)
            continue
        log.warning("removed the %s %s, left by a dbpipe run that is gone", what, name)


def _drop_database(conn, name: str) -> None:
    with contextlib.suppress(DbpipeError):
        _execute(conn, f"DROP DATABASE IF EXISTS {quote(name)}")


def _tables(cur, schema: str) -> list[str]:
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                "AND TABLE_TYPE IN %s ORDER BY TABLE_NAME", (schema, TABLE_TYPES))
    return [row[0] for row in cur.fetchall()]


def _drop_everything(conn, schema: str) -> None:
    """Empty a database: views, tables (with their triggers), routines, events."""
    conn.select_db(schema)
    _execute(conn, "SET FOREIGN_KEY_CHECKS=0")
    try:
        for kind, name in _objects(conn, schema):
            _execute(conn, f"DROP {kind} IF EXISTS {quote(schema)}.{quote(name)}")
    finally:
        _execute(conn, "SET FOREIGN_KEY_CHECKS=1")


def _objects(conn, schema: str) -> list[tuple[str, str]]:
    views = _execute(conn, "SELECT 'VIEW', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA=%s", (schema,))
    tables = _execute(conn, "SELECT IF(TABLE_TYPE='SEQUENCE','SEQUENCE','TABLE'), TABLE_NAME "
                      "FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_TYPE IN %s",
                      (schema, TABLE_TYPES))
    routines = _execute(conn, "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
                        "WHERE ROUTINE_SCHEMA=%s", (schema,))
    events = _execute(conn, "SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS "
                      "WHERE EVENT_SCHEMA=%s", (schema,))
    return list(views) + list(tables) + list(routines) + list(events)


# Views, triggers, routines and events defined by another account, unless ours
# may name any definer (SUPER / SET USER).  GRANTEE reads 'user'@'host'.
FOREIGN_DEFINERS = (
    "SELECT CONCAT(kind, ' ', name, ' (definer ', definer, ')') FROM ("
    " SELECT 'view' AS kind, TABLE_NAME AS name, DEFINER AS definer"
    "  FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"
    " UNION ALL SELECT 'trigger', TRIGGER_NAME, DEFINER"
    "  FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
    " UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME, DEFINER"
    "  FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"
    " UNION ALL SELECT 'event', EVENT_NAME, DEFINER"
    "  FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s) AS objects "
    "WHERE definer <> CURRENT_USER() AND NOT EXISTS ("
    " SELECT 1 FROM information_schema.USER_PRIVILEGES"
    " WHERE GRANTEE = CONCAT(CHAR(39), SUBSTRING_INDEX(CURRENT_USER(), '@', 1), CHAR(39), '@',"
    "                        CHAR(39), SUBSTRING_INDEX(CURRENT_USER(), '@', -1), CHAR(39))"
    "   AND PRIVILEGE_TYPE IN ('SUPER', 'SET USER', 'SET_USER_ID'))"
)


def _require_recreatable(conn, schema: str) -> None:
    """Replace mode drops everything and, if the load fails, reloads the safety
    dump.  Objects defined by another account cannot be recreated without
    SUPER/SET USER, so that reload would fail too: refuse before dropping."""
    foreign = _execute(conn, FOREIGN_DEFINERS, (schema,) * 4, context="cannot list definers")
    if foreign:
        names = ", ".join(row[0] for row in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise PermissionDenied(
            f"--mode replace could not put back {names}: defined by another account, and this one "
            "lacks the SUPER or SET USER privilege; nothing was changed (use an account that may "
            "create databases, or recreate these objects as this account)")


class Swap:
    """Moves all tables of `staging` into `live` in one RENAME TABLE and
    recreates what RENAME cannot carry: triggers, views, routines, events."""

    def __init__(self, conn, live: str, staging: str):
        self.conn, self.live, self.staging = conn, live, staging

    def run(self, keep_old: bool, live: LiveChange) -> str:
        """One swap at a time per live database: two restores started together
        would otherwise read each other's half-moved triggers."""
        name = _lock_name("swap:" + self.live)
        got = _execute(self.conn, "SELECT GET_LOCK(%s, %s)", (name, SWAP_WAIT), context="cannot lock the swap")
        if got and got[0][0] != 1:
            raise TempFailure(f"another restore of {self.live} is swapping its tables in for more than "
                              f"{SWAP_WAIT} s; try again later")
        try:
            return self._run(keep_old, live)
        finally:
            with contextlib.suppress(DbpipeError):
                _execute(self.conn, "SELECT RELEASE_LOCK(%s)", (name,))

    def _run(self, keep_old: bool, live: LiveChange) -> str:
        point_of_no_return(f"while the tables of {self.live} were being swapped in")
        live.begin()
        if not _database_exists(self.conn, self.live):
            _create_database(self.conn, self.live, like=self.staging)
        replaced = bool(_objects(self.conn, self.live))
        side = side_name(self.live, "old") if replaced else None   # nothing replaced: nothing to keep
        if side:
            _create_database(self.conn, side, like=self.live)
        new_triggers, old_triggers = self._triggers(self.staging), self._triggers(self.live)
        new_code, new_views = self._code(self.staging), self._views(self.staging)
        old_views = self._views(self.live)
        self._drop_triggers(self.staging, new_triggers)
        self._drop_triggers(self.live, old_triggers)
        try:
            self._rename(side)
        except DbpipeError:
            self._recreate(self.live, old_triggers)
            live.reverted()
            if side:
                _drop_database(self.conn, side)
            raise
        self._replace_code(new_code, new_triggers, new_views)
        if not side:
            return ""
        self._keep_old_objects(side, old_triggers, old_views)
        if keep_old:
            log.info("previous tables kept in database %s (drop it when no longer needed)", side)
            return side
        _drop_database(self.conn, side)
        return ""

    def _rename(self, side: str | None) -> None:
        with self.conn.cursor() as cur:
            old, new = _tables(cur, self.live) if side else [], _tables(cur, self.staging)
        moves = [f"{quote(self.live)}.{quote(t)} TO {quote(side)}.{quote(t)}" for t in old]
        moves += [f"{quote(self.staging)}.{quote(t)} TO {quote(self.live)}.{quote(t)}" for t in new]
        if moves:
            _execute(self.conn, "RENAME TABLE " + ", ".join(moves), context="RENAME TABLE failed")

    def _triggers(self, schema: str) -> list[tuple]:
        names = _execute(self.conn, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                         "WHERE TRIGGER_SCHEMA=%s ORDER BY ACTION_ORDER", (schema,))
        return [self._show(schema, "TRIGGER", name) for (name,) in names]

    def _views(self, schema: str) -> list[tuple]:
        names = _execute(self.conn, "SELECT TABLE_NAME FROM information_schema.VIEWS "
                         "WHERE TABLE_SCHEMA=%s", (schema,))
        return [self._show(schema, "VIEW", name) for (name,) in names]

    def _code(self, schema: str) -> list[tuple]:
        return [self._show(schema, kind, name) for kind, name in _objects(self.conn, schema)
                if kind in ("PROCEDURE", "FUNCTION", "EVENT")]

    def _show(self, schema: str, kind: str, name: str) -> tuple:
        """(kind, name, sql_mode, CREATE statement) as the server prints it."""
        import pymysql

        self.conn.select_db(schema)  # unqualified names in the statement
        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(f"SHOW CREATE {kind} {quote(name)}")
            row = cur.fetchone()
        statement = next(v for k, v in row.items() if k.lower().startswith(("create", "sql original")))
        return kind, name, row.get("sql_mode", ""), statement

    def _drop_triggers(self, schema: str, triggers) -> None:
        for _, name, _, _ in triggers:
            _execute(self.conn, f"DROP TRIGGER {quote(schema)}.{quote(name)}")

    def _recreate(self, schema: str, objects) -> None:
        """Create objects in schema; a view that needs another view waits a round."""
        self.conn.select_db(schema)
        pending = list(objects)
        while pending:
            failed, error = [], None
            for kind, name, sql_mode, statement in pending:
                try:
                    _execute(self.conn, "SET SESSION sql_mode=%s", (sql_mode,))
                    _execute(self.conn, statement, context=f"cannot recreate {kind.lower()} {name}")
                except DbpipeError as exc:
                    failed.append((kind, name, sql_mode, statement))
                    error = exc
            if len(failed) == len(pending):
                raise error
            pending = failed

    def _replace_code(self, code, triggers, views) -> None:
        for kind, name in _objects(self.conn, self.live):
            if kind in ("VIEW", "PROCEDURE", "FUNCTION", "EVENT"):
                _execute(self.conn, f"DROP {kind} IF EXISTS {quote(self.live)}.{quote(name)}")
        self._recreate(self.live, views + triggers + code)

    def _keep_old_objects(self, side: str, triggers, views) -> None:
        try:
            self._recreate(side, views + triggers)
        except DbpipeError as exc:
            log.warning("the kept tables in %s lack some old views/triggers: %s", side, exc)
