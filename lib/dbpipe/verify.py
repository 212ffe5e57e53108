"""dbpipe-verify: check a stored stream offline, optionally by restoring it
into a throwaway database."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from . import files
from .credentials import private_directory
from .engines import RestoreOptions, get_engine
from .errors import CantCreateError, DataError, DbpipeError, ExitCode, PermissionDenied, UsageError
from .stream import Trailer, write_all
from .target import Target
from .transfer import Pump

CREATE_TABLE = b"\nCREATE TABLE "
PG_SOCKET_DIR = "/var/run/postgresql"     # Debian's, where peer authentication is set up


class TableCounter:
    """Counts CREATE TABLE statements in the payload, across chunk borders."""

    def __init__(self):
        self.count = 0
        self._carry = b""

    def __call__(self, data) -> None:
        window = self._carry + bytes(data)
        self.count += window.count(CREATE_TABLE)
        self._carry = window[-(len(CREATE_TABLE) - 1):]


@dataclass
class Verdict:
    trailer: Trailer
    tables_in_stream: int
    rows: dict[str, int] = field(default_factory=dict)
    restored: bool = False


def verify(in_fd: int, label: str) -> Verdict:
    """Read the whole stream and check its trailer; raises DataError if bad."""
    counter = TableCounter()
    trailer = Pump(in_fd, label, observer=counter).run(lambda data: None)
    return Verdict(trailer, counter.count)


def test_restore(in_fd: int, label: str, target: Target, required: tuple[str, ...] = ()) -> Verdict:
    """Verify and load the stream into a scratch database, restore it once
    more over what that load left - the way a live restore replaces the
    database - and check the result.

    The first load proves the stream (a failure there is damage, 65); the
    second proves the in-place restore, which must remove everything the
    stream creates first: a stream that loads only into an empty database
    is no backup to rely on, but it is not damaged (InPlaceError).
    required: tables the application cannot run without (e.g. Nextcloud's
    oc_filecache): a stream that loads but lacks them is no usable backup."""
    counter = TableCounter()
    with _replay(in_fd) as (again, copy):
        pump = Pump(in_fd, label, observer=_both(counter, copy))
        header = pump.require_header("stream to verify")
        if header.scope != "database":
            raise DataError("--test-restore supports single-database streams only")
        engine = get_engine(target.type or header.engine)
        with engine.scratch(target.merged(type=engine.name)) as scratch:
            trailer = engine.load_scratch(scratch, pump)
            copy(pump.verifier.trailer_bytes)
            _restore_in_place(engine, scratch, again(), label)
            rows = engine.table_rows(scratch)
    if len(rows) < counter.count:
        raise DataError(f"test restore has {len(rows)} tables, the stream creates {counter.count}")
    present = {name.rsplit(".", 1)[-1] for name in rows}   # pgsql: schema.table
    missing = [name for name in required if name not in present]
    if missing:
        raise DataError(f"test restore lacks the tables {', '.join(missing)}")
    return Verdict(trailer, counter.count, rows, restored=True)


class InPlaceError(DbpipeError):
    """The stream is intact and loads into an empty database, but restoring
    it over a database that holds it failed: never reported as damage."""


def _restore_in_place(engine, scratch: Target, fd: int, label: str) -> None:
    """The live restore's own path (restore(), not load_scratch()) into the
    scratch database the first load filled; the old content is not kept."""
    try:
        with Pump(fd, label).draining() as pump:
            pump.require_header("stream to verify")
            engine.restore(scratch, pump, RestoreOptions(keep_old=False))
    except DbpipeError as exc:
        code = ExitCode.SOFTWARE if isinstance(exc, DataError) else exc.code
        raise InPlaceError(f"the stream is intact, but restoring it in place over its own content "
                           f"failed: {exc}", code) from None


def _both(*observers):
    def observe(data) -> None:
        for observer in observers:
            observer(data)
    return observe


@contextlib.contextmanager
def _replay(in_fd: int):
    """(again, copy): again() gives an fd that reads the stream once more from
    its start.  A regular file is read again where it is; anything else (a
    pipe) is copied to a private spool as it passes - copy(data) - first."""
    try:
        start = os.lseek(in_fd, 0, os.SEEK_CUR)
        seekable = stat.S_ISREG(os.fstat(in_fd).st_mode)
    except OSError:
        seekable = False
    if seekable:

        def again() -> int:
            os.lseek(in_fd, start, os.SEEK_SET)
            return in_fd

        yield again, (lambda data: None)
        return
    with private_directory(prefix="dbpipe-verify-") as directory:
        path = os.path.join(directory, "stream")
        with open(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), "w+b", buffering=0) as spool:

            def copy(data) -> None:
                try:
                    write_all(spool.fileno(), data)
                except OSError as exc:
                    raise CantCreateError(f"cannot spool the stream for the in-place test restore in "
                                          f"{directory}: {exc.strerror}") from None

            def again() -> int:
                os.lseek(spool.fileno(), 0, os.SEEK_SET)
                return spool.fileno()

            yield again, copy


@dataclass(frozen=True)
class Scratch:
    """Where the test restore loads the stream, and the tables the
    application cannot run without (e.g. Nextcloud's oc_filecache)."""

    target: Target
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckRequest:
    """dbpipe-verify's request.  scratch (--test-restore) is asked only once
    the input is open: a missing file is named before any server or PHP is."""

    file: str = "-"
    remove: bool = False       # a restore drill's copy: gone afterwards, whatever the verdict
    scratch: Callable[[], Scratch] | None = None


def check_file(request: CheckRequest) -> Verdict:
    """Check the stream, print its verdict lines (also for a damaged one,
    which then raises) and remove a drill's copy."""
    try:
        with files.open_input(request.file) as handle:
            try:
                report = check(handle.fileno(), request)
            except DataError as exc:
                print(describe_damage(request.file, exc), flush=True)
                raise
            except InPlaceError as exc:
                print(describe_in_place_failure(request.file, exc), flush=True)
                raise
    finally:
        if request.remove and request.file != "-":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(request.file)
    print(describe(request.file, report))
    return report


def check(fd: int, request: CheckRequest) -> Verdict:
    """Read the stream on fd, or with a scratch database also load it."""
    if request.scratch is None:
        return verify(fd, request.file)
    scratch = request.scratch()
    return test_restore(fd, request.file, scratch.target, scratch.required)


def scratch_target(named: Target | None, installation: Target | None) -> Target:
    """Who creates the scratch database: an account the caller names, or -
    with an installation alone - the local server's administrative account,
    never the application's own (no Nextcloud install grants its user CREATE
    on other databases, and a drill must need no grant of its own)."""
    if named is not None:
        return named
    if installation is None or installation.type == "sqlite":
        return Target()
    return administrative_target(installation)


LOCAL_HOSTS = (None, "", "localhost", "127.0.0.1", "::1")


def administrative_target(database: Target) -> Target:
    """The administrative account of the server holding database, as a
    distribution installs it: MariaDB/MySQL root over the Unix socket
    (unix_socket authentication), PostgreSQL postgres by peer authentication
    (psql runs as the local postgres account).  Only root can use either."""
    if os.geteuid() != 0:
        raise PermissionDenied("the test restore creates its scratch database with the database server's "
                               "administrative account, which needs root: run it as root, or name an account "
                               "that may create databases (--profile)")
    if not database.socket and database.host not in LOCAL_HOSTS:
        raise UsageError(f"the database server {database.host} is not on this host: name an account there "
                         f"that may create databases (--profile) for the test restore")
    socket = database.socket or server_socket(database)
    if database.type == "mysql":
        return Target(type="mysql", socket=socket, user="root")
    return Target(type="pgsql", socket=socket or PG_SOCKET_DIR, port=database.port, user="postgres", peer=True)


def server_socket(database: Target) -> str | None:
    """The Unix socket of the server that database's account reaches over
    TCP (any account may ask), so the administrative account goes to the
    same server and not to a default socket of another one."""
    engine = get_engine(database.type)
    if database.type == "mysql":
        with engine.connect(database) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT @@socket")
            return (cursor.fetchone() or [None])[0] or None
    found = engine.query(database, "SHOW unix_socket_directories", database.database)
    return found.split(",")[0].strip() or None


def describe(path: str, report: Verdict) -> str:
    """The lines dbpipe-verify prints for an intact stream."""
    t = report.trailer
    lines = [("file", path), ("engine", t.engine), ("server", t.server_version),
             ("database", t.database or "(all databases)"), ("created", t.created),
             ("size", f"{t.bytes} bytes"), ("sha256", t.sha256), ("tables", report.tables_in_stream)]
    if report.restored:
        rows = ", ".join(f"{name}={count}" for name, count in sorted(report.rows.items()))
        lines.append(("restored", f"{len(report.rows)} tables: {rows}"))
    lines.append(("verdict", "intact" + (", test restore passed" if report.restored else "")))
    return "\n".join(f"{key + ':':<10} {value}" for key, value in lines)


def describe_damage(path: str, exc: DataError) -> str:
    return f"file:      {path}\nverdict:   DAMAGED - {exc}"


def describe_in_place_failure(path: str, exc: InPlaceError) -> str:
    return f"file:      {path}\nverdict:   intact, but the test restore in place FAILED - {exc}"
