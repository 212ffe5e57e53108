"""The shipped snapshot-mode job (backup-nextcloud-snapshot), run by real
Bareos daemons on a Nextcloud whose directories are on btrfs (loop device):
Nextcloud is closed for the window only; users change files and database
while the job still runs; restore-nextcloud brings back the window's moment
to the original paths; the next Incremental holds only what changed; a
cancelled job leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ..conftest import SPECS
from testkit import btrfs, installs
from .conftest import PSEUDO_FILE, SITES, Site, add_sample_files, database_for
from .test_jobs import assert_nothing_left, assert_ok, assert_restored, change_everything, content, stable_config

JOB = "backup-nextcloud-snapshot"
VIEW_ROOT = Path("/run/dbpipe/snapshot")          # the default the shipped resources use
WINDOW = re.compile(r"maintenance window: (\d+\.\d) s")


@pytest.fixture(scope="module")
def loop_fs():
    yield from btrfs.loop_or_skip("512M")


@pytest.fixture
def btrfs_site(bed, server_pool, loop_fs):
    """make_site's installation, on btrfs: the web root on the filesystem's top
    subvolume, data/ a subvolume of its own (two snapshots per job)."""
    label = f"snapshot-{next(SITES)}"
    root = loop_fs.mount / f"nextcloud-{label}"
    root.mkdir(mode=0o755)
    loop_fs.subvolume(root / "data")
    server = server_pool.get("mysql", SPECS["mysql"][0])
    db, values = database_for("mysql", root, server)
    values = {**values, "apps_paths": [
        {"path": str(root / "apps"), "url": "/apps", "writable": False},
        {"path": str(root / "custom_apps"), "url": "/custom_apps", "writable": True}]}
    install = installs.build(root, values)
    install.database = db
    add_sample_files(root, root / "data", install.config()["instanceid"])
    installs.give_to_web_user(root)
    site = Site(bed, install, root / "data", bed.base / f"dumps-{label}", label)
    site.activate()
    yield site
    db.server.drop_database(db.name)
    subprocess.run(["btrfs", "subvolume", "delete", str(root / "data")], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def key(site) -> str:
    return hashlib.sha256(os.path.realpath(site.install.root).encode()).hexdigest()[:16]


def assert_snapshot_gone(site, loop_fs) -> None:
    assert btrfs.mounts_below(VIEW_ROOT) == [], "bind mounts left behind"
    assert not (VIEW_ROOT / key(site)).exists()
    assert btrfs.subvolumes(loop_fs.mount / ".dbpipe-snapshots") == [], "snapshots left behind"
    assert not list(site.env.state.glob("nextcloud-*.snapshot.*")), "record or stream left behind"
    config = site.install.config()
    assert config["maintenance"] is False and "dbpipe.maintenance" not in config


def paused_job(site, level: str = "Full") -> int:
    """Start the job and return once its Before script is switching maintenance
    off: snapshots taken, the database's point fixed - the window's moment."""
    site.install.fail({"match": "maintenance:mode --off", "action": "pause", "times": 1})
    job_id = site.bareos.start_job(f"run job={JOB} level={level}")
    deadline = time.monotonic() + 120
    while "maintenance:mode --off" not in site.install.commands():
        if time.monotonic() > deadline or site.bareos.status(job_id) not in ("", "C", "R"):
            pytest.fail(f"the Before script never reached the end of the window:\n"
                        f"{site.bareos.job(job_id)}", pytrace=False)
        time.sleep(0.1)
    return job_id


def resume(site) -> None:
    (site.install.root / "occ-resume").touch()


def test_closed_for_the_window_only_and_restore_nextcloud_brings_back_its_moment(btrfs_site, bed, loop_fs):
    site = btrfs_site
    files, database, config = site.snapshot(), content(site.db), stable_config(site)
    job_id = paused_job(site)
    change_everything(site)                 # users work on, while the job still runs
    time.sleep(1.1)   # the job's start time (next "since") is set after the Before script, a second later
    resume(site)

    backup = site.bareos.wait(job_id)

    assert_ok(backup)
    window = WINDOW.search(backup.log)
    assert window, backup.log
    assert float(window.group(1)) < 60, "the window, not the job"
    stored = set(site.bareos.files(backup.job_id))
    assert PSEUDO_FILE in stored
    assert set(files) <= stored, "StripPath: the catalog holds the original paths"
    assert not [path for path in stored if path.startswith(str(VIEW_ROOT))]
    assert not site.excluded() & stored
    assert_snapshot_gone(site, loop_fs)
    assert content(site.db) != database

    incremental = site.backup(JOB, level="Incremental")

    assert_ok(incremental)
    changed = set(site.bareos.files(incremental.job_id))
    assert str(site.path("data/alice/files/Readme.md")) in changed
    assert str(site.path("data/alice/files/Photos/a b.jpg")) not in changed, "incremental, not full"
    assert_snapshot_gone(site, loop_fs)

    restore = site.restore(backup.job_id, "restore-nextcloud")

    assert_restored(site, restore, database, files, config)
    assert_nothing_left(bed)


def test_a_cancelled_job_leaves_no_snapshot_and_nextcloud_open(btrfs_site, bed, loop_fs):
    site = btrfs_site
    job_id = paused_job(site)
    site.bareos.cancel(job_id)
    resume(site)

    job = site.bareos.wait(job_id)
    site.bareos.wait_client_idle()
    job = site.bareos.job(job_id)

    assert job.status == "A", job
    assert_snapshot_gone(site, loop_fs)
    # the director dropped the client's connection at the cancel, so the After
    # script's lines reach only the client's syslog - but it ran, and removed it all
    logged = bed.syslog.text()
    assert re.search(r"nextcloud-after-backup\[\d+\]: removing the snapshot backup: 2 snapshot", logged), logged
