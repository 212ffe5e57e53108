"""Point-in-time recovery of a real PostgreSQL from the archive spool and a
base backup: a workload writes timestamped rows, an accident drops the
table at T, and a restore to T-1 s brings back exactly the rows committed
up to T-1 s (commit timestamps tracked by the server), none after.
Refusals - a target beyond the archive, a missing or damaged segment - come
before anything changes; kill -9 during recovery leaves the live server
alone."""

from __future__ import annotations

import datetime
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from testkit import servers
from ..helpers import BIN, bareos_env, dbpipe, last_line, write_secret
from testkit.pitr import archive_command, base_backup, configure, owned_dir, switch_wal, wait_archived

HERE = Path(__file__).resolve().parent


class Workload:
    """Inserts a timestamped row every ~20 ms, one transaction each."""

    def __init__(self, server):
        self.server, self.stop_event = server, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_event.is_set():
            self.server.sql("INSERT INTO rows (note) VALUES ('w')", database="app")
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(30)




class Scenario:
    def __init__(self, base: Path, server, spool: Path, bases: Path, target: str, expected: list[int],
                 accident: datetime.datetime):
        self.base, self.server, self.spool, self.bases = base, server, spool, bases
        self.target, self.expected, self.accident = target, expected, accident

    @property
    def datadir(self) -> Path:
        return Path(self.server.workdir) / "data"

    def restore(self, *args, wal=None, timeout=600):
        return dbpipe("dbpipe-pitr-restore", "--to", self.target, "--datadir", self.datadir,
                      "--wal", wal or self.spool, "--bases", self.bases, *args, timeout=timeout)

    def beside_dirs(self) -> list[str]:
        return sorted(p.name for p in self.datadir.parent.iterdir() if p.name.startswith("data."))


def service_dir(server, config_dir: Path | None = None) -> str:
    options = (f"-k {server.workdir} -p {server.port} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off")
    conf = {"pg_ctl": servers._pg_bin("pg_ctl"), "datadir": str(Path(server.workdir) / "data"),
            "options": options, "log": str(Path(server.workdir) / "server.log")}
    if config_dir:
        conf["config_dir"] = str(config_dir)
    (Path(server.workdir) / "service.json").write_text(json.dumps(conf))
    return server.workdir


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
        with Workload(server):
            time.sleep(1)
            base_backup(server, bases)
            for _ in range(3):
                time.sleep(1.5)
                switch_wal(server)
            time.sleep(1.5)
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
        yield Scenario(base, server, spool, bases, target.isoformat(), expected, accident)
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
                             "--service", service_dir(scenario.server), "--service-manager", str(HERE / "pg-service")],
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


def test_beside_leaves_the_live_server_alone_and_serves_the_lost_rows(scenario):
    result = scenario.restore("--beside")
    assert result.returncode == 0, result.stderr
    said = result.stdout.decode()
    assert "the server runs beside the live one" in said
    new = said.split("data directory ", 1)[1].split(",", 1)[0]
    port = said.split("port ", 1)[1].split(";", 1)[0]
    sock = said.split("socket ", 1)[1].split(",", 1)[0]
    beside = servers.Server("pgsql", "beside", None, int(port), sock, "postgres", workdir=sock)
    try:
        ids = [int(x) for x in beside.sql("SELECT id FROM rows ORDER BY id", database="app").split()]
        assert ids == scenario.expected
        assert scenario.server.sql("SELECT to_regclass('rows') IS NULL", database="app") == "t"
    finally:
        subprocess.run(["runuser", "-u", "postgres", "--", servers._pg_bin("pg_ctl"), "-D", new, "-m", "fast",
                        "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(new + ".wal", ignore_errors=True)
        shutil.rmtree(new + ".run", ignore_errors=True)


def test_restore_to_one_second_before_the_accident_in_place(scenario):
    result = scenario.restore("--service", service_dir(scenario.server),
                              "--service-manager", HERE / "pg-service")
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
        manager = HERE / "pg-service"
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
        subprocess.run([HERE / "pg-service", "stop", server.workdir], capture_output=True)
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


def logging_manager(directory: Path, occ_log: Path, events: Path) -> Path:
    """pg-service, noting at each call how many occ calls had been made by
    then.  DIRECTORY/fail-start-once fails the next start (a recovered server
    that does not come up); DIRECTORY/hang-stop holds stop until
    DIRECTORY/release appears, then fails it without stopping anything."""
    manager = directory / "pg-service-logged"
    manager.write_text(f"""#!/usr/bin/env python3
import os, subprocess, sys, time
here = {str(directory)!r}
calls = {str(occ_log)!r}
count = sum(1 for _ in open(calls)) if os.path.exists(calls) else 0
with open({str(events)!r}, "a") as log:
    log.write(sys.argv[1] + " " + str(count) + "\\n")
if sys.argv[1] == "start" and os.path.exists(here + "/fail-start-once"):
    os.unlink(here + "/fail-start-once")
    sys.exit(1)
if sys.argv[1] == "stop" and os.path.exists(here + "/hang-stop"):
    deadline = time.monotonic() + 120
    while not os.path.exists(here + "/release") and time.monotonic() < deadline:
        time.sleep(0.1)
    sys.exit(1)
sys.exit(subprocess.run([{str(HERE / "pg-service")!r}, *sys.argv[1:]]).returncode)
""")
    manager.chmod(0o755)
    return manager


class NextcloudOnPg:
    """A Nextcloud (the occ double) whose database is the archiving server: a
    base backup, two rows, the target, then a row and a dropped table after it."""

    def __init__(self, archiving_pg, reachable: Path):
        from testkit import installs
        self.server, self.spool = archiving_pg
        self.db, values = installs.pgsql_database(self.server)
        self.install = installs.build(reachable / "nextcloud", values)
        assert self.install.occ("maintenance:data-fingerprint").returncode == 0
        self.fingerprint = self.install.config()["data-fingerprint"]
        assert self.fingerprint
        self.sql("CREATE TABLE oc_notes (id serial PRIMARY KEY, note text)")
        self.bases = reachable / "bases"
        base_backup(self.server, self.bases)
        self.sql("INSERT INTO oc_notes (note) VALUES ('one'), ('two')")
        time.sleep(1.2)
        self.target = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=0.5)
        time.sleep(0.7)
        self.sql("INSERT INTO oc_notes (note) VALUES ('after the target'); DROP TABLE oc_filecache CASCADE")
        wait_archived(self.server, switch_wal(self.server))
        self.state, self.events, self.here = reachable / "state", reachable / "service-events", reachable
        self.manager = logging_manager(reachable, self.install.root / "occ-calls.log", self.events)
        (self.install.root / "occ-calls.log").unlink(missing_ok=True)

    @property
    def data(self) -> Path:
        return Path(self.server.workdir) / "data"

    def sql(self, statement: str) -> str:
        return self.server.sql(statement, database=self.db.name)

    def start_restore(self) -> subprocess.Popen:
        return subprocess.Popen(
            [str(BIN / "dbpipe-pitr-restore"), "--to", self.target.isoformat(), "--datadir", str(self.data),
             "--wal", str(self.spool), "--bases", str(self.bases), "--service", service_dir(self.server),
             "--service-manager", str(self.manager), "--nextcloud", str(self.install.root),
             "--nextcloud-state-dir", str(self.state), "--settle", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=bareos_env(), cwd="/")

    def live_is_after_the_accident(self) -> bool:
        return self.sql("SELECT to_regclass('oc_filecache') IS NULL") == "t"


def test_nextcloud_is_closed_only_around_the_swap(archiving_pg, reachable):
    """--nextcloud: the recovery runs with Nextcloud open; maintenance mode is
    on from before the server stops until after it runs on the recovered
    directory, with a new data fingerprint, then off as before."""
    nc = NextcloudOnPg(archiving_pg, reachable)
    install, events = nc.install, nc.events
    install.fail({"match": "maintenance:mode --on", "action": "pause", "seconds": 300})
    live = nc.data.stat().st_ino
    proc = nc.start_restore()
    try:
        deadline = time.monotonic() + 300
        while "maintenance:mode --on" not in install.commands():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.1)
        # Nextcloud closes only now: the recovery has finished, nothing live has changed yet
        logs = [p.read_text() for p in nc.data.parent.glob("data.dbpipe-pitr-*.run/recovery.log")]
        assert len(logs) == 1 and "recovery stopping before" in logs[0]
        assert nc.data.stat().st_ino == live and not events.exists() and nc.live_is_after_the_accident()
    finally:
        (install.root / "occ-resume").write_text("")
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    assert "live data directory replaced" in out.decode()
    assert nc.sql("SELECT note FROM oc_notes ORDER BY id").split() == ["one", "two"]
    assert not nc.live_is_after_the_accident()
    renewed = install.config()["data-fingerprint"]
    assert renewed and renewed != nc.fingerprint
    assert f"data fingerprint: updated to {renewed}" in out.decode()
    assert not install.maintenance and not list(nc.state.glob("*.json"))
    commands = install.commands()
    calls_at = [line.split() for line in events.read_text().splitlines()]
    stopped = next(int(count) for action, count in calls_at if action == "stop")
    started = [int(count) for action, count in calls_at if action == "start"][-1]
    on, off = commands.index("maintenance:mode --on"), commands.index("maintenance:mode --off")
    assert on < stopped <= started <= off, (commands, calls_at)
    assert commands.index("maintenance:data-fingerprint") in range(started, off), commands


def test_nextcloud_reopens_when_the_swap_is_rolled_back(archiving_pg, reachable):
    """The recovered server does not start: the old directory goes back and
    so does maintenance mode; no new fingerprint, no record left."""
    nc = NextcloudOnPg(archiving_pg, reachable)
    (nc.here / "fail-start-once").write_text("")
    proc = nc.start_restore()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 69, err.decode()
    line = err.decode().strip().splitlines()[-1]
    assert "the recovered server did not start" in line and "old data directory is back in place" in line
    assert nc.live_is_after_the_accident()                     # the live server as it was, running
    assert not nc.install.maintenance and not list(nc.state.glob("*.json"))
    assert nc.install.config()["data-fingerprint"] == nc.fingerprint
    assert "maintenance:mode --on" in nc.install.commands()


def test_kill_9_during_the_swap_leaves_nextcloud_closed_naming_the_finish(archiving_pg, reachable):
    """Killed once the swap has begun: maintenance mode stays on, the record
    names nextcloud-after-restore, which then finishes."""
    nc = NextcloudOnPg(archiving_pg, reachable)
    (nc.here / "hang-stop").write_text("")
    proc = nc.start_restore()
    try:
        deadline = time.monotonic() + 300
        while not (nc.events.exists() and "stop" in nc.events.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        (nc.here / "release").write_text("")
    assert nc.install.maintenance
    records = [p.read_text() for p in nc.state.glob("*.json")]
    assert len(records) == 1 and "nextcloud-after-restore" in records[0], records
    assert nc.live_is_after_the_accident()                     # never stopped: the held stop did nothing
    finish = dbpipe("nextcloud-after-restore", nc.install.root, "--state-dir", nc.state, "--settle", "0")
    assert finish.returncode == 0, finish.stderr
    assert not nc.install.maintenance and not list(nc.state.glob("*.json"))
    assert nc.install.config()["data-fingerprint"] != nc.fingerprint
