"""The copies that let a MariaDB restore be undone are never lost: replace
mode's safety dump survives a killed restore as recorded data (and is put
back on request), side databases of different databases never mix, a
restore into a new database keeps nothing, and two restores started in the
same instant do not collide.  Every fault is caused for real."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import sqlite3
import stat
import subprocess
import threading
import time

import pytest

from testkit.dbs import SqliteDatabase
from ..conftest import make_mysql
from ..helpers import dbpipe
from .kit import (LeftoverWatch, add_big_table, assert_failed, assert_result, dump_bytes, finish,
                  new_database, prepare, start, wait_for, wait_for_child)

BIG = 40_000     # rows of ~1 kB: a load that takes a while


def safety_files(state_root) -> tuple[list[str], list[str]]:
    directory = state_root / "replace"
    names = sorted(os.listdir(directory)) if directory.exists() else []
    return ([n for n in names if n.endswith(".json")], [n for n in names if n.endswith(".sql")])


def loading(db) -> bool:
    """The restore's client is inserting into the (already dropped and recreated) big table."""
    return db.server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                         f"WHERE DB = '{db.name}' AND INFO LIKE 'INSERT INTO `oc_big`%'") not in ("", "0")


def kill_replace_restore(db, stream: bytes, env) -> None:
    """A --mode replace restore SIGKILLed in the middle of its load, its
    client with it (as a crash or an OOM kill takes both)."""
    with LeftoverWatch() as watch:
        proc = start("dbpipe-restore", *db.args(), "--mode", "replace", env=env)
        proc.stdin.write(stream)
        proc.stdin.close()
        wait_for(lambda: loading(db), "the replace-mode load", timeout=120, interval=0.02)
        client = wait_for_child(proc.pid, ("mariadb", "mysql"))
        proc.kill()
        os.kill(client.pid, signal.SIGKILL)
        finish(proc)
        time.sleep(0.3)
        watch.leftovers()


@pytest.fixture
def big_db(server_pool, tmp_path):
    """A database, a stream of it, then changed: a row and a table the stream lacks."""
    db = new_database("mysql:local", server_pool, tmp_path)
    add_big_table(db, BIG)
    stream = dump_bytes(db)
    at_dump = db.fingerprint()
    db.change()
    db.sql("INSERT INTO oc_blobs VALUES (42, NULL, 'written just before the restore')")
    yield db, stream, at_dump, db.fingerprint()
    db.server.drop_database(db.name)


def test_a_killed_replace_restore_keeps_the_previous_content_and_puts_it_back(
        big_db, env, syslog, private_tmp, state_root, tmp_path, server_pool):
    db, stream, _, before = big_db
    kill_replace_restore(db, stream, env)

    assert db.fingerprint() != before and db.count("oc_big") < BIG          # half loaded
    [record], [dump] = safety_files(state_root)
    dump_path = state_root / "replace" / dump
    assert stat.S_IMODE(dump_path.stat().st_mode) == 0o600
    assert json.loads((state_root / "replace" / record).read_text())["previous"] == str(dump_path)
    assert os.listdir(private_tmp)            # the killed run's spool directory, a leftover

    # an unrelated run sweeps the temp dir - and never the safety dump
    other = prepare("sqlite", server_pool, tmp_path / "other")
    result = dbpipe("dbpipe-verify", "--test-restore", "--type", "sqlite", stdin=other.stream, env=env)
    assert result.returncode == 0 and "removed temporary directory" in result.stderr.decode()
    assert os.listdir(private_tmp) == [] and safety_files(state_root) == ([record], [dump])

    # any dump of the database refuses, saying where the previous content is
    result = dbpipe("dbpipe-dump", *db.args(), env=env)
    message = assert_result(result, syslog, "dbpipe-dump", 75, r"was left half-restored by a --mode replace")
    assert str(dump_path) in message and "dbpipe-restore --put-back" in message
    assert result.stdout == b""

    result = dbpipe("dbpipe-restore", *db.args(), "--put-back", env=env)

    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert f"put back the previous content of mysql database '{db.name}'" in stderr
    assert f"kept copy of replaced data: {dump_path}" in stderr
    assert db.fingerprint() == before                                      # byte for byte
    assert safety_files(state_root) == ([], [dump])
    assert dbpipe("dbpipe-dump", *db.args(), env=env).returncode == 0
    result = dbpipe("dbpipe-restore", *db.args(), "--put-back", env=env)
    assert_result(result, syslog, "dbpipe-restore", 66, r"no half-finished --mode replace restore")


def test_a_restore_into_a_half_restored_database_warns_and_finishes_it(big_db, env, state_root):
    db, stream, at_dump, _ = big_db
    kill_replace_restore(db, stream, env)
    [_], [dump] = safety_files(state_root)

    result = dbpipe("dbpipe-restore", *db.args(), stdin=stream, env=env)

    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert re.search(r"was left half-restored .* its previous content is in .*" + re.escape(dump), stderr)
    assert "the half-finished restore of" in stderr
    assert db.fingerprint() == at_dump
    assert safety_files(state_root) == ([], [dump])                       # kept as a copy


def test_safety_dump_is_0600_from_its_creation(big_db, env, state_root, private_tmp):
    """Nothing a replace-mode restore writes is readable by others, not even
    for a moment: every file seen while it runs is 0600."""
    db, stream, at_dump, _ = big_db
    seen, done = {}, threading.Event()

    def watch():
        while not done.is_set():
            for top in (state_root, private_tmp):
                for root, _, files in os.walk(top):
                    for name in files:
                        try:
                            mode = stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode)
                        except FileNotFoundError:
                            continue
                        seen.setdefault(os.path.join(root, name), set()).add(mode)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = dbpipe("dbpipe-restore", *db.args(), "--mode", "replace", stdin=stream, env=env)
    finally:
        done.set()
        watcher.join()
    assert result.returncode == 0, result.stderr.decode()
    assert db.fingerprint() == at_dump
    assert any(path.endswith(".sql") for path in seen)
    assert {path: modes for path, modes in seen.items() if modes != {0o600}} == {}
    records, dumps = safety_files(state_root)
    assert records == [] and len(dumps) == 1                     # kept: the copy of replaced data


def test_a_full_state_directory_stops_replace_mode_before_anything_changes(big_db, env, syslog, tmp_path):
    db, stream, _, before = big_db
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        result = dbpipe("dbpipe-restore", *db.args(), "--mode", "replace", stdin=stream,
                        env={**env, "DBPIPE_STATE_DIR": str(small)})
        assert_result(result, syslog, "dbpipe-restore", 73,
                      rf"cannot write the safety dump of {db.name} to {small}/replace: No space left on "
                      r"device; nothing was changed")
        assert db.fingerprint() == before
        assert os.listdir(small / "replace") == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_sigterm_during_a_replace_load_is_a_cancel(big_db, env, syslog, state_root, private_tmp):
    db, stream, _, before = big_db
    with LeftoverWatch():
        proc = start("dbpipe-restore", *db.args(), "--mode", "replace", env=env)
        proc.stdin.write(stream)
        proc.stdin.close()
        wait_for(lambda: loading(db), "the replace-mode load", timeout=120, interval=0.02)
        proc.send_signal(signal.SIGTERM)
        code, stderr = finish(proc)
    assert_failed(code, stderr, syslog, "dbpipe-restore", 143,
                  r"^cancelled by SIGTERM; the previous content was put back$")
    assert db.fingerprint() == before
    assert safety_files(state_root) == ([], []) and os.listdir(private_tmp) == []


# --- side databases ---------------------------------------------------------------------------

def side_databases(server, role: str) -> set[str]:
    return {n for n in server.sql("SHOW DATABASES").split() if f"__dbpipe_{role}_" in n}


def test_side_databases_of_names_with_a_long_common_start_never_mix(server_pool, tmp_path, env):
    server = server_pool.get("mysql", "local")
    common = f"nc{secrets.token_hex(3)}_instance_0123456789_0123456789"
    one = make_mysql(server, tmp_path, name=common + "_one", can_create=True)
    two = make_mysql(server, tmp_path, name=common + "_two", can_create=True)
    streams = {db.name: dump_bytes(db) for db in (one, two)}
    before = side_databases(server, "old")
    kept = {}
    for db in (one, two):
        for _ in range(2):
            result = dbpipe("dbpipe-restore", *db.args(), stdin=streams[db.name], env=env)
            assert result.returncode == 0, result.stderr.decode()
        kept[db.name] = side_databases(server, "old") - before - set().union(*kept.values())
        assert len(kept[db.name]) == 2 and all(len(n) <= 64 for n in kept[db.name])
    # what an older version left: cut to 30 characters, the same for both - whose is it?
    legacy = common[:30] + "__dbpipe_old_20261201T164532Z_9f3a"
    legacy_staging = common[:30] + "__dbpipe_new_20261201T164532Z_9f3b"
    for name in (legacy, legacy_staging):
        server.sql(f"CREATE DATABASE `{name}`; CREATE TABLE `{name}`.t (a INT)")
    try:
        result = dbpipe("dbpipe-restore", *two.args(), "--keep-old-copies", "1", stdin=streams[two.name], env=env)

        stderr = result.stderr.decode()
        assert result.returncode == 0, stderr
        listed = re.findall(r"copy of replaced data:? (?:database )?(\S+)", stderr)
        assert listed and not set(listed) & (kept[one.name] | {legacy})
        assert kept[one.name] <= side_databases(server, "old")            # the other's undo copies stay
        assert len(side_databases(server, "old") - before - kept[one.name] - {legacy}) == 1
        assert {legacy, legacy_staging} <= side_databases(server, "old") | side_databases(server, "new")
        assert re.search(rf"database {legacy_staging} may belong to {common}_two or {common}_one", stderr)
    finally:
        for name in (legacy, legacy_staging):
            server.drop_database(name)
        for db in (one, two):
            server.drop_database(db.name)
        for name in side_databases(server, "old") - before:
            if name.startswith(common[:17]):
                server.drop_database(name)


def test_an_atomic_restore_into_a_new_database_keeps_nothing(server_pool, tmp_path, env):
    server = server_pool.get("mysql", "local")
    db = make_mysql(server, tmp_path, can_create=True)
    stream = dump_bytes(db)
    args = list(db.args())
    new = f"{db.name}_fresh"
    args[args.index("--database") + 1] = new
    result = dbpipe("dbpipe-restore", *args, stdin=stream, env=env)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "kept copy" not in stderr and "previous tables kept" not in stderr
    assert [n for n in side_databases(server, "old") if n.startswith(new)] == []
    server.drop_database(new)
    server.drop_database(db.name)


def test_two_atomic_restores_started_together_both_succeed(server_pool, tmp_path, env):
    server = server_pool.get("mysql", "local")
    db = make_mysql(server, tmp_path, can_create=True)
    stream = dump_bytes(db)
    at_dump = db.fingerprint()
    def run(gate, results):
        gate.wait()
        results.append(dbpipe("dbpipe-restore", *db.args(), "--drop-old", stdin=stream, env=env))

    for _ in range(5):
        gate, results = threading.Barrier(2), []
        threads = [threading.Thread(target=run, args=(gate, results)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r.returncode for r in results] == [0, 0], [r.stderr.decode()[-600:] for r in results if r.returncode]
    assert db.fingerprint() == at_dump
    assert [n for n in side_databases(server, "new") | side_databases(server, "old")
            if n.startswith(db.name)] == []
    server.drop_database(db.name)


def test_a_sqlite_restore_killed_while_copying_the_old_database_leaves_no_half_undo_copy(tmp_path, env):
    """The copy of the database a restore replaces is made under a temporary
    name: a kill during the copy leaves no half file named like an undo copy
    (it would count as one and push a real one out), and the next restore
    sweeps it and keeps a whole copy, as private as the database."""
    data = tmp_path / "data"
    data.mkdir()
    db = SqliteDatabase(str(data / "owncloud.db"))
    db.populate()
    with sqlite3.connect(db.path) as con:       # ~120 MB: a copy that takes a while
        con.execute("CREATE TABLE oc_big (id INTEGER PRIMARY KEY, payload BLOB)")
        con.execute("INSERT INTO oc_big (payload) SELECT randomblob(4000) FROM "
                    "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000) "
                    "SELECT i FROM n)")
    os.chmod(db.path, 0o640)
    stream = tmp_path / "stream.sql"
    with open(stream, "wb") as out:
        assert dbpipe("dbpipe-dump", *db.args(), stdout=out, env=env).returncode == 0
    db.change()
    live = db.fingerprint()

    with LeftoverWatch() as watch, open(stream, "rb") as source:
        proc = start("dbpipe-restore", *db.args(), env=env, stdin=source)
        wait_for(lambda: any(".dbpipe-keep-" in n for n in os.listdir(data)), "the undo copy being written",
                 timeout=120, interval=0.005)
        copier = wait_for_child(proc.pid, ("sqlite3",))
        proc.kill()
        os.kill(copier.pid, signal.SIGKILL)
        finish(proc)
        watch.leftovers()
    assert [n for n in os.listdir(data) if ".dbpipe-old-" in n] == []
    assert db.fingerprint().split(b"\n")[0] == live.split(b"\n")[0]     # its bytes; temporaries lie beside

    with open(stream, "rb") as source:
        result = dbpipe("dbpipe-restore", *db.args(), stdin=source, env=env)
    assert result.returncode == 0, result.stderr.decode()
    [kept] = [n for n in os.listdir(data) if ".dbpipe-old-" in n]
    assert [n for n in os.listdir(data) if ".dbpipe-keep-" in n] == []
    assert stat.S_IMODE(os.stat(data / kept).st_mode) == 0o640
    with sqlite3.connect(f"file:{data / kept}?mode=ro", uri=True) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT COUNT(*) FROM oc_big").fetchone() == (30000,)
