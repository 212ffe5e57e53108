"""An incremental must continue the very server its chain began on.  Real
private MariaDB servers: one re-initialised between two backups
(mariadb-install-db, data reloaded, its LSN past the chain's), one restored
from another server's backup.  The next incremental becomes a full backup,
saying why, and the new chain restores exactly."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time

from .conftest import change, job_env, populate, profile_dir, run_reader, run_writer, snapshot
from .test_chain import restore

LSN = re.compile(r"Log sequence number\s+(\d+)")


def lsn(service) -> int:
    return int(LSN.search(service.sql("SHOW ENGINE INNODB STATUS")).group(1))


def pieces(state) -> list[dict]:
    return json.loads((state / "chain.json").read_text())["pieces"]


def grow(service, beyond: int) -> None:
    """Write until the server's LSN is past beyond: the case the LSN check alone lets through."""
    service.sql("CREATE TABLE IF NOT EXISTS nc.oc_growth (id INT AUTO_INCREMENT PRIMARY KEY, "
                "v TEXT) ENGINE=InnoDB")
    while lsn(service) <= beyond:
        service.sql("INSERT INTO nc.oc_growth (v) SELECT REPEAT(MD5(seq), 20) FROM seq_1_to_2000")


class Backups:
    """Bareos-style backups of one service: reader with a job level, writer into a directory."""

    def __init__(self, service, base, env):
        self.service, self.base, self.state = service, base, base / "state"
        base.mkdir(exist_ok=True)
        self.env = {**env, "DBPIPE_CONFIG_DIR": profile_dir(base / "etc", service)}

    def take(self, level: str, job: int):
        stream = self.base / f"job{job}.dbpipe"
        result = run_reader(job_env(self.env, level, job), stream, self.state)
        assert result.returncode == 0, result.stderr.decode()
        return result, stream

    def land(self, directory, *streams) -> None:
        for stream in streams:
            stored = run_writer(job_env(self.env, " ", 900), stream, "--into", str(directory))
            assert stored.returncode == 0, stored.stderr.decode()


def test_a_reinitialised_server_gets_a_full_backup_and_its_chain_restores(new_service, tmp_path, env, syslog):
    server = new_service("reinit").install().start()
    populate(server)
    backups = Backups(server, tmp_path, env)
    backups.take("F", 1)
    change(server, 1)
    backups.take("I", 2)
    old_end = pieces(backups.state)[-1]["to_lsn"]

    server.stop()                                   # the data directory is recreated ...
    shutil.rmtree(server.datadir)
    server.install().start()
    populate(server)                                # ... and the data reloaded
    change(server, 1)
    grow(server, old_end)

    result, full = backups.take("I", 3)

    said = result.stderr.decode()
    assert "this is another server instance than the chain's" in said, said
    assert "re-initialised, or restored from another server's backup" in said
    assert "taking a full backup instead of an incremental one" in said
    assert "taking a full backup instead" in syslog.text()
    assert [(p["level"], p["job_id"]) for p in pieces(backups.state)] == [("full", "3")]
    change(server, 2)
    _, incremental = backups.take("I", 4)
    assert [p["level"] for p in pieces(backups.state)] == ["full", "incremental"]
    expected = snapshot(server)

    landed = tmp_path / "landed"
    backups.land(landed, full, incremental)
    target = new_service("reinit-restored")
    prepared, copied = restore(landed, target)
    assert copied.returncode == 0, copied.stderr.decode()
    assert "Bareos job 4" in prepared.stdout.decode()
    assert snapshot(target) == expected


def test_a_server_restored_from_another_servers_backup_gets_a_full_backup(new_service, tmp_path, env):
    other = new_service("other").install().start()
    populate(other)
    for step in (1, 2):
        change(other, step)
    server = new_service("restored-over").install().start()
    populate(server)
    backups = Backups(server, tmp_path / "server", env)
    backups.take("F", 11)
    change(server, 1)
    backups.take("I", 12)
    own_end = pieces(backups.state)[-1]["to_lsn"]
    grow(other, own_end)

    others = Backups(other, tmp_path / "other", env)
    _, foreign = others.take("F", 21)
    from_other = tmp_path / "from-other"
    others.land(from_other, foreign)
    # restored by hand, as any tool would: the server's own chain state stays
    _, copied = restore(from_other, server)
    assert copied.returncode == 0, copied.stderr.decode()
    assert lsn(server) > own_end
    assert (backups.state / "chain.json").exists()

    result, full = backups.take("I", 13)

    said = result.stderr.decode()
    assert "this is another server instance than the chain's" in said, said
    assert "taking a full backup instead of an incremental one" in said
    assert [(p["level"], p["job_id"]) for p in pieces(backups.state)] == [("full", "13")]
    change(server, 3)
    _, incremental = backups.take("I", 14)
    expected = snapshot(server)
    landed = tmp_path / "landed"
    backups.land(landed, full, incremental)
    target = new_service("restored-again")
    _, copied = restore(landed, target)
    assert copied.returncode == 0, copied.stderr.decode()
    assert snapshot(target) == expected


def test_a_chain_state_without_the_identity_gets_a_full_backup_once(source, tmp_path, env):
    """A state written by an older dbpipe records no instance: its next
    incremental cannot prove anything, so it is a full one, and the one after
    that an incremental again."""
    backups = Backups(source, tmp_path, env)
    backups.take("F", 41)
    state = json.loads((backups.state / "chain.json").read_text())
    assert state["server"]["instance_id"].startswith("aria:") and state["server"]["redo_log_start"] > 0
    for key in ("instance_id", "redo_log_start"):
        del state["server"][key]
    (backups.state / "chain.json").write_text(json.dumps(state))

    result, _ = backups.take("I", 42)
    again, _ = backups.take("I", 43)

    assert "does not record which server instance it belongs to" in result.stderr.decode()
    assert "taking a full backup instead" not in again.stderr.decode()
    assert [(p["level"], p["job_id"]) for p in pieces(backups.state)] == [("full", "42"), ("incremental", "43")]


def test_a_restarted_server_continues_its_chain(new_service, tmp_path, env):
    """A restart (also a crash: SIGKILL, then InnoDB recovery) keeps both
    facts: the next incremental builds on the chain."""
    server = new_service("restarted").install().start()
    populate(server)
    backups = Backups(server, tmp_path, env)
    backups.take("F", 51)
    server.stop()
    server.start()
    change(server, 1)
    backups.take("I", 52)
    pid = int(open(os.path.join(server.root, "mysqld.pid")).read())
    os.kill(pid, signal.SIGKILL)
    while server.running():
        time.sleep(0.1)
    server.start()
    change(server, 2)
    result, _ = backups.take("I", 53)

    assert "taking a full backup instead" not in result.stderr.decode()
    assert [p["level"] for p in pieces(backups.state)] == ["full", "incremental", "incremental"]
