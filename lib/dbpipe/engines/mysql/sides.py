"""Names of the databases a restore makes beside the live one - staging
('new') and kept ('old') - and of verify's scratch databases, and the removal
of those a killed run left behind.

A staging (or scratch) database is held by a named lock on the control
connection while it exists; the server releases the lock when its owner
dies, so a later run removes staging databases whose lock is free and that
no connection uses - a killed restore's leftovers, never a running one's.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from ... import stamps
from ...errors import DbpipeError
from ...log import log
from .sql import execute, quote

MAX_NAME = 64
SCRATCH = re.compile(r"^dbpipe_verify_[0-9a-f]{8}$")
SIDE = "__dbpipe_"               # + role ('new': staging, 'old': kept) + "_" + stamp + "_" + 10 hex
HASH_LENGTH = 8


def _name_hash(database: str) -> str:
    return hashlib.sha256(database.encode()).hexdigest()[:HASH_LENGTH]


def side_name(database: str, role: str) -> str:
    """A database name beside `database` for staging ('new') or keeping ('old')
    data.  The 10 hex digits: the second's fraction in 1/65536ths (names made
    within one second still sort by age), then 24 random bits (two restores
    started in the same instant never share a name).  A database name too long
    to fit whole is cut and followed by a hash of the whole name, so the side
    databases of two names with a long common start never mix."""
    now = time.time()
    suffix = f"{SIDE}{role}_{stamps.for_name(now)}_{int(now % 1 * 65536):04x}{secrets.token_hex(3)}"
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
        self.regex = re.compile(rf"^(.*?){SIDE}{role}_{stamps.NAME_PATTERN}_([0-9a-f]{{10}}|[0-9a-f]{{4}})"
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
        names = schemas(conn, self.like)
        return self.claim(names, schemas(conn) if any(len(n) == MAX_NAME for n in names) else [])


def schemas(conn, like: str | None = None) -> list[str]:
    sql = "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA"
    rows = execute(conn, sql + " WHERE SCHEMA_NAME LIKE %s", (like,)) if like else execute(conn, sql)
    return [row[0] for row in rows]


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def lock_name(database: str) -> str:
    return "dbpipe:" + hashlib.sha256(database.encode()).hexdigest()[:40]  # at most 64 characters


def hold(conn, database: str) -> None:
    """Hold database's named lock for the connection's lifetime (best effort:
    Galera, for one, has no GET_LOCK; then nothing counts as an orphan)."""
    try:
        execute(conn, "SELECT GET_LOCK(%s, 0)", (lock_name(database),))
    except DbpipeError as exc:
        log.debug("no named lock for %s: %s", database, exc)


def in_use(conn, database: str) -> bool:
    """Its lock held, a connection on it, or no way to tell."""
    try:
        free = execute(conn, "SELECT IS_FREE_LOCK(%s)", (lock_name(database),))[0][0]
        users = execute(conn, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s",
                        (database,))[0][0]
    except DbpipeError:
        return True
    return free != 1 or users > 0


def remove_orphans(conn, names: list[str], what: str) -> None:
    """Drop those of these databases that no live dbpipe run holds."""
    for name in names:
        if in_use(conn, name):
            continue
        try:
            execute(conn, f"DROP DATABASE {quote(name)}")
        except DbpipeError as exc:
            log.warning("cannot remove the %s %s, left by a dbpipe run that is gone: %s", what, name, exc)
            continue
        log.warning("removed the %s %s, left by a dbpipe run that is gone", what, name)
