"""The runbooks docs/first-backup.md, docs/file-restore.md and docs/drill.md run as written
on the test bed (runbook.Runner: only host names, ports and paths
substituted), every block: `apt install` unpacks the bed's package into the
Nextcloud host's and the director's roots, the `cp` lines copy from there
into the bed's config tree.  docs/disaster-recovery.md runs in
test_disaster_recovery.py, docs/physical.md's "Restore" in test_physical.py."""

from __future__ import annotations

from ..helpers import BARE_PATH, ROOT, bareos_env
from .runbook import Runner, blocks
from .test_drill import latest, nextcloud_tables, only_its_own_database, scratch_databases
from .test_file_restore import described, user_file
from testkit.testbed import RESOURCES


def runner(bed, site, **more) -> Runner:
    """On the Nextcloud host (and the director: one config tree in the bed)."""
    return Runner(site.bareos, None, {
        "/var/www/nextcloud": str(site.install.root), "/etc/bareos": str(site.bareos.conf("")),
        "/usr/share/dbpipe/bareos-config/bareos-dir.d": str(bed.director_root / RESOURCES / "bareos-dir.d"),
        "/usr/share/dbpipe/bareos-config/bareos-fd.d": str(bed.root / RESOURCES / "bareos-fd.d"), **more},
        env=bareos_env(TMPDIR=str(bed.tmpdir), DBPIPE_STATE_DIR=str(bed.state), DBPIPE_CONFIG_DIR=str(bed.profiles),
                       PATH=f"{bed.bindir}:{BARE_PATH}", PWD=str(bed.deb.parent)),     # where make deb put it
        roots=[bed.root, bed.director_root], shipped=bed.shipped(site.install.root, site.dump_dir))


def sh_blocks(name: str) -> list[str]:
    return [text for language, text in blocks(ROOT / "docs" / name) if language == "sh"]


def without_the_package_resources(bed, bareos) -> None:
    """A director and file daemon that have not got dbpipe's resources yet:
    every file the package would copy is removed from the bed's config tree."""
    for daemon, root in (("bareos-dir.d", bed.director_root), ("bareos-fd.d", bed.root)):
        for path in (root / RESOURCES / daemon).rglob("*.conf"):
            (bareos.conf("") / daemon / path.relative_to(root / RESOURCES / daemon)).unlink()


def test_first_backup_as_written(bed, make_site):
    site = make_site("mysql")
    restores = bed.base / f"restores-{site.label}"
    run = runner(bed, site, **{"/tmp/bareos-restores": str(restores)})
    without_the_package_resources(bed, site.bareos)
    for text in sh_blocks("first-backup.md"):
        run.run(text)
        if "run job=backup-nextcloud" in text:
            backup = site.bareos.job(run.last_job)
            assert backup.ok and backup.level == "F", backup
    restored = site.bareos.job(run.last_job)
    assert restored.ok, restored
    assert "verdict:   intact, test restore passed" in run.outputs[-1]
    # the jobs ran what cp copied from the director's package: the package's commands
    job = (site.bareos.conf("") / "bareos-dir.d/job/backup-nextcloud.conf").read_text()
    assert f'"{bed.bindir}/nextcloud-before-backup {site.install.root}"' in job, job
    assert (restores / "NEXTCLOUD" / "database.sql").exists()


def test_file_restore_as_written(bed, make_site):
    site = make_site("mysql")
    before = user_file(site, "alice/files/report.txt", "quarterly figures\n", 0o640)
    backup = site.backup()
    assert backup.ok, backup
    site.path("data/alice/files/report.txt").unlink()
    database = site.db.fingerprint()
    run = runner(bed, site)
    for text in sh_blocks("file-restore.md"):
        run.run(text)
    restored = site.bareos.job(run.last_job)
    assert restored.ok, restored
    assert described(site.path("data/alice/files/report.txt")) == before
    assert site.db.fingerprint() == database
    assert not site.install.maintenance


def test_drill_setup_as_written(bed, make_site):
    """The drill on a standard installation: Nextcloud's user holds no grant beyond its database."""
    site = make_site("mysql")
    nextcloud_tables(site)
    only_its_own_database(site)
    backup = site.backup()
    assert backup.ok, backup
    run = runner(bed, site)
    for text in sh_blocks("drill.md"):
        run.run(text)
    admin, drill = site.bareos.job(run.last_job), site.bareos.job(latest(site.bareos, "restore-drill-nextcloud"))
    assert admin.ok and drill.ok, (admin, drill)
    assert f"drill: JobId {drill.job_id} ended T: verdict:   intact, test restore passed" in run.outputs[-1]
    assert "Termination:            Admin OK" in run.outputs[-1]
    assert scratch_databases(site) == []
