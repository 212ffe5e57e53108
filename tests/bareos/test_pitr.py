"""Point-in-time recovery of PostgreSQL and MariaDB through real Bareos: the shipped
backup-pg-base job streams a base backup, the shipped backup-pitr-spool job
carries the WAL spool away every run (and its RunScript empties the spool
of exactly what the catalog holds), and dbpipe-pitr-restore --bareos
fetches both back through bconsole and recovers to one second before a
DROP TABLE: every row committed up to then, none after.  MariaDB: the
physical chain (Full, Incremental) and binary logs collected into the same
spool, restored the same way."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from testkit import servers
from ..helpers import BARE_PATH, bareos_env, dbpipe
from testkit.pitr import archive_command, configure, owned_dir, switch_wal, wait_archived
from ..pitr.accidents import PG_SERVICE, Workload, binlogging_service, mariadb_rows, pg_rows, service_dir
from testkit.mariadb_service import SERVICE_MANAGER
from .test_jobs import assert_ok


@pytest.fixture
def archiving(bed):
    os.chmod(bed.state, 0o711)              # the postgres account reaches the spool below it
    pitr = bed.state / "pitr"
    pitr.mkdir(mode=0o711, exist_ok=True)
    spool = owned_dir(pitr / "spool")
    server = servers.local_postgres()
    profile = bed.profiles / "pitr-pg.conf"
    try:
        configure(server, {"archive_mode": "on", "archive_command": archive_command(spool),
                           "track_commit_timestamp": "on"})
        profile.write_text(f"[database]\ntype = pgsql\nsocket = {server.workdir}\nport = {server.port}\n"
                           "user = postgres\n")
        profile.chmod(0o600)
        yield server, spool
    finally:
        servers.destroy(server)
        profile.unlink(missing_ok=True)
        shutil.rmtree(pitr, ignore_errors=True)
        os.chmod(bed.state, 0o700)


def spool_job(bed, spool: Path):
    job = bed.bareos.backup("backup-pitr-spool", level="Incremental")
    assert_ok(job)
    held = set(bed.bareos.files(job.job_id))
    left = {str(p) for p in spool.iterdir()}
    assert not held & left, f"the spool still has files a successful job holds: {job.log}"
    assert "AfterJob: spool " in job.log and "removed " in job.log, job.log
    return job, held


def run_drill(bed, admin_job: str, restore_job: str):
    """A shipped PITR drill Admin job and the restore job it starts: (the jobs
    it restores, the restore job's result)."""
    admin = bed.bareos.backup(admin_job)
    assert_ok(admin)
    started = re.search(rf"{restore_job} started as JobId (\d+) for jobs ([\d,]+)", admin.log)
    assert started, admin.log
    return [int(i) for i in started.group(2).split(",")], bed.bareos.wait(int(started.group(1)), timeout=600)


def drill_verdict(restored) -> datetime.datetime:
    """The drill's newest recoverable time, from its job log (checked to be recent)."""
    assert_ok(restored)
    said = "".join(re.findall(r"JobId \d+: (?:Client)?AfterJob: (.*)", restored.log))   # Bareos wraps lines
    newest = re.search(r"drill: newest recoverable time (\S+ \S+) \((\d+) s ago\)", said)
    assert newest and int(newest.group(2)) < 300, restored.log
    assert "recovery to it succeeded in a throwaway directory, now removed" in said
    return datetime.datetime.strptime(newest.group(1), "%Y-%m-%d %H:%M:%S%z")


def drill(bed, server) -> None:
    """The shipped drill-pitr-pg Admin job: its restore job recovers to latest
    in a throwaway place and names the newest recoverable time."""
    link = bed.base / "pg-main"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(server.workdir) / "data")
    drill_verdict(run_drill(bed, "drill-pitr-pg", "restore-pitr-drill")[1])
    assert not [p for p in (Path(server.workdir)).iterdir() if "dbpipe-pitr" in p.name]
    assert not list((bed.state / "pitr" / "drill").rglob("0000*"))      # the fetched copy is gone
    assert server.sql("SELECT 1") == "1"


def mariadb_drill(bed, service):
    """The shipped drill-pitr-mariadb Admin job, its live data directory
    pointed at the service's: (the jobs it restores, its restore job)."""
    link = bed.base / "mariadb-main"
    link.unlink(missing_ok=True)
    link.symlink_to(service.datadir)
    jobs, restored = run_drill(bed, "drill-pitr-mariadb", "restore-pitr-drill-mariadb")
    assert not [p for p in bed.base.iterdir() if "dbpipe-pitr" in p.name], "the throwaway server is gone"
    fetched = bed.state / "pitr" / "drill-mariadb"
    assert not [p for p in fetched.rglob("*") if p.is_file()], "the fetched copy is gone"
    assert service.sql("SELECT 1") == "1"
    return jobs, restored


def test_restore_to_one_second_before_the_accident_through_bareos(bed, archiving, tmp_path):
    server, spool = archiving
    server.create_database("app")
    server.sql("CREATE TABLE rows (id serial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT "
               "clock_timestamp(), note text)", database="app")
    carried = set()
    with Workload(pg_rows(server)):
        time.sleep(1)
        assert_ok(bed.bareos.backup("backup-pg-base", level="Full"))
        for _ in range(3):
            time.sleep(1.5)
            wait_archived(server, switch_wal(server))
            carried |= spool_job(bed, spool)[1]
        time.sleep(1.5)
    assert any(path.endswith(".sha256") for path in carried) and len(carried) >= 6
    accident = datetime.datetime.fromisoformat(
        server.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")
    ).replace(tzinfo=datetime.timezone.utc)
    target = accident - datetime.timedelta(seconds=1)
    expected = server.sql("SELECT id FROM rows WHERE pg_xact_commit_timestamp(xmin) <= "
                          f"'{target.isoformat()}'::timestamptz ORDER BY id", database="app").split()
    assert 0 < len(expected) < int(server.sql("SELECT count(*) FROM rows", database="app"))
    server.sql("DROP TABLE rows", database="app")                     # the accident at T
    wait_archived(server, switch_wal(server))
    spool_job(bed, spool)
    assert not [p for p in spool.iterdir() if len(p.name) == 24], "every segment is in Bareos"
    drill(bed, server)

    env = bareos_env(DBPIPE_STATE_DIR=str(bed.state), PATH=f"{bed.bareos.prefix}/sbin:{BARE_PATH}",
                     TMPDIR=str(bed.tmpdir))
    common = ("--to", target.isoformat(), "--datadir", Path(server.workdir) / "data", "--bareos",
              "--bconsole-config", bed.bareos.conf("") / "bconsole.conf")
    beyond = dbpipe("dbpipe-pitr-restore", "--to", "2099-01-01 00:00:00", *common[2:], "--check",
                    "--fetch-into", tmp_path / "beyond", env=env, timeout=600)
    assert beyond.returncode == 65 and b"is beyond what the archive covers; available: " in beyond.stderr

    result = dbpipe("dbpipe-pitr-restore", *common, "--fetch-into", tmp_path / "fetched",
                    "--service", service_dir(server), "--service-manager", PG_SERVICE,
                    env=env, timeout=900)
    assert result.returncode == 0, result.stderr.decode()
    assert b"recovery stopping before commit" in result.stdout
    assert server.sql("SELECT id FROM rows ORDER BY id", database="app").split() == expected


@pytest.fixture
def binlogging(bed):
    service = binlogging_service()
    profile = bed.profiles / "mariabackup.conf"
    profile.write_text(f"[database]\ntype = mysql\nsocket = {service.socket}\nuser = root\n")
    profile.chmod(0o600)
    spool = bed.state / "pitr" / "spool"
    spool.mkdir(parents=True, mode=0o700, exist_ok=True)
    yield service, spool
    service.destroy()
    shutil.rmtree(bed.state / "pitr", ignore_errors=True)


def test_mariadb_restore_to_one_second_before_the_accident_through_bareos(bed, binlogging, tmp_path):
    service, spool = binlogging
    collect = ("dbpipe-binlog-collect", "--socket", service.socket, "--user", "root", "--spool", spool)
    service.sql("CREATE DATABASE app; CREATE TABLE app.rows (id INT AUTO_INCREMENT PRIMARY KEY, "
                "ts DATETIME(6) NOT NULL DEFAULT NOW(6), note VARCHAR(20)) ENGINE=InnoDB")
    with Workload(mariadb_rows(service)):
        time.sleep(1)
        chain = [bed.bareos.backup("backup-mariadb-physical", level="Full")]
        for step in range(3):
            time.sleep(1.2)
            if step == 1:
                chain.append(bed.bareos.backup("backup-mariadb-physical", level="Incremental"))
            assert dbpipe(*collect).returncode == 0              # as cron or a Before script runs it
            spool_job(bed, spool)
        while datetime.datetime.now().microsecond < 500_000:
            time.sleep(0.01)
    accident = datetime.datetime.fromisoformat(service.sql("SELECT NOW(6)"))
    second = accident.replace(microsecond=0)
    expected = service.sql(f"SELECT id FROM app.rows WHERE ts < '{second}' ORDER BY id").split()
    assert 0 < len(expected) < int(service.sql("SELECT count(*) FROM app.rows"))
    service.sql("DROP TABLE app.rows")                                     # the accident
    assert dbpipe(*collect).returncode == 0
    spool_job(bed, spool)
    assert not [p for p in spool.iterdir() if p.name.startswith("mysql-bin.0")], "every log is in Bareos"
    for job in chain:
        assert_ok(job)
    jobs, restored = mariadb_drill(bed, service)
    assert jobs[:2] == [job.job_id for job in chain], jobs       # the whole chain, then spool jobs
    newest = drill_verdict(restored)                              # the chain + every log, to latest
    assert newest >= second.astimezone(), (newest, second)        # the accident's second is recoverable

    env = bareos_env(DBPIPE_STATE_DIR=str(bed.state), PATH=f"{bed.bareos.prefix}/sbin:{BARE_PATH}",
                     TMPDIR=str(bed.tmpdir))
    target = (second - datetime.timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
    result = dbpipe("dbpipe-pitr-restore", "--engine", "mysql", "--to", target, "--datadir", service.datadir,
                    "--bareos", "--bconsole-config", bed.bareos.conf("") / "bconsole.conf",
                    "--fetch-into", tmp_path / "fetched", "--service", service.root,
                    "--service-manager", SERVICE_MANAGER, env=env, timeout=900)
    assert result.returncode == 0, result.stderr.decode()
    assert service.sql("SELECT id FROM app.rows ORDER BY id").split() == expected


def test_bareos_down_for_several_schedules_loses_nothing(bed, archiving):
    """No spool job runs while WAL keeps coming: the spool stops at its limit,
    the server keeps serving and keeps its WAL; the first job after says so in
    its log, and once the spool jobs run again every segment reaches Bareos."""
    server, spool = archiving
    configure(server, {"archive_command": archive_command(spool, "--max-spool-mb 40")})
    assert_ok(bed.bareos.backup("backup-pg-base", level="Full"))
    server.sql("CREATE TABLE t (x int)")
    for _ in range(5):                                       # Bareos "down": no spool job
        server.sql("INSERT INTO t SELECT generate_series(1, 1000)")
        last = switch_wal(server)
    deadline = time.monotonic() + 60
    while int(server.sql("SELECT failed_count FROM pg_stat_archiver")) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert int(server.sql("SELECT failed_count FROM pg_stat_archiver")) > 0
    assert sum(p.stat().st_size for p in spool.iterdir()) <= 40 << 20          # bounded
    assert server.sql("SELECT count(*) FROM t") == "5000"                     # still serving

    job, _ = spool_job(bed, spool)                           # Bareos back
    said = "".join(re.findall(r"JobId \d+: AfterJob: (.*)", job.log))
    assert "WARNING: the archive command refused" in said and "is full" in said, job.log
    for _ in range(6):
        switch_wal(server)                                   # wakes the archiver at once
        spool_job(bed, spool)
        if server.sql("SELECT last_archived_wal FROM pg_stat_archiver") >= last:
            break
    wait_archived(server, last)
    spool_job(bed, spool)
    env = bareos_env(DBPIPE_STATE_DIR=str(bed.state), PATH=f"{bed.bareos.prefix}/sbin:{BARE_PATH}",
                     TMPDIR=str(bed.tmpdir))
    checked = dbpipe("dbpipe-pitr-restore", "--to", "latest", "--check", "--bareos", "--datadir",
                     Path(server.workdir) / "data", "--bconsole-config", bed.bareos.conf("") / "bconsole.conf",
                     env=env, timeout=600)
    assert checked.returncode == 0, checked.stderr.decode()
    newest_segment = re.search(r"WAL segment\(s\) \S+ \.\. (\S+),", checked.stdout.decode()).group(1)
    assert newest_segment >= last, checked.stdout                   # no gap from the base to the end


def test_mariadb_drill_fails_on_a_damaged_binary_log_in_the_archive(bed, binlogging):
    """A binary log damaged after its checksum was recorded reaches Bareos:
    the drill's restore job does not end T, its log names the log and the
    damage, and nothing it fetched or built is left; the live server runs on."""
    service, spool = binlogging
    collect = ("dbpipe-binlog-collect", "--socket", service.socket, "--user", "root", "--spool", spool)
    service.sql("CREATE DATABASE app; CREATE TABLE app.rows (id INT AUTO_INCREMENT PRIMARY KEY, "
                "note VARCHAR(20)) ENGINE=InnoDB")
    assert_ok(bed.bareos.backup("backup-mariadb-physical", level="Full"))
    service.sql("INSERT INTO app.rows (note) VALUES ('a'), ('b')")
    assert dbpipe(*collect).returncode == 0
    logs = sorted(p for p in spool.iterdir() if p.name.startswith("mysql-bin.0") and p.suffix != ".sha256")
    damaged = logs[-1]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF                                  # same size, one byte flipped
    damaged.write_bytes(bytes(data))
    spool_job(bed, spool)

    _, restored = mariadb_drill(bed, service)
    assert restored.status == "E", restored                      # Bareos: the After script failed
    said = "".join(re.findall(r"JobId \d+: (?:Client)?AfterJob: (.*)", restored.log))
    assert f"{damaged.name} in " in said and "is damaged (SHA-256 differs from its record)" in said, restored.log
    assert "newest recoverable time" not in said
    assert service.sql("SELECT count(*) FROM app.rows") == "2"
