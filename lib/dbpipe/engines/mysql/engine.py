"""MariaDB and MySQL: mariadb-dump/mysqldump, restore via a staging database
and one multi-table RENAME TABLE (swap.py), or in place where the account may
not create databases (replace.py)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import tempfile

from ... import stamps
from ...credentials import mysql_option_args, mysql_option_fd
from ...errors import DataError, PermissionDenied
from ...kept import KeptCopy
from ...log import log
from ...process import CONNECT_TIMEOUT, Child, find_tool
from ...safety import SafetyDumps
from ...stream import Trailer
from ...target import Target
from ...transfer import Pump
from ..rows import RowSource
from ..base import (DUMP_LOCK_TIMEOUT, DumpCommand, Engine, RestoreOptions, RestoreResult, check_engine,
                    feed_child, finish_load, loader, spooled)
from . import replace
from .sides import SCRATCH, SideNames, hold, remove_orphans, schemas, side_name
from .rows import MysqlRows
from .sql import (ERRORS, create_database, database_exists, drop_database, execute, mysql_errors, quote,
                  table_names)
from .lockwatch import lock_watch
from .swap import Swap

DUMP_COMPLETE = b"\n-- Dump completed"
# mariadb-dump writes its header, *then* runs START TRANSACTION WITH CONSISTENT
# SNAPSHOT (--single-transaction), then dumps table by table: a table's
# section (or the footer of an empty database) proves the snapshot exists
SNAPSHOT_FIXED = (b"\n-- Table structure for table ", b"\n-- Temporary table structure for view ",
                  DUMP_COMPLETE)
DEFAULT_SOCKETS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock")


def dump_tool() -> str:
    return find_tool("mariadb-dump", "mysqldump", package_hint="mariadb-client or mysql-client")


def client_tool() -> str:
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
        with mysql_option_fd(target.password) as fd, \
                lock_watch(lambda: self.connect(target), lock_timeout) as watch:
            argv = (
                [dump_tool(), *mysql_option_args(target.defaults_file, fd), *connection_args(target)]
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
        with mysql_errors(f"cannot connect to {target.describe()}"):
            conn = pymysql.connect(
                host=target.host if target.host != "localhost" or not socket else None,
                port=target.port or 0, unix_socket=socket, user=target.user,
                password=target.password or "", database=database, charset="utf8mb4",
                autocommit=True, read_default_file=target.defaults_file,
                connect_timeout=CONNECT_TIMEOUT)
        try:
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def cursor(self, target: Target, context: str, database: str | None = None):
        """A cursor on a connection of its own; what pymysql raises while it is
        used becomes a DbpipeError saying context (sql.mysql_errors)."""
        with self.connect(target, database) as conn, mysql_errors(context), conn.cursor() as cur:
            yield cur

    def rows(self, target: Target) -> RowSource:
        return MysqlRows(self.connect(target, target.database))

    # --- restore ----------------------------------------------------------
    def provisioning(self):
        from . import provision
        return provision

    def exists(self, target: Target) -> bool:
        with self.connect(target) as conn:
            return database_exists(conn, target.database)

    def restore(self, target: Target, pump: Pump, options: RestoreOptions) -> RestoreResult:
        check_engine(self.name, pump)
        with self.connect(target) as conn:
            if options.mode == "replace":
                return replace.replace(self, conn, target, pump, options, "requested")
            staging = side_name(target.database, "new")
            remove_orphans(conn, [name for name, _ in SideNames(target.database, "new").find(conn)],
                           "staging database")
            try:
                hold(conn, staging)
                create_database(conn, staging, like=target.database)
            except PermissionDenied as exc:
                if options.mode == "atomic":
                    raise PermissionDenied(f"{exc}; --mode replace works without that right") from None
                return replace.replace(self, conn, target, pump, options, "account may not create databases")
            try:
                self._load(target.merged(database=staging), pump)
                kept = Swap(conn, target.database, staging).run(options.keep_old, options.live)
            finally:
                drop_database(conn, staging)
        return RestoreResult("atomic (staging database + RENAME TABLE)", kept)

    def _client_argv(self, target: Target, fd: int | None, database: str | None) -> list[str]:
        return ([client_tool(), *mysql_option_args(target.defaults_file, fd), *connection_args(target),
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

    def load_file(self, target: Target, path: str, database: str | None) -> None:
        with open(path, "rb") as source, mysql_option_fd(target.password) as fd, Child(
                self._client_argv(target, fd, database), label="mariadb client", stdin=source,
                stdout=subprocess.DEVNULL, pass_fds=(fd,) if fd is not None else ()) as child:
            code = child.wait()
        if code != 0:
            raise DataError(f"the dump could not be loaded: {child.failure(code)}")

    def put_back(self, target: Target, options: RestoreOptions) -> str:
        return replace.put_back(self, target, options)

    def load_all(self, target: Target, pump: Pump) -> Trailer:
        check_engine(self.name, pump)
        with spooled(pump) as (spool, trailer):
            log.info("stream verified; loading all databases (not atomic across databases)")
            self.load_file(target, spool, None)
        return trailer

    # --- verification -----------------------------------------------------
    @contextlib.contextmanager
    def scratch(self, target: Target):
        name = f"dbpipe_verify_{secrets.token_hex(4)}"
        with self.connect(target) as conn:
            remove_orphans(conn, [n for n in schemas(conn, "dbpipe\\_verify\\_%") if SCRATCH.match(n)],
                           "scratch database")
            hold(conn, name)
            create_database(conn, name, like=None)
            try:
                yield target.merged(database=name)
            finally:
                drop_database(conn, name)

    def load_scratch(self, scratch: Target, pump: Pump) -> Trailer:
        check_engine(self.name, pump)
        return self._load(scratch, pump)

    # --- what restores keep ------------------------------------------------
    def kept_copies(self, target: Target, options: RestoreOptions) -> list[KeptCopy]:
        """The side databases of atomic restores, and replace mode's kept dumps."""
        with self.connect(target) as conn:
            ours = dict(SideNames(target.database, "old").find(conn))
            sizes = dict(execute(conn, "SELECT TABLE_SCHEMA, SUM(DATA_LENGTH + INDEX_LENGTH) "
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
                execute(conn, f"DROP DATABASE {quote(copy.name.split(' ', 1)[1])}")
        else:
            os.unlink(copy.name)

    def table_rows(self, target: Target) -> dict[str, int]:
        with self.connect(target, target.database) as conn, conn.cursor() as cur:
            tables = table_names(cur, target.database)
            counts = {}
            for table in tables:
                cur.execute(f"SELECT COUNT(*) FROM {quote(table)}")
                counts[table] = cur.fetchone()[0]
            return counts
