"""The shipped resources through Bareos' own parser (`-t`), warnings included."""

from __future__ import annotations

import pytest



@pytest.mark.parametrize("daemon", ["bareos-dir", "bareos-fd"])
def test_bareos_accepts_every_shipped_resource_without_a_warning(bed, daemon):
    output = bed.bareos.config_test(daemon)
    assert "deprecated" not in output.lower() and "warning" not in output.lower(), output


def test_the_director_knows_every_shipped_job_fileset_and_client(bed):
    shipped = bed.shipped(bed.base / "no-nextcloud-yet")
    names = {line.split('"')[1] for text in shipped.files("bareos-dir").values()
             for line in text.splitlines() if line.strip().startswith("Name = ")}
    known = bed.bareos.console(".jobs\n.filesets\n.clients")
    missing = {name for name in names if name not in known}
    assert not missing - _jobdefs_and_schedules(shipped), missing


def _jobdefs_and_schedules(shipped) -> set[str]:
    return {line.split('"')[1] for rel, text in shipped.files("bareos-dir").items()
            if rel.startswith(("jobdefs/", "schedule/")) for line in text.splitlines()
            if line.strip().startswith("Name = ")}

