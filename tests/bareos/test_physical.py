"""The physical MariaDB chain through real Bareos levels: Full, Incremental,
Differential, Incremental of the shipped backup-mariadb-physical job, then
docs/physical.md's "Restore" runbook run as written (runbook.Runner: only
host names, paths and the JobIds substituted): the Full, the Differential and
the Incremental after it restored by restore-dbpipe-files with where=/,
prepared where the pieces landed, copied back over a running server, which
then equals the source at the last backup table by table.

The test bed's MariaDB is not a system service: `service mariadb` (copy-back's
service manager on a host without systemd) is a shim on the runbook's PATH
that stops and starts the private server (testkit/private-service), and
/var/lib/mysql and /etc/mysql/my.cnf are that server's data directory and
configuration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from testkit.mariadb_service import SERVICE_MANAGER, PrivateService

from ..helpers import BARE_PATH, ROOT, bareos_env
from ..mariabackup.conftest import change, populate, snapshot
from .runbook import Runner, section_blocks
from .test_jobs import assert_nothing_left, assert_ok

LEVELS = ("Full", "Incremental", "Differential", "Incremental")


@pytest.fixture
def source(bed):
    service = PrivateService("bareos-source").install().start()
    profile = bed.profiles / "mariabackup.conf"
    profile.write_text(f"[database]\ntype = mysql\nsocket = {service.socket}\nuser = root\n")
    profile.chmod(0o600)
    yield service
    service.destroy()


@pytest.fixture
def live(tmp_path):
    """The server the backup is copied back into: running, with data of its own."""
    service = PrivateService("bareos-restored").install().start()
    service.sql("CREATE DATABASE replaced_by_the_backup")
    shims = tmp_path / "host"
    shims.mkdir()
    (shims / "service").write_text(f'#!/bin/sh\n[ "$1" = mariadb ] || exit 1\n'
                                   f'exec {SERVICE_MANAGER} "$2" {service.root}\n')
    (shims / "service").chmod(0o755)
    service.shims = shims
    yield service
    service.destroy()


def test_the_restore_runbook_brings_the_chain_back_exactly(bed, source, live):
    populate(source)
    jobs = []
    for step, level in enumerate(LEVELS):
        if step:
            change(source, step)
        job = bed.bareos.backup("backup-mariadb-physical", level=level)
        assert_ok(job)
        assert job.level == level[0], job
        jobs.append(job.job_id)
    expected = snapshot(source)
    chain = json.loads((bed.state / "mariabackup" / "default" / "chain.json").read_text())
    assert [p["level"] for p in chain["pieces"]] == ["full", "incremental", "differential", "incremental"]

    pieces = bed.state / "mariabackup-restore"    # /var/lib/dbpipe/mariabackup-restore: where prepare looks
    run = Runner(bed.bareos, None, {
        "<full job id>": str(jobs[0]), "<differential job id>": str(jobs[2]),
        "<incremental job id>": str(jobs[3]), "/var/lib/dbpipe": str(bed.state),
        "/var/lib/mysql": live.datadir, "/etc/mysql/my.cnf": live.cnf},
        env=bareos_env(TMPDIR=str(bed.tmpdir), DBPIPE_STATE_DIR=str(bed.state),
                       DBPIPE_CONFIG_DIR=str(bed.profiles), PATH=f"{live.shims}:{bed.bindir}:{BARE_PATH}"))
    try:
        for language, text in section_blocks(ROOT / "docs" / "physical.md", "Restore"):
            if language == "sh":
                run.run(text)
        restores = bed.bareos.query(f"SELECT JobId FROM Job WHERE Name = 'restore-dbpipe-files' "
                                    f"AND JobId > {jobs[-1]}")
        assert len(restores) == 3, restores
        for (job_id,) in restores:
            restored = bed.bareos.job(int(job_id))
            assert_ok(restored)
            assert "ClientAfterJob: dbpipe-mariabackup-restore: stored #" in restored.log, restored
        assert sorted(p.name.rsplit("-job", 1)[1] for p in pieces.glob("*.dbpipe")) == sorted(
            f"{jobs[i]}.dbpipe" for i in (0, 2, 3))
        prepared = next(out for out in run.outputs if out.startswith("prepared: "))
        assert f"Bareos job {jobs[3]})" in prepared, prepared
        assert list(Path(live.root).glob("data.dbpipe-old-*")), "the previous data directory is kept"
        assert snapshot(live) == expected
        assert "replaced_by_the_backup" not in live.sql("SHOW DATABASES")
    finally:
        shutil.rmtree(pieces, ignore_errors=True)
    assert_nothing_left(bed)
