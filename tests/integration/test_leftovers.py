"""Crashes leave no silent garbage: what a SIGKILLed run leaves behind - a
MariaDB staging database, a private temp directory (with its pgpass file),
SQLite's new database file, a half-written output file - is removed by the
next run, which says so; what a running restore uses is never touched; the
copies restores keep on purpose are listed with their size and bounded by
--keep-old-copies."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from ..helpers import dbpipe
from .kit import (LOADERS, LeftoverWatch, assert_failed, finish, prepare, read_all, start, wait_for,
                  wait_for_child)
from .test_roundtrip import content

REMOVED = re.compile(r"removed (the staging database|temporary directory|"
                     r"unfinished file) ([^\s,]+)")


def removed(stderr: str) -> list[tuple[str, str]]:
    return [match.groups() for match in REMOVED.finditer(stderr)]


def half_restore_then_kill(prepared, env, ready) -> None:
    """dbpipe-restore loading two thirds of a good stream, SIGKILLed once ready()."""
    with LeftoverWatch() as watch:
        proc = start("dbpipe-restore", *prepared.args(), env=env)
        proc.stdin.write(prepared.stream[: len(prepared.stream) * 2 // 3])
        proc.stdin.flush()
        wait_for_child(proc.pid, LOADERS[prepared.kind])
        wait_for(ready, "the restore's staging area")
        proc.kill()
        finish(proc)
        time.sleep(0.5)   # the orphaned loader reads EOF and ends; the watch reaps (or kills) it
        watch.leftovers()


@pytest.fixture(scope="module")
def mysql_db(server_pool, tmp_path_factory):
    """Shared: every test using it leaves the database as it was."""
    return prepare("mysql:local", server_pool, tmp_path_factory.mktemp("mysql"))


def staging(prepared) -> list[str]:
    return prepared.staging_databases()


def test_killed_mysql_restore_leaves_a_staging_database_the_next_restore_removes(mysql_db, env, private_tmp):
    half_restore_then_kill(mysql_db, env, lambda: staging(mysql_db))
    [left] = staging(mysql_db)
    assert mysql_db.unchanged()
    server = mysql_db.db.server
    wait_for(lambda: server.sql(f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{left}'")
             == "0", "the killed loader's connection to end")

    result = dbpipe("dbpipe-restore", *mysql_db.args(), stdin=mysql_db.stream, env=env)

    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert removed(stderr) == [("the staging database", left)]
    assert "left by a dbpipe run that is gone" in stderr
    assert staging(mysql_db) == [] and mysql_db.unchanged()
    assert os.listdir(private_tmp) == []


def test_a_running_restores_staging_database_is_never_removed(mysql_db, env):
    with LeftoverWatch():
        first = start("dbpipe-restore", *mysql_db.args(), env=env)
        first.stdin.write(mysql_db.stream[: len(mysql_db.stream) * 2 // 3])
        first.stdin.flush()
        [busy] = wait_for(lambda: staging(mysql_db), "the first restore's staging database")

        second = dbpipe("dbpipe-restore", *mysql_db.args(), stdin=mysql_db.stream, env=env)

        assert second.returncode == 0, second.stderr.decode()
        assert removed(second.stderr.decode()) == [] and busy in staging(mysql_db)
        first.stdin.write(mysql_db.stream[len(mysql_db.stream) * 2 // 3:])
        first.stdin.close()
        code, stderr = finish(first)
    assert code == 0, stderr
    assert staging(mysql_db) == [] and mysql_db.unchanged()


def test_killed_sqlite_restore_leaves_a_new_file_the_next_restore_removes(tmp_path, server_pool, env):
    db = prepare("sqlite", server_pool, tmp_path / "db")
    directory = os.path.dirname(db.db.path)
    new_files = lambda: [n for n in os.listdir(directory) if ".dbpipe-new-" in n]  # noqa: E731
    half_restore_then_kill(db, env, new_files)
    [left] = [name for name in new_files() if not name.endswith(("-journal", "-wal", "-shm"))]
    before = content(db.db)

    result = dbpipe("dbpipe-restore", *db.args(), stdin=db.stream, env=env)

    assert result.returncode == 0, result.stderr.decode()
    assert removed(result.stderr.decode()) == [("unfinished file", os.path.join(directory, left))]
    assert new_files() == [] and content(db.db) == before


def test_killed_dump_leaves_its_pgpass_directory_to_the_next_run(server_pool, tmp_path, env, private_tmp,
                                                                 syslog):
    db = prepare("pgsql:local", server_pool, tmp_path / "db")
    with LeftoverWatch() as watch:
        proc = start("dbpipe-dump", *db.args(), env=env)
        read_all(proc.stdout, 1000)               # pg_dump runs; nobody reads on: it blocks
        wait_for_child(proc.pid, ("pg_dump",))
        proc.kill()
        finish(proc)
        watch.leftovers()
    [left] = os.listdir(private_tmp)
    assert left.startswith("dbpipe-pg-") and os.listdir(private_tmp / left) == ["pgpass"]

    result = dbpipe("dbpipe-dump", *db.args(), env=env)

    assert result.returncode == 0, result.stderr.decode()
    assert removed(result.stderr.decode()) == [("temporary directory", str(private_tmp / left))]
    assert os.listdir(private_tmp) == []
    assert f"removed temporary directory {private_tmp / left}" in syslog.text()


def test_killed_restore_to_file_leaves_a_half_file_the_next_write_removes(server_pool, tmp_path, env):
    db = prepare("sqlite", server_pool, tmp_path / "db")
    out = tmp_path / "out" / "nc.sql"
    half = lambda: [n for n in os.listdir(out.parent) if n.startswith(".nc.sql.")]  # noqa: E731
    with LeftoverWatch():
        proc = start("dbpipe-restore", "--to-file", out, env=env)
        proc.stdin.write(db.stream[: len(db.stream) // 2])
        proc.stdin.flush()
        wait_for(lambda: out.parent.exists() and half(), "the unfinished output file")
        proc.send_signal(signal.SIGKILL)
        finish(proc)
    [left] = half()

    result = dbpipe("dbpipe-restore", "--to-file", out, stdin=db.stream, env=env)

    assert result.returncode == 0, result.stderr.decode()
    assert removed(result.stderr.decode()) == [("unfinished file", str(out.parent / left))]
    assert half() == [] and out.read_bytes() == db.stream


@pytest.mark.parametrize("kind_spec", ["mysql:local", "sqlite"])
def test_kept_copies_are_listed_with_their_size_and_bounded(kind_spec, server_pool, tmp_path, env, syslog):
    db = prepare(kind_spec, server_pool, tmp_path / "db")
    listed = re.compile(r"kept copy of replaced data: (.+) \((\d+(?:\.\d)? [KMG]?i?B)\)$", re.MULTILINE)
    for number in (1, 2, 3):
        result = dbpipe("dbpipe-restore", *db.args(), stdin=db.stream, env=env)
        assert result.returncode == 0, result.stderr.decode()
        assert len(listed.findall(result.stderr.decode())) == number
    copies = [name for name, _ in listed.findall(result.stderr.decode())]

    result = dbpipe("dbpipe-restore", *db.args(), "--keep-old-copies", "1", stdin=db.stream, env=env)

    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    gone = re.findall(r"removed copy of replaced data (.+) \(.*\): --keep-old-copies 1$", stderr,
                      re.MULTILINE)
    assert gone == copies                        # the three oldest, oldest first
    [(newest, size)] = listed.findall(stderr)
    assert newest not in copies and size != "0 B"
    if db.kind == "mysql":
        names = db.db.server.sql("SHOW DATABASES").split()
        assert [n for n in names if "__dbpipe_old_" in n and n.startswith(db.db.name[:20])] == \
            [newest.split(" ", 1)[1]]
    else:
        assert sorted(n for n in os.listdir(os.path.dirname(db.db.path)) if ".dbpipe-old-" in n) == \
            [os.path.basename(newest)]
    assert "kept copy of replaced data" in syslog.text()


def test_keep_old_copies_must_be_a_count(tmp_path, env, syslog, server_pool):
    db = prepare("sqlite", server_pool, tmp_path / "db")
    result = dbpipe("dbpipe-restore", *db.args(), "--keep-old-copies", "-1", stdin=db.stream, env=env)
    assert_failed(result.returncode, result.stderr.decode(), syslog, "dbpipe-restore", 64,
                  r"--keep-old-copies: not a number >= 0")
