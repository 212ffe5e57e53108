"""Tools for the failure, CLI and security tests: running the executables in
the background, finding their children through /proc, catching anything they
leave running, and prepared databases with a stream of each.

"No child process left behind" is checked for real: while a command runs, the
test process is a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so every
process the command orphans is re-parented to us instead of init and shows up
as a new child of ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import ENGINE_PARAMS, _engine_id, make_mysql, make_pgsql, make_sqlite
from ..helpers import BIN, bareos_env, dbpipe

from dbpipe.stream import Header, StreamWriter

PR_SET_CHILD_SUBREAPER = 36
DUMP_TOOLS = {"mysql": ("mariadb-dump", "mysqldump"), "pgsql": ("pg_dump",), "sqlite": ("sqlite3",)}
LOADERS = {"mysql": ("mariadb", "mysql"), "pgsql": ("psql",), "sqlite": ("sqlite3",)}
BIG_ROWS = 5_000            # x 1000 bytes: a dump far larger than all pipe buffers on the way
TRAILER_START = b"-- dbpipe-trailer 1\n"

_libc = ctypes.CDLL(None, use_errno=True)


# --- /proc ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Proc:
    pid: int
    comm: str
    state: str
    ppid: int

    @classmethod
    def read(cls, pid: int) -> "Proc | None":
        try:
            with open(f"/proc/{pid}/stat", "rb") as handle:
                data = handle.read().decode("utf-8", "replace")
        except OSError:
            return None
        comm = data[data.index("(") + 1:data.rindex(")")]
        state, ppid = data[data.rindex(")") + 2:].split()[:2]
        return cls(pid, comm, state, int(ppid))

    def cmdline(self) -> str:
        with contextlib.suppress(OSError):
            with open(f"/proc/{self.pid}/cmdline", "rb") as handle:
                return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        return ""


def processes() -> list[Proc]:
    found = (Proc.read(int(name)) for name in os.listdir("/proc") if name.isdigit())
    return [proc for proc in found if proc is not None]


def descendants(pid: int) -> list[Proc]:
    table = processes()
    result, parents = [], {pid}
    while True:
        new = [p for p in table if p.ppid in parents and p.pid not in parents]
        if not new:
            return result
        result += new
        parents |= {p.pid for p in new}


def wait_for(check, what: str, timeout: float = 30, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_child(pid: int, names, timeout: float = 30) -> Proc:
    """The first descendant of pid whose command name is one of names."""
    return wait_for(lambda: next((p for p in descendants(pid) if p.comm in names and p.state != "Z"), None),
                    f"a {'/'.join(names)} child of {pid}", timeout)


def alive(pid: int) -> bool:
    proc = Proc.read(pid)
    return proc is not None and proc.state != "Z"


class LeftoverWatch:
    """Makes us the subreaper of everything started in the block; check() lists
    what is still running besides our own earlier children, kills and reaps it."""

    def __enter__(self):
        self.before = {p.pid for p in processes() if p.ppid == os.getpid()}
        if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        return self

    def leftovers(self) -> list[str]:
        found = []
        for proc in processes():
            if proc.ppid != os.getpid() or proc.pid in self.before:
                continue
            if proc.state != "Z":
                found.append(f"{proc.pid} {proc.comm}: {proc.cmdline()[:200]}")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
        return found

    def __exit__(self, *exc):
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        found = self.leftovers()
        if exc[0] is None:
            assert found == [], f"processes left behind: {found}"


# --- running the executables in the background --------------------------------------------

def start(command: str, *args, env: dict, stdin=subprocess.PIPE, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / command), *map(str, args)], stdin=stdin, stdout=stdout,
                            stderr=subprocess.PIPE, cwd="/", env=env)


def read_all(stream, limit: int | None = None) -> bytes:
    """Read to EOF (or limit bytes) from a pipe."""
    chunks, total = [], 0
    while limit is None or total < limit:
        data = os.read(stream.fileno(), 1 << 20 if limit is None else min(1 << 20, limit - total))
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    """Wait for proc (killed if it outlives timeout); returns (exit code, stderr text)."""
    err = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
    return code, b"".join(err).decode("utf-8", "replace")


def error_line(stderr: str, program: str) -> str:
    """The one-line reason: the last stderr line, without the program prefix."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    assert lines[-1].startswith(f"{program}: "), lines[-1]
    return lines[-1][len(program) + 2:]


def assert_failed(code: int, stderr: str, syslog, program: str, expected: int, pattern: str) -> str:
    """Exit code, the one-line message on stderr, and the same line in syslog."""
    message = error_line(stderr, program)
    assert code == expected, f"exit {code}, expected {expected}: {stderr[-2000:]}"
    assert re.search(pattern, message, re.IGNORECASE), f"{message!r} does not match {pattern!r}"
    wait_for(lambda: message in syslog.text(), f"{message!r} in syslog", timeout=5)
    return message


def assert_result(result: subprocess.CompletedProcess, syslog, program: str, expected: int,
                  pattern: str) -> str:
    return assert_failed(result.returncode, result.stderr.decode("utf-8", "replace"), syslog,
                         program, expected, pattern)


def has_trailer(data: bytes) -> bool:
    return TRAILER_START in data[-8192:]


def verify_bytes(data: bytes, env: dict | None = None) -> subprocess.CompletedProcess:
    return dbpipe("dbpipe-verify", stdin=data, env=env or bareos_env())


# --- databases and their streams --------------------------------------------------------------

@dataclass
class Prepared:
    """A populated database (reached as a password-protected user), a good
    stream of it and its fingerprint before anything ran against it."""

    kind_spec: str
    kind: str
    db: object
    stream: bytes
    fingerprint: bytes
    directory: Path

    def args(self) -> list[str]:
        return self.db.args()

    def unchanged(self) -> bool:
        return self.db.fingerprint() == self.fingerprint

    def staging_databases(self) -> list[str]:
        """mysql staging databases of this database that still exist."""
        if self.kind != "mysql":
            return []
        prefix = self.db.name[:20]
        names = self.db.server.sql("SHOW DATABASES").splitlines()
        return [n for n in names if n.startswith(prefix) and "__dbpipe_new_" in n]

    def stream_file(self, name: str = "stream.sql", data: bytes | None = None) -> Path:
        path = self.directory / name
        path.write_bytes(self.stream if data is None else data)
        return path


def new_database(kind_spec: str, server_pool, directory: Path, **kw):
    if kind_spec == "sqlite":
        return make_sqlite(directory, **kw)
    kind, spec = kind_spec.split(":", 1)
    server = server_pool.get(kind, spec)
    return (make_mysql if kind == "mysql" else make_pgsql)(server, directory, **kw)


def dump_bytes(db, env: dict | None = None) -> bytes:
    result = dbpipe("dbpipe-dump", *db.args(), env=env or bareos_env())
    assert result.returncode == 0, result.stderr
    return result.stdout


def prepare(kind_spec: str, server_pool, directory: Path) -> Prepared:
    directory.mkdir(parents=True, exist_ok=True)
    db = new_database(kind_spec, server_pool, directory)
    return Prepared(kind_spec, db.kind, db, dump_bytes(db), db.fingerprint(), directory)


def add_big_table(db, rows: int = BIG_ROWS) -> None:
    """About rows kB of data, generated by the server itself (fast)."""
    if db.kind == "mysql":
        db.sql("CREATE TABLE oc_big (id INT PRIMARY KEY, v VARCHAR(1000)) ENGINE=InnoDB;"
               f"INSERT INTO oc_big SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000) FROM seq_1_to_{rows}")
    elif db.kind == "pgsql":
        db.sql(f'SET ROLE "{db.owner}"; CREATE TABLE oc_big (id INT PRIMARY KEY, v TEXT);'
               f"INSERT INTO oc_big SELECT i, repeat(chr(65 + i % 26), 1000) FROM generate_series(1, {rows}) i")
    else:
        with contextlib.closing(sqlite3.connect(db.path)) as conn, conn:
            conn.execute("CREATE TABLE oc_big (id INTEGER PRIMARY KEY, v TEXT)")
            conn.execute("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
                         "INSERT INTO oc_big SELECT i, hex(randomblob(500)) FROM c", (rows,))


def limited_mysql(kind_spec: str, server_pool, directory: Path, own_definers: bool = True):
    """A mysql database whose account may not create databases (so restores
    use replace mode).  With own_definers its view and trigger are defined by
    that account, as when the application created them itself."""
    db = new_database(kind_spec, server_pool, directory, can_create=False)
    user = db.user_args[db.user_args.index("--user") + 1]
    definer = f"`{user}`@`{'localhost' if db.server.socket else '%'}`"
    if own_definers:
        db.sql(f"CREATE OR REPLACE DEFINER={definer} VIEW oc_big_files AS "
               "SELECT fileid, name FROM oc_filecache WHERE size > 50000;"
               "DROP TRIGGER oc_filecache_etag;"
               f"CREATE DEFINER={definer} TRIGGER oc_filecache_etag BEFORE INSERT ON oc_filecache "
               "FOR EACH ROW SET NEW.etag = COALESCE(NEW.etag, MD5(NEW.path))")
    return db


def synthetic_stream(engine: str, database: str, sql: bytes) -> bytes:
    """A well-formed stream (valid trailer) around any SQL, written by dbpipe's own writer."""
    with tempfile.TemporaryFile() as handle:
        writer = StreamWriter(handle.fileno(), Header(engine, "database", database))
        writer.write(sql)
        writer.finish("test", "2024-01-01T00:00:00Z", {"tool": "test"})
        handle.seek(0)
        return handle.read()


def payload(stream: bytes) -> bytes:
    """The dump tool's output inside a stream (header line and trailer removed)."""
    return stream[stream.index(b"\n") + 1:stream.rindex(TRAILER_START)]


server_params = pytest.mark.parametrize("kind_spec", [p for p in ENGINE_PARAMS if p != "sqlite"],
                                        ids=_engine_id)


@pytest.fixture(scope="module", params=ENGINE_PARAMS, ids=_engine_id)
def prepared(request, server_pool, tmp_path_factory) -> Prepared:
    """Per engine and test module: a database that tests must leave unchanged."""
    return prepare(request.param, server_pool, tmp_path_factory.mktemp(_engine_id(request.param)))


@pytest.fixture(scope="module")
def big(prepared, server_pool, tmp_path_factory) -> Prepared:
    """On prepared's engine: a database whose dump takes a while to stream (about
    7 MB, far more than all pipe buffers between the dump tool and us)."""
    directory = tmp_path_factory.mktemp("big-" + _engine_id(prepared.kind_spec))
    db = new_database(prepared.kind_spec, server_pool, directory)
    add_big_table(db)
    return Prepared(prepared.kind_spec, db.kind, db, b"", db.fingerprint(), directory)


__all__ = ["DUMP_TOOLS", "LOADERS", "LeftoverWatch", "Prepared", "add_big_table", "alive", "assert_failed",
           "assert_result", "big", "descendants", "dump_bytes", "error_line", "finish", "has_trailer",
           "limited_mysql", "new_database", "payload", "prepare", "prepared", "read_all", "server_params",
           "start", "synthetic_stream", "verify_bytes", "wait_for", "wait_for_child"]
