"""The runbooks docs/first-backup.md, docs/file-restore.md and docs/drill.md run as written
on the test bed (runbook.Runner: only host names, ports and paths
substituted).  The blocks installing the package and copying its files are
left out: the test bed installs dbpipe and loads the shipped resources
itself (tests/integration/test_package.py builds and installs the package);
docs/disaster-recovery.md runs in test_disaster_recovery.py, docs/physical.md's
"Restore" in test_physical.py."""

from __future__ import annotations

from ..helpers import BARE_PATH, ROOT, bareos_env
from .runbook import Runner, blocks
from .test_drill import latest, nextcloud_tables, only_its_own_database, scratch_databases
from .test_file_restore import described, user_file

INSTALL = ("apt install ", "cp -rn /usr/share/dbpipe/", "cp /usr/share/dbpipe/")


def runner(bed, site, **more) -> Runner:
    return Runner(site.bareos, None, {"/var/www/nextcloud": str(site.install.root), **more},
                  env=bareos_env(TMPDIR=str(bed.tmpdir), DBPIPE_STATE_DIR=str(bed.state),
                                 DBPIPE_CONFIG_DIR=str(bed.profiles), PATH=f"{bed.bindir}:{BARE_PATH}"))


def sh_blocks(name: str) -> list[str]:
    return [text for language, text in blocks(ROOT / "docs" / name)
            if language == "sh" and not text.startswith(INSTALL)]


def test_first_backup_as_written(bed, make_site):
    site = make_site("mysql")
    restores = bed.base / f"restores-{site.label}"
    run = runner(bed, site, **{"/tmp/bareos-restores": str(restores)})
    for text in sh_blocks("first-backup.md"):
        run.run(text)
        if "run job=backup-nextcloud" in text:
            backup = site.bareos.job(run.last_job)
            assert backup.ok and backup.level == "F", backup
    restored = site.bareos.job(run.last_job)
    assert restored.ok, restored
    assert "verdict:   intact, test restore passed" in run.outputs[-1]
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
