"""Failure paths, each caused for real on every engine: the dump tool killed,
signals, a closed stdout, bad credentials, truncated / corrupted / foreign /
empty streams, and loads that fail halfway.

Each asserts the exit code, the one-line reason on stderr and in syslog, that
the restore target is byte-for-byte unchanged (TestDatabase.fingerprint), and
that no temporary file and no child process is left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..conftest import ENGINE_PARAMS, _engine_id
from ..helpers import dbpipe
from testkit.prerequisites import not_applicable
from testkit.servers import free_port
from .kit import (DUMP_TOOLS, LOADERS, LeftoverWatch, add_big_table, alive, assert_failed, assert_result,
                  big, descendants, dump_bytes, error_line, finish, has_trailer, limited_mysql, new_database,
                  payload, prepared, read_all, start, synthetic_stream, verify_bytes, wait_for, wait_for_child)

__all__ = ["big", "prepared"]  # module-scoped fixtures, one set per engine

TOOL_KILLED = r"^(mariadb-dump|mysqldump|pg_dump|sqlite3) was killed by SIGKILL"
TRUNCATED = r"^incomplete stream|^truncated stream"


def assert_clean(prepared, private_tmp):
    """The target as it was, no staging database, no temp file."""
    assert prepared.unchanged(), "the restore target changed"
    assert prepared.staging_databases() == []
    assert os.listdir(private_tmp) == []


def restore(prepared, data: bytes, env, *extra):
    with LeftoverWatch():
        return dbpipe("dbpipe-restore", *prepared.args(), *extra, stdin=data, env=env)


# --- the reader ----------------------------------------------------------------------------

def test_dump_tool_killed_mid_stream(big, env, syslog, private_tmp):
    with LeftoverWatch():
        proc = start("dbpipe-dump", *big.args(), env=env)
        head = read_all(proc.stdout, 1 << 20)           # streaming has begun ...
        tool = wait_for_child(proc.pid, DUMP_TOOLS[big.kind])
        os.kill(tool.pid, signal.SIGKILL)                # ... and is far from done
        stored = head + read_all(proc.stdout)
        code, err = finish(proc)
    assert_failed(code, err, syslog, "dbpipe-dump", 69, TOOL_KILLED)
    assert not has_trailer(stored)
    assert os.listdir(private_tmp) == []
    # what Bareos stored is refused on restore, before anything changes
    big.fingerprint = big.db.fingerprint()  # (sqlite: a dump leaves -wal/-shm files, harmless)
    result = restore(big, stored, env)
    assert_result(result, syslog, "dbpipe-restore", 65, TRUNCATED)
    assert_clean(big, private_tmp)


def test_sigterm_to_the_reader(big, env, syslog, private_tmp):
    with LeftoverWatch():
        proc = start("dbpipe-dump", *big.args(), env=env)
        head = read_all(proc.stdout, 1 << 20)
        tool = wait_for_child(proc.pid, DUMP_TOOLS[big.kind])
        proc.send_signal(signal.SIGTERM)
        stored = head + read_all(proc.stdout)
        code, err = finish(proc)
    assert_failed(code, err, syslog, "dbpipe-dump", 143, r"^cancelled by SIGTERM$")
    assert not alive(tool.pid)
    assert not has_trailer(stored)
    assert verify_bytes(stored).returncode == 65
    assert os.listdir(private_tmp) == []


def test_stdout_closed_early(big, env, syslog, private_tmp):
    with LeftoverWatch():
        proc = start("dbpipe-dump", *big.args(), env=env)
        read_all(proc.stdout, 65536)
        tool = wait_for_child(proc.pid, DUMP_TOOLS[big.kind])
        proc.stdout.close()
        code, err = finish(proc)
    assert_failed(code, err, syslog, "dbpipe-dump", 74, r"stdout was closed")
    assert not alive(tool.pid)
    assert os.listdir(private_tmp) == []


def read_until_idle(stream, quiet: float = 0.5) -> bytes:
    """Everything the reader passes on until it has nothing more for `quiet` seconds:
    then it waits for its dump tool."""
    data = []
    while select.select([stream], [], [], quiet)[0]:
        piece = os.read(stream.fileno(), 1 << 20)
        if not piece:
            break
        data.append(piece)
    return b"".join(data)


def assert_stops_at_once(proc, tool, syslog) -> None:
    """Close the reader's stdout, as a cancelled Bareos job does, while its dump
    tool is silent: it must notice within 2 s (not at the tool's next write),
    fail as a closed stdout does and leave no tool behind."""
    proc.stdout.close()
    closed = time.monotonic()
    code, err = finish(proc, timeout=30)
    waited = time.monotonic() - closed
    assert_failed(code, err, syslog, "dbpipe-dump", 74, r"stdout was closed before the dump was complete")
    assert waited < 2, f"dbpipe-dump noticed its closed stdout only after {waited:.1f} s"
    assert not alive(tool.pid)


def test_stdout_closed_while_the_dump_tool_is_stopped(big, env, syslog, private_tmp):
    with LeftoverWatch():
        proc = start("dbpipe-dump", *big.args(), env=env)
        read_all(proc.stdout, 65536)
        tool = wait_for_child(proc.pid, DUMP_TOOLS[big.kind])
        os.kill(tool.pid, signal.SIGSTOP)                # silent, with every pipe on the way full
        assert read_until_idle(proc.stdout)
        assert_stops_at_once(proc, tool, syslog)
    assert os.listdir(private_tmp) == []


HOLD_TABLE = "oc_zz_held"    # dumped last (alphabetical): the dump tool blocks mid-stream on it


@contextlib.contextmanager
def held_table(db):
    """A table the dump tool cannot read while we hold a write lock on it (a
    busy application): it streams every table before it, then waits."""
    import pymysql

    db.sql(f"CREATE TABLE {HOLD_TABLE} (id INT PRIMARY KEY, v TEXT); "
           f"INSERT INTO {HOLD_TABLE} SELECT seq, REPEAT('x', 100) FROM seq_1_to_1000")
    server = db.server
    where = ({"unix_socket": server.socket} if server.socket
             else {"host": server.host or "127.0.0.1", "port": server.port})
    conn = pymysql.connect(user=server.admin_user, password=server.admin_password or "",
                           database=db.name, **where)
    try:
        conn.cursor().execute(f"LOCK TABLES {HOLD_TABLE} WRITE")
        yield
    finally:
        conn.close()


def waiting_for(server, table: str) -> bool:
    return server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                      f"WHERE INFO LIKE '%{table}%' AND STATE LIKE 'Waiting%'") not in ("", "0")


@pytest.mark.parametrize("kind_spec", [p for p in ENGINE_PARAMS if p.startswith("mysql")], ids=_engine_id)
def test_stdout_closed_while_the_dump_tool_waits_for_a_table_lock(kind_spec, server_pool, env, syslog,
                                                                  private_tmp, tmp_path):
    db = new_database(kind_spec, server_pool, tmp_path)
    with held_table(db), LeftoverWatch():
        proc = start("dbpipe-dump", *db.args(), env=env)
        tool = wait_for_child(proc.pid, DUMP_TOOLS["mysql"])
        assert read_until_idle(proc.stdout)               # every table before it has streamed ...
        wait_for(lambda: waiting_for(db.server, HOLD_TABLE), "the dump tool to wait for the held table",
                 interval=0.2)
        read_until_idle(proc.stdout)                      # ... and the tool waits for the held one
        assert_stops_at_once(proc, tool, syslog)
    assert os.listdir(private_tmp) == []


def test_nonexistent_database_is_no_input(prepared, env, syslog, private_tmp, tmp_path):
    if prepared.kind == "sqlite":
        args = ["--type", "sqlite", "--database", tmp_path / "no-such.db"]
    else:
        args = prepared.db.server.args("no_such_database_x")   # as admin: it could see it
    with LeftoverWatch():
        result = dbpipe("dbpipe-dump", *args, env=env)
    assert_result(result, syslog, "dbpipe-dump", 66, r"unknown database|does not exist")
    assert result.stdout == b"" or not has_trailer(result.stdout)
    assert os.listdir(private_tmp) == []


def _wrong_password_args(prepared, tmp_path):
    bad = tmp_path / "wrong.pw"
    bad.write_text("not-the-password\n")
    os.chmod(bad, 0o600)
    args = list(prepared.args())
    args[args.index("--password-file") + 1] = str(bad)
    return args


def test_wrong_password_is_denied_77(prepared, env, syslog, private_tmp, tmp_path):
    if prepared.kind == "sqlite":
        not_applicable("sqlite has no password")
    args = _wrong_password_args(prepared, tmp_path)
    with LeftoverWatch():
        result = dbpipe("dbpipe-dump", *args, env=env)
    assert_result(result, syslog, "dbpipe-dump", 77, r"denied|authentication failed")
    assert not has_trailer(result.stdout)
    with LeftoverWatch():
        result = dbpipe("dbpipe-restore", *args, stdin=prepared.stream, env=env)
    assert_result(result, syslog, "dbpipe-restore", 77, r"denied|authentication failed")
    assert_clean(prepared, private_tmp)


def test_unreachable_server_is_unavailable_69(prepared, env, syslog, private_tmp):
    if prepared.kind == "sqlite":
        not_applicable("sqlite has no server")
    args = ["--type", prepared.kind, "--host", "127.0.0.1", "--port", free_port(), "--user", "nobody",
            "--database", "nextcloud"]
    with LeftoverWatch():
        result = dbpipe("dbpipe-dump", *args, env=env)
    assert_result(result, syslog, "dbpipe-dump", 69, r"can't connect|connection refused|could not connect")
    with LeftoverWatch():
        result = dbpipe("dbpipe-restore", *args, stdin=prepared.stream, env=env)
    assert_result(result, syslog, "dbpipe-restore", 69, r"can't connect|connection refused|could not connect")
    assert os.listdir(private_tmp) == []


# --- damaged streams ------------------------------------------------------------------------

def cut_points(stream: bytes) -> list[int]:
    """Representative prefixes (the dense sweep over every prefix runs in-process
    in tests/unit/test_stream.py): in and at the end of the header, across the
    payload, around and inside the trailer, and the last byte."""
    header_end = stream.index(b"\n") + 1
    trailer = stream.rindex(b"-- dbpipe-trailer 1\n")
    lines = [trailer + i + 1 for i, byte in enumerate(stream[trailer:]) if byte == 10]
    points = [1, header_end - 1, header_end]
    points += [header_end + (trailer - header_end) * k // 4 for k in range(1, 4)]
    points += [trailer - 1, trailer, lines[1], lines[-3], lines[-2], len(stream) - 1]
    return sorted(set(points))


def test_truncation_sweep_through_dbpipe_verify(prepared, env):
    stream = prepared.stream
    assert verify_bytes(stream).returncode == 0

    def check(cut):
        result = verify_bytes(stream[:cut], env)
        return cut, result.returncode, result.stdout

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(check, cut_points(stream)))
    assert [(cut, code) for cut, code, _ in results if code != 65] == []
    assert all(b"verdict:   DAMAGED" in out for _, _, out in results)


def damaged_streams(stream: bytes) -> dict[str, bytes]:
    header_end = stream.index(b"\n") + 1
    trailer = stream.rindex(b"-- dbpipe-trailer 1\n")

    def flip(at):
        return stream[:at] + bytes([stream[at] ^ 0x01]) + stream[at + 1:]

    return {
        "cut in header": stream[:header_end // 2],
        "cut in payload": stream[:(header_end + trailer) // 2],
        "cut in trailer": stream[:trailer + 40],
        "cut before last byte": stream[:-1],
        "flip in header": flip(header_end - 3),
        "flip in payload": flip(trailer - 100),
        "flip in trailer": flip(len(stream) - 40),
    }


DAMAGES = ["cut in header", "cut in payload", "cut in trailer", "cut before last byte",
           "flip in header", "flip in payload", "flip in trailer"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_stream_is_refused_and_target_unchanged(prepared, damage, env, syslog, private_tmp):
    result = restore(prepared, damaged_streams(prepared.stream)[damage], env)
    assert_result(result, syslog, "dbpipe-restore", 65,
                  r"incomplete|truncated|mismatch|malformed|not a dbpipe|disagree")
    assert_clean(prepared, private_tmp)


def test_stream_of_another_engine_is_refused(prepared, env, syslog, private_tmp):
    other = "pgsql" if prepared.kind != "pgsql" else "mysql"
    result = restore(prepared, synthetic_stream(other, "nextcloud", b"SELECT 1;\n"), env)
    assert_result(result, syslog, "dbpipe-restore", 65,
                  rf"this is a {other} stream; the target is {prepared.kind}")
    assert_clean(prepared, private_tmp)


def test_empty_stdin_is_no_input_66(prepared, env, syslog, private_tmp):
    with LeftoverWatch():
        result = dbpipe("dbpipe-restore", *prepared.args(), stdin=None, env=env)
    assert_result(result, syslog, "dbpipe-restore", 66, r"^empty input")
    assert_clean(prepared, private_tmp)


# --- the writer -------------------------------------------------------------------------------

def _loading_started(prepared, proc):
    """Wait until the writer is really loading: mysql into the staging database,
    pgsql inside its transaction (it has written), sqlite into the new file."""
    wait_for_child(proc.pid, LOADERS[prepared.kind])
    if prepared.kind == "mysql":
        wait_for(prepared.staging_databases, "the staging database")
    elif prepared.kind == "pgsql":
        name = prepared.db.name.replace("'", "''")
        wait_for(lambda: prepared.db.server.sql(
            f"SELECT 1 FROM pg_stat_activity WHERE datname = '{name}' AND backend_xid IS NOT NULL"),
            "the restore transaction", interval=0.05)
    else:
        directory = os.path.dirname(prepared.db.path)
        wait_for(lambda: any(".dbpipe-new-" in name for name in os.listdir(directory)), "the new file")


def test_sigterm_to_the_writer_while_it_loads(prepared, env, syslog, private_tmp):
    stream = prepared.stream
    with LeftoverWatch():
        proc = start("dbpipe-restore", *prepared.args(), env=env)
        proc.stdin.write(stream[: len(stream) * 2 // 3])
        proc.stdin.flush()
        _loading_started(prepared, proc)
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc)
    assert_failed(code, err, syslog, "dbpipe-restore", 143, r"^cancelled by SIGTERM$")
    assert_clean(prepared, private_tmp)


def test_sigterm_to_the_writer_as_it_starts_a_child(prepared, env, syslog, private_tmp):
    """The first child (pgsql: a control query) is just being started: the
    signal must neither orphan it nor keep the writer alive."""
    with LeftoverWatch():
        proc = start("dbpipe-restore", *prepared.args(), env=env)
        proc.stdin.write(prepared.stream[:100_000])
        proc.stdin.flush()
        wait_for_child(proc.pid, LOADERS[prepared.kind])
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code, err = finish(proc, timeout=30)
    assert time.monotonic() - started < 20
    assert_failed(code, err, syslog, "dbpipe-restore", 143, r"^cancelled by SIGTERM$")
    assert_clean(prepared, private_tmp)


FAILING_SQL = {
    "mysql": b"INSERT INTO oc_no_such_table VALUES (1);\n",
    "pgsql": b"INSERT INTO public.oc_no_such_table VALUES (1);\n",
    "sqlite": b"INSERT INTO oc_no_such_table VALUES (1);\n",
}


def failing_stream(prepared) -> bytes:
    """A valid stream (good trailer) whose SQL fails after everything else loaded."""
    body = payload(prepared.stream)
    if prepared.kind == "sqlite":   # inside .dump's transaction, before its COMMIT
        body = body[: body.rindex(b"COMMIT;")] + FAILING_SQL["sqlite"] + b"COMMIT;\n"
    else:
        body += FAILING_SQL[prepared.kind]
    return synthetic_stream(prepared.kind, prepared.db.name, body)


def test_load_failing_halfway_leaves_the_target_unchanged(prepared, env, syslog, private_tmp):
    result = restore(prepared, failing_stream(prepared), env)
    assert_result(result, syslog, "dbpipe-restore", 65, r"could not be loaded.*oc_no_such_table")
    assert_clean(prepared, private_tmp)


def test_mysql_replace_mode_puts_the_previous_content_back(prepared, env, syslog, private_tmp):
    if prepared.kind != "mysql":
        not_applicable("--mode replace is mysql only")
    result = restore(prepared, failing_stream(prepared), env, "--mode", "replace")
    assert_result(result, syslog, "dbpipe-restore", 65,
                  r"could not be loaded.*oc_no_such_table.*the previous content was put back")
    assert "restore mode: replace (requested)" in result.stderr.decode()
    assert_clean(prepared, private_tmp)


def test_mysql_account_without_create_database_right(prepared, server_pool, env, syslog,
                                                     private_tmp, tmp_path):
    """auto mode falls back to replace; a load failing halfway puts the content back."""
    if prepared.kind != "mysql":
        not_applicable("mysql only")
    limited = limited_mysql(prepared.kind_spec, server_pool, tmp_path)
    stream = synthetic_stream("mysql", limited.name, payload(dump_bytes(limited)) + FAILING_SQL["mysql"])
    before = limited.fingerprint()
    with LeftoverWatch():
        result = dbpipe("dbpipe-restore", *limited.args(), stdin=stream, env=env)
    assert_result(result, syslog, "dbpipe-restore", 65,
                  r"could not be loaded.*oc_no_such_table.*the previous content was put back")
    assert "account may not create databases" in result.stderr.decode()
    assert limited.fingerprint() == before
    assert os.listdir(private_tmp) == []
    with LeftoverWatch():
        result = dbpipe("dbpipe-restore", *limited.args(), "--mode", "atomic", stdin=stream, env=env)
    assert_result(result, syslog, "dbpipe-restore", 77, r"--mode replace works without that right")
    assert limited.fingerprint() == before


def test_mysql_replace_mode_refuses_what_it_could_not_put_back(prepared, server_pool, env, syslog,
                                                               private_tmp, tmp_path):
    """A view/trigger defined by another account (here: root) could not be
    recreated by a limited account after a failed load: refuse up front."""
    if prepared.kind != "mysql":
        not_applicable("mysql only")
    limited = limited_mysql(prepared.kind_spec, server_pool, tmp_path, own_definers=False)
    before = limited.fingerprint()
    with LeftoverWatch():
        result = dbpipe("dbpipe-restore", *limited.args(), stdin=dump_bytes(limited), env=env)
    assert_result(result, syslog, "dbpipe-restore", 77,
                  r"could not put back .*(view oc_big_files|trigger oc_filecache_etag) \(definer root@.*"
                  r"nothing was changed")
    assert limited.fingerprint() == before
    assert os.listdir(private_tmp) == []


def test_the_leftover_watch_catches_an_orphaned_process():
    """The check every test above relies on: an orphan is reported (and killed)."""
    with pytest.raises(AssertionError, match="processes left behind: .*sleep"):
        with LeftoverWatch():
            subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 &"], check=True, capture_output=True,
                           timeout=10)


def test_sigterm_around_the_sqlite_rename_reports_what_happened(server_pool, tmp_path, env, syslog):
    """SIGTERM at many moments around the rename that puts the new file in
    place (after the kept copy is made): the exit code and the last line always
    say what happened - 143 and the database untouched, or 0, 'restore
    complete' and the new database (a cancel that came too late is named)."""
    import sqlite3

    db = new_database("sqlite", server_pool, tmp_path)
    add_big_table(db, 20_000)
    stream = dump_bytes(db)
    directory = os.path.dirname(db.path)
    outcomes = []
    for attempt, delay in enumerate([0, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05] * 2):
        with contextlib.closing(sqlite3.connect(db.path)) as conn, conn:
            conn.execute("INSERT INTO oc_blobs VALUES (?, NULL, 'before this attempt')", (1000 + attempt,))
        with LeftoverWatch():
            proc = start("dbpipe-restore", *db.args(), "--keep-old-copies", "0", env=env)
            proc.stdin.write(stream)
            proc.stdin.close()
            # the kept copy is the last step before the rename: once its sqlite3 is gone, the rename is next
            wait_for(lambda: any(".dbpipe-old-" in n for n in os.listdir(directory)), "the kept copy",
                     interval=0.001)
            wait_for(lambda pid=proc.pid: not alive_sqlite_children(pid), "the kept copy's end", interval=0.0005)
            time.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            code, stderr = finish(proc)
        replaced = not _has_row(db.path, 1000 + attempt)
        last = error_line(stderr, "dbpipe-restore")
        if code == 143:
            assert not replaced and last == "cancelled by SIGTERM", stderr
        else:
            assert code == 0 and replaced, stderr
            assert last.startswith("restore complete") or re.fullmatch(
                r"SIGTERM arrived (while .* was being replaced|after .*); the restore had passed its point of "
                r"no return and is complete: nothing was cancelled|"
                r"SIGTERM arrived after the restore was complete: nothing was cancelled", last), stderr
        outcomes.append((code, "SIGTERM arrived" in stderr))
        for name in os.listdir(directory):
            assert ".dbpipe-new-" not in name
            if ".dbpipe-old-" in name:
                os.unlink(os.path.join(directory, name))
    assert (0, True) in outcomes, outcomes          # some signals came while the rename ran, or after


def alive_sqlite_children(pid: int) -> bool:
    return any(p.comm == "sqlite3" and p.state != "Z" for p in descendants(pid))


def _has_row(path: str, row: int) -> bool:
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT COUNT(*) FROM oc_blobs WHERE id = ?", (row,)).fetchone()[0] == 1
