"""A Nextcloud job whose data directory is not there (its disk not mounted)
must not end T: real Bareos 25 runs `nextcloud-fileset` on the client
(File = "\\|command"), the command fails with one line naming the path, and
that line reaches the job log through the dbpipe-joblog RunScript."""

from __future__ import annotations

import shutil

import pytest

from .test_failures import joblog_lines
from .test_jobs import assert_nothing_left


@pytest.mark.parametrize("layout", ["missing", "without .ocdata"])
def test_a_job_without_the_data_directory_fails_and_names_it(layout, make_site, bed):
    site = make_site("mysql", data_outside=True)
    mark = len(site.install.commands())
    aside = site.data.with_name(site.data.name + "-disk")
    site.data.rename(aside)                   # the disk is not mounted ...
    if layout == "without .ocdata":
        site.data.mkdir()                     # ... and its mount point is empty
    try:
        backup = site.backup("backup-nextcloud")
    finally:
        shutil.rmtree(site.data, ignore_errors=True)
        aside.rename(site.data)

    assert backup.status == "f", backup
    reason = "is missing" if layout == "missing" else "has no .ocdata"
    assert (f"nextcloud-fileset: Nextcloud data directory {site.data} {reason} (disk not mounted?)"
            in after_job_output(backup)), backup
    assert "Error running program: " in backup.log and "status=66" in backup.log, backup
    assert [line for line in joblog_lines(backup) if "nextcloud-fileset: " in line
            and not line.startswith("ClientAfterJob: ")] == [], backup
    assert not [path for path in site.bareos.files(backup.job_id) if path.startswith(str(site.data))]
    assert "maintenance:mode --on" not in site.install.commands()[mark:]   # Before never ran
    assert not site.install.maintenance
    assert_nothing_left(bed)

    after = site.backup("backup-nextcloud")     # the disk is back: the nightly job works again
    assert after.ok, after


def after_job_output(job) -> str:
    """What the After RunScripts printed, as one text: bareos-fd (25.1) cuts a
    RunScript's output lines into pieces of 127 bytes, one job-log line each."""
    prefix = "ClientAfterJob: "
    return "".join(line[len(prefix):] for line in joblog_lines(job) if line.startswith(prefix))
