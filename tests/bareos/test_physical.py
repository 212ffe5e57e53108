"""The physical MariaDB chain through real Bareos levels: Full, Incremental,
Differential of the shipped backup-mariadb-physical job, each job restored by
Bareos, then prepared and copied back into a new server, compared table by
table with the source at the last backup."""

from __future__ import annotations

import json
import shutil

import pytest

from testkit.mariadb_service import PrivateService

from ..mariabackup.conftest import change, populate, snapshot
from ..mariabackup.test_chain import restore
from .test_jobs import assert_nothing_left, assert_ok

@pytest.fixture
def source(bed):
    service = PrivateService("bareos-source").install().start()
    profile = bed.profiles / "mariabackup.conf"
    profile.write_text(f"[database]\ntype = mysql\nsocket = {service.socket}\nuser = root\n")
    profile.chmod(0o600)
    yield service
    service.destroy()


def test_full_incremental_differential_restore_exactly(bed, source):
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

    pieces = bed.state / "mariabackup-restore"    # /var/lib/dbpipe/mariabackup-restore: where prepare looks
    target = PrivateService("bareos-restored")
    try:
        for job in jobs:                    # Bareos 25 restores one version per job; docs/physical.md's line
            restored = bed.bareos.run_job(f"restore client=bareos-fd restorejob=restore-dbpipe-files where=/ "
                                          f"jobid={job.job_id} all done")
            assert_ok(restored)
        assert len(list(pieces.glob("*.dbpipe"))) == 4, sorted(bed.state.rglob("*.dbpipe"))
        _, copied = restore(pieces, target)
        assert copied.returncode == 0, copied.stderr.decode()
        assert snapshot(target) == expected
    finally:
        target.destroy()
        shutil.rmtree(pieces, ignore_errors=True)
    assert_nothing_left(bed)
