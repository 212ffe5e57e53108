"""Point-in-time recovery of a real PostgreSQL from the archive spool and a
base backup: a workload writes timestamped rows, an accident drops the
table at T, and a restore to T-1 s brings back exactly the rows committed
up to T-1 s (commit timestamps tracked by the server), none after.
Refusals - a target beyond the archive, a missing or damaged segment - come
before anything changes; kill -9 during recovery leaves the live server
alone."""

from __future__ import annotations

import contextlib
import datetime
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from testkit import servers
from ..helpers import BIN, bareos_env, dbpipe, last_line, write_secret
from testkit.pitr import archive_command, base_backup, configure, owned_dir, switch_wal, wait_archived
from .accidents import PG_SERVICE, Workload, pg_rows, service_dir




class Scenario:
    def __init__(self, base: Path, server, spool: Path, bases: Path, target: str, expected: list[int],
                 accident: datetime.datetime, xid: str, upto_xid: list[int]):
        self.base, self.server, self.spool, self.bases = base, server, spool, bases
        self.target, self.expected, self.accident = target, expected, accident
        self.xid, self.upto_xid = xid, upto_xid

    @property
    def datadir(self) -> Path:
        return Path(self.server.workdir) / "data"

    def restore(self, *args, wal=None, timeout=600):
        return dbpipe("dbpipe-pitr-restore", "--to", self.target, "--datadir", self.datadir,
                      "--wal", wal or self.spool, "--bases", self.bases, *args, timeout=timeout)

    def beside_dirs(self) -> list[str]:
        return sorted(p.name for p in self.datadir.parent.iterdir() if p.name.startswith("data."))


@pytest.fixture(scope="module")
def scenario():
    base = Path(tempfile.mkdtemp(prefix="dbpipe-pitr-pg-"))
    os.chmod(base, 0o755)
    spool, bases = owned_dir(base / "spool"), base / "bases"
    server = servers.local_postgres()
    try:
        configure(server, {"archive_mode": "on", "archive_command": archive_command(spool),
                           "track_commit_timestamp": "on"})
        server.create_database("app")
        server.sql("CREATE TABLE rows (id serial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT "
                   "clock_timestamp(), note text)", database="app")
        with Workload(pg_rows(server)):
            time.sleep(1)
            base_backup(server, bases)
            for _ in range(3):
                time.sleep(1.5)
                switch_wal(server)
            time.sleep(1.5)
        xid = server.sql("SELECT xmin FROM rows ORDER BY id DESC LIMIT 1", database="app")   # the last good one
        upto_xid = [int(x) for x in server.sql("SELECT id FROM rows ORDER BY id", database="app").split()]
        for _ in range(3):
            server.sql("INSERT INTO rows (note) VALUES ('after the xid')", database="app")
        accident = datetime.datetime.fromisoformat(
            server.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")
        ).replace(tzinfo=datetime.timezone.utc)
        target = accident - datetime.timedelta(seconds=1)
        expected = [int(x) for x in server.sql(
            "SELECT id FROM rows WHERE pg_xact_commit_timestamp(xmin) <= "
            f"'{target.isoformat()}'::timestamptz ORDER BY id", database="app").split()]
        total = int(server.sql("SELECT count(*) FROM rows", database="app"))
        assert 0 < len(expected) < total, (len(expected), total)      # rows on both sides of T-1 s
        server.sql("DROP TABLE rows", database="app")                  # the accident
        server.sql("CREATE TABLE after_accident (x int); INSERT INTO after_accident VALUES (1)", database="app")
        wait_archived(server, switch_wal(server))
        yield Scenario(base, server, spool, bases, target.isoformat(), expected, accident, xid, upto_xid)
    finally:
        servers.destroy(server)
        shutil.rmtree(base, ignore_errors=True)


def test_a_target_beyond_the_archive_is_refused_with_the_range(scenario):
    before = scenario.beside_dirs()
    future = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).isoformat()
    result = dbpipe("dbpipe-pitr-restore", "--to", future, "--datadir", scenario.datadir, "--wal",
                    scenario.spool, "--bases", scenario.bases, "--beside")
    assert result.returncode == 65, result.stderr
    assert "is beyond what the archive covers; available: " in last_line(result)
    assert scenario.beside_dirs() == before
    early = "2020-01-01 00:00:00+00"
    result = dbpipe("dbpipe-pitr-restore", "--to", early, "--datadir", scenario.datadir, "--wal",
                    scenario.spool, "--bases", scenario.bases, "--beside")
    assert result.returncode == 65 and "is before the oldest base backup; available: " in last_line(result)


def test_a_missing_or_damaged_segment_is_refused_naming_the_gap(scenario):
    copy = scenario.base / "gappy"
    shutil.copytree(scenario.spool, copy)
    segments = sorted(p.name for p in copy.iterdir() if len(p.name) == 24)
    missing = segments[len(segments) // 2]
    (copy / missing).unlink()
    before = scenario.beside_dirs()
    result = scenario.restore("--beside", wal=copy)
    assert result.returncode == 65, result.stderr
    assert f"segment {missing} is missing (the archive has " in last_line(result)
    assert "available: " in last_line(result)
    assert scenario.beside_dirs() == before

    shutil.copy(scenario.spool / missing, copy / missing)
    with open(copy / missing, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"garbage")
    result = scenario.restore("--beside", wal=copy)
    assert result.returncode == 65
    assert f"{missing} in {copy} is damaged (SHA-256 differs from its record)" in last_line(result)


def test_a_damaged_base_backup_is_refused_before_anything_is_built(scenario):
    damaged = scenario.base / "damaged-bases"
    shutil.copytree(scenario.bases, damaged)
    base = next(damaged.glob("pgbase-*.dbpipe"))
    with open(base, "r+b") as handle:
        handle.seek(base.stat().st_size // 2)
        handle.write(b"\xff\x00garbage")
    before = scenario.beside_dirs()
    result = dbpipe("dbpipe-pitr-restore", "--to", scenario.target, "--datadir", scenario.datadir, "--wal",
                    scenario.spool, "--bases", damaged, "--beside")
    assert result.returncode == 65, result.stderr
    assert f"base backup {base} is damaged: " in last_line(result)
    assert scenario.beside_dirs() == before


def test_kill_9_during_recovery_leaves_the_live_server_alone(scenario):
    live = scenario.datadir.stat().st_ino
    proc = subprocess.Popen([str(BIN / "dbpipe-pitr-restore"), "--to", scenario.target, "--datadir",
                             str(scenario.datadir), "--wal", str(scenario.spool), "--bases", str(scenario.bases),
                             "--service", service_dir(scenario.server), "--service-manager", str(PG_SERVICE)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=bareos_env(), cwd="/")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(n.endswith(".wal") for n in scenario.beside_dirs()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert scenario.datadir.stat().st_ino == live
    assert scenario.server.sql("SELECT count(*) FROM after_accident", database="app") == "1"
    for leftover in scenario.beside_dirs():      # an admin removes these; the next run does not need them
        path = scenario.datadir.parent / leftover
        if (path / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", servers._pg_bin("pg_ctl"), "-D", str(path),
                            "-m", "immediate", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def beside_server(result):
    """The server a --beside restore left running (its output names it), stopped and removed after."""
    assert result.returncode == 0, result.stderr
    said = result.stdout.decode()
    assert "the server runs beside the live one" in said
    new = said.split("data directory ", 1)[1].split(",", 1)[0]
    port = said.split("port ", 1)[1].split(";", 1)[0]
    sock = said.split("socket ", 1)[1].split(",", 1)[0]
    try:
        yield servers.Server("pgsql", "beside", None, int(port), sock, "postgres", workdir=sock)
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", servers._pg_bin("pg_ctl"), "-D", new, "-m", "fast",
                        "-w", "stop"], check=False, capture_output=True)
        for path in (new, new + ".wal", new + ".run"):
            shutil.rmtree(path, ignore_errors=True)


def test_beside_leaves_the_live_server_alone_and_serves_the_lost_rows(scenario):
    with beside_server(scenario.restore("--beside")) as beside:
        ids = [int(x) for x in beside.sql("SELECT id FROM rows ORDER BY id", database="app").split()]
        assert ids == scenario.expected
        assert scenario.server.sql("SELECT to_regclass('rows') IS NULL", database="app") == "t"


def test_restore_to_the_transaction_before_the_accident(scenario):
    """--to-xid: every row up to and including that transaction, none of the
    three committed after it; the server's log says it stopped there."""
    result = dbpipe("dbpipe-pitr-restore", "--to-xid", scenario.xid, "--datadir", scenario.datadir, "--wal",
                    scenario.spool, "--bases", scenario.bases, "--beside", timeout=600)
    assert f"recovered to transaction {scenario.xid} (recovery stopping after commit of transaction " \
           f"{scenario.xid}, time " in result.stdout.decode(), result.stderr
    with beside_server(result) as beside:
        ids = [int(x) for x in beside.sql("SELECT id FROM rows ORDER BY id", database="app").split()]
        assert ids == scenario.upto_xid


def test_a_transaction_the_archive_does_not_hold_or_the_wrong_engine_is_refused(scenario):
    before = scenario.beside_dirs()
    result = dbpipe("dbpipe-pitr-restore", "--to-xid", "4000000000", "--datadir", scenario.datadir, "--wal",
                    scenario.spool, "--bases", scenario.bases, "--beside")
    assert result.returncode == 65, result.stderr
    line = last_line(result)
    assert line.startswith("dbpipe-pitr-restore: transaction 4000000000 did not commit in what the archive "
                           "covers; available: transactions "), line
    newest = int(line.split("available: transactions ", 1)[1].split(" .. ", 1)[1].split(",", 1)[0])
    assert newest >= int(scenario.xid) + 4                          # the 3 rows after it and the DROP
    assert scenario.beside_dirs() == before
    for option, value, says in (("--to-xid", "1234", "--to-xid is a PostgreSQL transaction id"),
                                ("--to-position", "mysql-bin.000001:4", "--to-position is a MariaDB binary")):
        engine = ["--engine", "mysql"] if option == "--to-xid" else []
        result = dbpipe("dbpipe-pitr-restore", *engine, option, value, "--datadir", scenario.datadir, "--beside")
        assert result.returncode == 64 and says in last_line(result), result.stderr
        assert len(result.stderr.decode().strip().splitlines()) == 1


def test_restore_to_one_second_before_the_accident_in_place(scenario):
    result = scenario.restore("--service", service_dir(scenario.server),
                              "--service-manager", PG_SERVICE)
    assert result.returncode == 0, result.stderr
    said = result.stdout.decode()
    assert "recovery stopping before commit" in said and "live data directory replaced" in said
    ids = [int(x) for x in scenario.server.sql("SELECT id FROM rows ORDER BY id", database="app").split()]
    assert ids == scenario.expected                                  # every row up to T-1 s, none after
    assert scenario.server.sql("SELECT to_regclass('after_accident') IS NULL", database="app") == "t"
    assert scenario.server.sql("SELECT pg_is_in_recovery()") == "f"
    kept = [n for n in scenario.beside_dirs() if ".dbpipe-old-" in n]
    assert len(kept) == 1
    assert not [n for n in scenario.beside_dirs() if n.endswith((".wal", ".run"))]
    auto = (scenario.datadir / "postgresql.auto.conf").read_text()
    assert "dbpipe-pitr-restore" not in auto and "recovery_target_time" not in auto
    scenario.server.sql("INSERT INTO rows (note) VALUES ('after restore')", database="app")


def test_debian_layout_configuration_outside_the_data_directory():
    """As Debian keeps it: postgresql.conf (with data_directory) and pg_hba.conf in
    their own directory.  The base has none; the recovery server must start on
    its own and never on the live files; after the swap the data directory holds
    no configuration of ours."""
    server = servers.local_postgres()
    try:
        work, account = Path(server.workdir), pwd.getpwnam("postgres")
        data, etc = work / "data", work / "etc"
        spool = owned_dir(work / "spool")
        server.stop()
        etc.mkdir()
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            shutil.move(data / name, etc / name)
        (etc / "pg_hba.conf").write_text("local replication postgres trust\n" + (etc / "pg_hba.conf").read_text())
        with (etc / "postgresql.conf").open("a") as conf:
            conf.write(f"data_directory = '{data}'\nhba_file = '{etc}/pg_hba.conf'\n"
                       f"ident_file = '{etc}/pg_ident.conf'\narchive_mode = on\n"
                       f"archive_command = '{archive_command(spool)}'\ntrack_commit_timestamp = on\n")
        for path in [etc, *etc.iterdir()]:
            os.chown(path, account.pw_uid, account.pw_gid)
        service = service_dir(server, etc)
        manager = PG_SERVICE
        assert subprocess.run([manager, "start", service]).returncode == 0
        before = {p.name: p.read_bytes() for p in etc.iterdir()}
        bases = work / "bases"
        server.sql("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")
        base_backup(server, bases)
        server.sql("INSERT INTO kept VALUES (2)")
        time.sleep(1.2)
        target = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=0.5)
        time.sleep(0.7)
        server.sql("DROP TABLE kept")
        wait_archived(server, switch_wal(server))
        result = dbpipe("dbpipe-pitr-restore", "--to", target.isoformat(), "--datadir", data, "--wal", spool,
                        "--bases", bases, "--service", service, "--service-manager", manager, timeout=600)
        assert result.returncode == 0, result.stderr
        assert server.sql("SELECT x FROM kept ORDER BY x").split() == ["1", "2"]
        assert not (data / "postgresql.conf").exists() and not (data / "pg_hba.conf").exists()
        assert {p.name: p.read_bytes() for p in etc.iterdir()} == before
    finally:
        subprocess.run([PG_SERVICE, "stop", server.workdir], capture_output=True)
        servers.destroy(server)


def test_base_backup_as_a_replication_role_with_a_password(tmp_path):
    """As the shipped profile has it: a REPLICATION role, a password, 127.0.0.1.
    A wrong password is refused in one line (77) and nothing is stored."""
    server = servers.local_postgres()
    try:
        hba = Path(server.workdir) / "data" / "pg_hba.conf"
        hba.write_text("host replication dbpipe_base 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        server.sql("CREATE ROLE dbpipe_base LOGIN REPLICATION PASSWORD 'pw:$x'; SELECT pg_reload_conf()")
        for password, code in (("wrong", 77), ("pw:$x", 0)):
            secret = write_secret(tmp_path, f"pw-{code}", password)
            with open(tmp_path / "base.dbpipe", "wb") as out:
                result = subprocess.run([str(BIN / "dbpipe-pg-basebackup"), "--type", "pgsql", "--host", "127.0.0.1",
                                         "--port", str(server.port), "--user", "dbpipe_base", "--password-file",
                                         secret], stdout=out, stderr=subprocess.PIPE, env=bareos_env(), cwd="/")
            assert result.returncode == code, result.stderr
            if code:
                assert "password authentication failed" in last_line(result)
                assert len(result.stderr.decode().strip().splitlines()) == 1
        stored = dbpipe("dbpipe-pg-basebackup", "--from-stdin", "--into", tmp_path / "bases",
                        stdin=tmp_path / "base.dbpipe")
        assert stored.returncode == 0, stored.stderr
        assert len(list((tmp_path / "bases").glob("pgbase-*.dbpipe"))) == 1
    finally:
        servers.destroy(server)
