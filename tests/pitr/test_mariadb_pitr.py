"""Point-in-time recovery of a real MariaDB: the physical chain (dbpipe-
mariabackup) plus closed binary logs collected into the spool
(dbpipe-binlog-collect), restored to one second before a DROP TABLE with
dbpipe-pitr-restore --engine mysql: every row of the seconds up to the
target is there, none after, the table is back."""

from __future__ import annotations

import contextlib
import datetime
from dataclasses import dataclass
import os
import signal
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ..helpers import BIN, bareos_env, dbpipe, last_line
from testkit.mariadb_service import SERVICE_MANAGER, PrivateService
from .accidents import Workload, binlogging_service, collect, full_backup, mariadb_rows


@dataclass
class Scenario:
    service: PrivateService
    spool: Path
    pieces: Path
    target: str                   # a second before the accident's
    expected: list[str]           # the rows up to it
    position: str                 # FILE:POS before the three rows written after the workload
    upto_position: list[str]

    def parts(self) -> tuple:
        return self.service, self.spool, self.pieces, self.target, self.expected


@pytest.fixture(scope="module")
def scenario():
    work = Path(tempfile.mkdtemp(prefix="dbpipe-pitr-mb-"))
    service = binlogging_service()
    spool, pieces = work / "spool", work / "pieces"
    try:
        service.sql("CREATE DATABASE app; CREATE TABLE app.rows (id INT AUTO_INCREMENT PRIMARY KEY, "
                    "ts DATETIME(6) NOT NULL DEFAULT NOW(6), note VARCHAR(20)) ENGINE=InnoDB")
        with Workload(mariadb_rows(service)):
            time.sleep(1)
            full_backup(service, pieces, work / "state")
            for _ in range(3):
                time.sleep(1.2)
                collect(service, spool)
            while datetime.datetime.now().microsecond < 500_000:     # rows in the accident's second too
                time.sleep(0.01)
        position = ":".join(service.sql("SHOW MASTER STATUS").split()[:2])
        upto_position = service.sql("SELECT id FROM app.rows ORDER BY id").split()
        for _ in range(3):
            service.sql("INSERT INTO app.rows (note) VALUES ('after')")
        accident = datetime.datetime.fromisoformat(service.sql("SELECT NOW(6)"))
        second = accident.replace(microsecond=0)
        target = second - datetime.timedelta(seconds=1)
        expected = service.sql(f"SELECT id FROM app.rows WHERE ts < '{second}' ORDER BY id").split()
        total = int(service.sql("SELECT count(*) FROM app.rows"))
        assert 0 < len(expected) < total
        service.sql("DROP TABLE app.rows")                                  # the accident
        service.sql("CREATE TABLE app.after_accident (x INT); INSERT INTO app.after_accident VALUES (1)")
        collect(service, spool)
        yield Scenario(service, spool, pieces, target.strftime("%Y-%m-%d %H:%M:%S"), expected, position,
                       upto_position)
    finally:
        service.destroy()
        shutil.rmtree(work, ignore_errors=True)


def restore(service, spool, pieces, target, *extra):
    """target None: the target is among extra (--to-position, --to-xid)."""
    to = ["--to", target] if target else []
    return dbpipe("dbpipe-pitr-restore", "--engine", "mysql", *to, "--datadir", service.datadir,
                  "--wal", spool, "--bases", pieces, *extra, timeout=900)


def test_collected_logs_are_checksummed_and_never_collected_twice(scenario):
    service, spool, _, _, _ = scenario.parts()
    logs = sorted(p.name for p in spool.iterdir() if p.name.startswith("mysql-bin.0"))
    assert logs and all(name.endswith(".sha256") or (spool / f"{name}.sha256").exists() for name in logs)
    again = collect(service, spool)
    assert b"collected 1 binary log(s)" in again.stdout       # only the one closed just now


def test_log_bin_off_is_said_clearly(mysql_server, tmp_path):
    result = dbpipe("dbpipe-binlog-collect", *mysql_server.args(), "--spool", tmp_path / "spool")
    assert result.returncode == 78
    assert "binary logging is off on the server (log_bin)" in last_line(result)


def test_a_target_beyond_the_archive_is_refused_with_the_range(scenario):
    service, spool, pieces, _, _ = scenario.parts()
    result = restore(service, spool, pieces, "2099-01-01 00:00:00", "--service", service.root,
                     "--service-manager", SERVICE_MANAGER)
    assert result.returncode == 65
    assert "is beyond what the archive covers; available: " in last_line(result)
    assert not [p for p in os.listdir(os.path.dirname(service.datadir)) if "dbpipe-" in p]


def test_a_missing_binlog_is_refused(scenario, tmp_path):
    service, spool, pieces, target, _ = scenario.parts()
    gappy = tmp_path / "gappy"
    shutil.copytree(spool, gappy)
    logs = sorted(p.name for p in gappy.iterdir() if p.name.startswith("mysql-bin.0") and "sha" not in p.name)
    (gappy / logs[1]).unlink()
    result = restore(service, gappy, pieces, target, "--service", service.root, "--service-manager", SERVICE_MANAGER)
    assert result.returncode == 65
    assert f"binary log {logs[1]} is missing from {gappy}" in last_line(result)
    assert service.sql("SELECT count(*) FROM app.after_accident") == "1"


def test_kill_9_during_recovery_leaves_the_live_server_alone(scenario):
    service, spool, pieces, target, _ = scenario.parts()
    parent = os.path.dirname(service.datadir)
    live = os.stat(service.datadir).st_ino
    proc = subprocess.Popen([str(BIN / "dbpipe-pitr-restore"), "--engine", "mysql", "--to", target, "--datadir",
                             service.datadir, "--wal", str(spool), "--bases", str(pieces), "--service", service.root,
                             "--service-manager", SERVICE_MANAGER], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=bareos_env(), cwd="/")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.endswith(".run") for p in os.listdir(parent)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert os.stat(service.datadir).st_ino == live
    assert service.sql("SELECT count(*) FROM app.after_accident") == "1"
    for leftover in [p for p in os.listdir(parent) if ".dbpipe-pitr-" in p]:   # for the admin to remove
        path = os.path.join(parent, leftover)
        pid = Path(path, "mysqld.pid")
        if pid.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid.read_text().strip()), signal.SIGKILL)
        shutil.rmtree(path, ignore_errors=True)


def test_beside_serves_the_lost_rows_and_leaves_the_live_server_alone(scenario):
    service, spool, pieces, target, expected = scenario.parts()
    assert beside_rows(restore(service, spool, pieces, target, "--beside")) == expected
    assert service.sql("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'rows'") == "0"


def beside_rows(result) -> list[str]:
    """The rows of the server a --beside restore left running, which is then stopped and removed."""
    assert result.returncode == 0, result.stderr
    said = result.stdout.decode()
    new = said.split("data directory ", 1)[1].split(",", 1)[0]
    sock = said.split("socket ", 1)[1].split(";", 1)[0]
    try:
        beside = subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "--batch",
                                 "--skip-column-names", "-e", "SELECT id FROM app.rows ORDER BY id"],
                                capture_output=True, text=True, env=bareos_env())
        assert beside.returncode == 0, beside.stderr
        return beside.stdout.split()
    finally:
        subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={sock}", "-uroot", "shutdown"],
                       capture_output=True, env=bareos_env())
        for path in (new, new + ".run"):
            shutil.rmtree(path, ignore_errors=True)


def test_restore_to_the_binlog_position_before_the_accident(scenario):
    """--to-position: every row written before it, none of the three after;
    the replayed stream ended exactly there."""
    result = restore(scenario.service, scenario.spool, scenario.pieces, None, "--to-position",
                     scenario.position, "--beside")
    assert f"recovered to binary log position {scenario.position} (last event replayed ends at " \
           f"{scenario.position}, " in result.stdout.decode(), result.stderr
    assert beside_rows(result) == scenario.upto_position


def test_a_position_the_archive_cannot_reach_or_the_wrong_engine_is_refused(scenario):
    service, spool, pieces, _, _ = scenario.parts()
    name, position = scenario.position.split(":")
    stem, number = name.rsplit(".", 1)
    for wanted, says in ((f"{stem}.{int(number) + 99:06d}:4", "is beyond what the archive covers"),
                         (f"{name}:{int(position) + 1}", f"is not where an event of {name} ends")):
        result = restore(service, spool, pieces, None, "--to-position", wanted, "--service", service.root,
                         "--service-manager", SERVICE_MANAGER)
        assert result.returncode == 65, result.stderr
        line = last_line(result)
        assert f"binary log position {wanted} {says}" in line, line
        assert "available: " in line or "end_log_pos" in line
        assert not [p for p in os.listdir(os.path.dirname(service.datadir)) if "dbpipe-" in p]
    result = restore(service, spool, pieces, None, "--to-xid", "1234", "--beside")
    assert result.returncode == 64 and "--to-xid is a PostgreSQL transaction id" in last_line(result)


def test_restore_to_one_second_before_the_accident(scenario):
    service, spool, pieces, target, expected = scenario.parts()
    result = restore(service, spool, pieces, target, "--service", service.root, "--service-manager", SERVICE_MANAGER)
    assert result.returncode == 0, result.stderr
    assert b"live data directory replaced" in result.stdout
    assert service.sql("SELECT id FROM app.rows ORDER BY id").split() == expected
    assert service.sql("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'after_accident'") == "0"
    kept = [p for p in os.listdir(os.path.dirname(service.datadir)) if ".dbpipe-old-" in p]
    assert len(kept) == 1
