"""SQLite: `.dump` of a consistent snapshot, restore by building a new file and
renaming it over the old one.

Nextcloud runs SQLite in WAL mode.  Any process that opens the database may
create its -wal/-shm files; if that process is root, the web server can no
longer write them.  So every sqlite3 child runs as the owner of the database.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import urllib.parse

from .. import stamps
from ..credentials import private_directory
from ..errors import DataError, NoInputError, PermissionDenied, UsageError
from ..files import fsync_directory, temporary_beside
from ..kept import KeptCopy
from ..log import log
from ..process import LONG_TIMEOUT, QUICK_TIMEOUT, RunAs, find_tool, point_of_no_return, run
from ..stream import Trailer
from ..target import Target
from ..transfer import Pump
from .rows import RowSource, blobs_to_bytes, group
from .base import (DUMP_LOCK_TIMEOUT, DumpCommand, Engine, RestoreOptions, RestoreResult, check_engine,
                   feed_child, finish_load, loader)

SIDE_FILES = ("-wal", "-shm", "-journal")
KEPT = ".dbpipe-old-"             # + time: the database a restore replaced
ERROR_MARKER = b"ROLLBACK; -- due to errors"
BUSY_TIMEOUT_MS = 30_000  # wait this long for a writer's lock instead of failing at once


def _tool() -> str:
    return find_tool("sqlite3", package_hint="the sqlite3 package")


class SqliteEngine(Engine):
    name = "sqlite"
    failure_patterns = [
        (r"unable to open database|no such file", NoInputError),
        (r"permission denied|attempt to write a readonly", PermissionDenied),
        (r"not a database|malformed", DataError),
    ]

    @contextlib.contextmanager
    def dump_command(self, target: Target, scope: str, lock_timeout: float = DUMP_LOCK_TIMEOUT):
        path = target.database
        if not os.path.isfile(path):
            raise NoInputError(f"sqlite database {path} does not exist")
        # .dump reads inside one transaction: a consistent snapshot, WAL included
        yield DumpCommand([_tool(), "-readonly", "-bail", "-cmd", f".timeout {BUSY_TIMEOUT_MS}", path, ".dump"],
                          run_as=RunAs.owner_of(path))

    def dump_complete(self, tail: bytes) -> bool:
        return tail.endswith(b"COMMIT;\n") and ERROR_MARKER not in tail

    def server_version(self, target: Target, head: bytes) -> str:
        result = run([_tool(), "--version"], timeout=QUICK_TIMEOUT)
        return result.stdout.split()[0] if result.code == 0 and result.stdout else "unknown"

    # --- restore ----------------------------------------------------------
    def exists(self, target: Target) -> bool:
        return os.path.exists(target.database)

    def restore(self, target: Target, pump: Pump, options: RestoreOptions) -> RestoreResult:
        check_engine(self.name, pump)
        path = target.database
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise NoInputError(f"directory {directory} does not exist")
        exists = os.path.exists(path)
        owner = RunAs.owner_of(path if exists else directory)
        mode = os.stat(path).st_mode & 0o777 if exists else 0o640
        with temporary_beside(directory, f".{os.path.basename(path)}.dbpipe-new-", mode, owner,
                              SIDE_FILES) as (_, new):
            self._load(new, pump, owner)
            journal = self._sql(path, "PRAGMA journal_mode", owner, readonly=True) if exists else ""
            self._check_and_prepare(new, journal, owner)
            kept = self._keep_previous(path, owner) if exists and options.keep_old else ""
            point_of_no_return(f"while {path} was being replaced")
            options.live.begin()
            _swap_in(new, path)
        log.info("restored %s%s", path, f"; previous database kept as {kept}" if kept else "")
        return RestoreResult("new file + atomic rename", kept)

    def _load(self, path: str, pump: Pump, owner: RunAs | None) -> Trailer:
        with loader([_tool(), "-safe", "-bail", path], label="sqlite3", run_as=owner) as child:
            trailer = pump.run(feed_child(child))
            finish_load(child, pump)
        return trailer

    def _check_and_prepare(self, path: str, journal_mode: str, owner: RunAs | None) -> None:
        verdict = self._sql(path, "PRAGMA integrity_check", owner)
        if verdict != "ok":
            raise DataError(f"restored database failed PRAGMA integrity_check: {verdict[:200]}")
        if journal_mode and journal_mode not in ("delete", "memory"):
            self._sql(path, f"PRAGMA journal_mode={journal_mode}", owner)
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())

    def _keep_previous(self, path: str, owner: RunAs | None) -> str:
        """A consistent copy of the current database (WAL content included),
        never over an earlier restore's copy (two restores in one second).
        Written under a temporary name with the live file's mode and only
        then given its kept name: a run killed during the copy leaves an
        unfinished file the next run sweeps, never a half copy that looks
        like an undo copy, and the copy is never readable by more people
        than the database."""
        kept = stamped = f"{path}{KEPT}{stamps.for_name()}"
        for number in range(2, 1000):
            if not os.path.lexists(kept):
                break
            kept = f"{stamped}-{number}"
        directory = os.path.dirname(path)
        with temporary_beside(directory, f".{os.path.basename(path)}.dbpipe-keep-",
                              os.stat(path).st_mode & 0o777, owner, SIDE_FILES) as (handle, copy):
            self._sql(path, f".backup {_dot_command_quote(copy)}", owner, readonly=True)
            os.fsync(handle.fileno())
            os.link(copy, kept)         # never over a file that appeared meanwhile
        fsync_directory(directory)
        return kept

    def _sql(self, path: str, statement: str, owner: RunAs | None, readonly=False) -> str:
        argv = [_tool(), "-bail"] + (["-readonly"] if readonly else []) + [path, statement]
        result = run(argv, run_as=owner, timeout=LONG_TIMEOUT)
        if result.code != 0:
            raise DataError(f"sqlite3 {statement.split()[0]} on {path} failed: "
                            f"{result.last_error_line()}")
        return result.stdout.strip()

    def load_all(self, target: Target, pump: Pump) -> Trailer:
        raise UsageError("sqlite streams always hold a single database")

    # --- what restores keep ------------------------------------------------
    def kept_copies(self, target: Target, options: RestoreOptions) -> list[KeptCopy]:
        directory, base = os.path.split(target.database)
        pattern = re.compile("^" + re.escape(f"{base}{KEPT}") + stamps.NAME_PATTERN + r"(?:-(\d+))?$")
        copies = []
        for name in os.listdir(directory):
            found = pattern.match(name)
            if found:
                path = os.path.join(directory, name)
                stamp = stamps.order_key(found.group(1)) + f"{int(found.group(2) or 1):04d}"
                copies.append(KeptCopy(path, os.path.getsize(path), stamp))
        return copies

    def remove_kept_copy(self, target: Target, copy: KeptCopy) -> None:
        os.unlink(copy.name)

    # --- verification -----------------------------------------------------
    @contextlib.contextmanager
    def scratch(self, target: Target):
        with private_directory(prefix="dbpipe-verify-") as directory:
            yield target.merged(database=os.path.join(directory, "scratch.db"))

    def load_scratch(self, scratch: Target, pump: Pump) -> Trailer:
        check_engine(self.name, pump)
        return self._load(scratch.database, pump, None)

    def table_rows(self, target: Target) -> dict[str, int]:
        with contextlib.closing(read_only(target.database)) as conn:
            names = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            return {name: conn.execute(f'SELECT count(*) FROM "{name.replace(chr(34), chr(34) * 2)}"')
                    .fetchone()[0] for name in names}

    def rows(self, target: Target) -> RowSource:
        return SqliteRows(target.database)


def read_only(path: str) -> sqlite3.Connection:
    """A connection that cannot change the database file, nor create it."""
    return sqlite3.connect("file:" + urllib.parse.quote(path) + "?mode=ro", uri=True)


class SqliteRows(RowSource):
    def __init__(self, path: str):
        self.conn = read_only(path)

    def rows(self, sql, params=None, blobs=()):
        cursor = self.conn.execute(sql, params or {})
        names = [column[0] for column in cursor.description]
        return [blobs_to_bytes(dict(zip(names, row, strict=False)), blobs) for row in cursor.fetchall()]

    def columns(self):
        found = self.conn.execute(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p "
            "WHERE m.type = 'table'").fetchall()
        return group(found)

    def close(self):
        self.conn.close()


def _dot_command_quote(value: str) -> str:
    """An argument for a sqlite3 shell dot-command: in double quotes, where the
    shell resolves backslash escapes (single quotes have no escape at all)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _swap_in(new: str, path: str) -> None:
    """Replace path by new in one rename; the old -wal/-shm belong to the old file."""
    for suffix in SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)
    os.replace(new, path)
    fsync_directory(os.path.dirname(path))
