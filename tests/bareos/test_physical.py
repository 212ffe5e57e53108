"""The physical MariaDB chain through real Bareos levels: Full, Incremental,
Differential of the shipped backup-mariadb-physical job, each job restored by
Bareos, then prepared and copied back into a new server, compared table by
table with the source at the last backup."""

from __future__ import annotations

import json

import pytest

from ..mariabackup.conftest import PrivateService, change, populate, snapshot
from ..mariabackup.test_chain import restore
from .test_jobs import assert_nothing_left, assert_ok

PIECE = "/MARIADB/mariabackup.dbpipe"


@pytest.fixture
def source(bed):
    service = PrivateService("bareos-source").install().start()
    profile = bed.profiles / "mariabackup.conf"
    profile.write_text(f"[database]\ntype = mysql\nsocket = {service.socket}\nuser = root\n")
    profile.chmod(0o600)
    yield service
    service.destroy()


def test_full_incremental_differential_restore_exactly(bed, source, tmp_path):
    populate(source)
    jobs = []
    for step, level in enumerate(("Full", "Incremental", "Incremental", "Differential")):
        if step:
            change(source, step)
        job = bed.bareos.backup("backup-mariadb-physical", level=level)
        assert_ok(job)
        assert job.level == level[0], job
        jobs.append(job)
    expected = snapshot(source)
    chain = json.loads((bed.state / "mariabackup" / "default" / "chain.json").read_text())
    assert [p["level"] for p in chain["pieces"]] == ["full", "incremental", "incremental", "differential"]

    where = tmp_path / "restores"
    for job in jobs:                        # Bareos 25 restores one version per job
        restored = bed.bareos.restore(job.job_id, "restore-dbpipe-files", where=str(where), file=PIECE)
        assert_ok(restored)
    landed = {path.parent for path in where.rglob("*.dbpipe")}
    assert len(landed) == 1 and len(list(next(iter(landed)).glob("*.dbpipe"))) == 4

    target = PrivateService("bareos-restored")
    try:
        _, copied = restore(next(iter(landed)), target)
        assert copied.returncode == 0, copied.stderr.decode()
        assert snapshot(target) == expected
    finally:
        target.destroy()
    assert_nothing_left(bed)
