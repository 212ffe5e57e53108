"""The most common restore: one file or one folder a user lost, put back in
place with the shipped restore-nextcloud job and the bconsole line an admin
types.  The job ends T, the files come back with owner and mode, the live
database is not touched, maintenance mode stays as it was, and occ files:scan
runs for exactly the users whose files came back.  The database stream alone
keeps its own flow (load, new data fingerprint)."""

from __future__ import annotations

import os
import re
import shutil
import stat

from .conftest import PSEUDO_FILE
from .test_jobs import assert_nothing_left, assert_ok, content, occ_since

RESTORE = "restore client=bareos-fd fileset=nextcloud restorejob=restore-nextcloud"


def user_file(site, rel: str, text: str, mode: int) -> tuple:
    """A user's file owned by the web server's account, as Nextcloud writes it."""
    path = site.path(f"data/{rel}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    owner = site.path("data").stat()
    os.chown(path.parent, owner.st_uid, owner.st_gid)
    os.chown(path, owner.st_uid, owner.st_gid)
    path.chmod(mode)
    return described(path)


def described(path) -> tuple:
    info = os.stat(path)
    return path.read_text(), stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def backed_up(site):
    backup = site.backup("backup-nextcloud")
    assert_ok(backup)
    return backup


def test_one_deleted_file_comes_back_and_only_its_user_is_scanned(make_site, bed):
    site = make_site("mysql")
    report = user_file(site, "alice/files/report.txt", "quarterly figures\n", 0o640)
    backed_up(site)
    site.path("data/alice/files/report.txt").unlink()
    site.db.change()                                  # users keep working after the backup
    live, others, mark = content(site.db), site.snapshot(), len(site.install.commands())
    fingerprint = site.install.config().get("data-fingerprint")

    restore = bed.bareos.run_job(f"{RESTORE} file={site.path('data/alice/files/report.txt')} current done")

    assert_ok(restore)
    assert described(site.path("data/alice/files/report.txt")) == report
    assert content(site.db) == live, "the live database must not be touched"
    after = site.snapshot()
    del after[str(site.path("data/alice/files/report.txt"))]
    assert after == others
    assert site.install.scanned() == ["alice"]
    calls = occ_since(site, mark)
    assert [c for c in calls if not c.startswith("status")] == ["files:scan -- alice"], calls
    assert not site.install.maintenance
    assert site.install.config().get("data-fingerprint") == fingerprint
    assert "restored no database stream, the database is left as it is; user files restored: alice: 1 path" \
        in restore.log, restore
    assert_nothing_left(bed)


def test_one_folder_of_one_user_comes_back_for_that_user_only(make_site, bed):
    site = make_site("pgsql")
    photos = {name: user_file(site, f"bob/files/Photos/{name}", f"photo {name}\n", 0o600)
              for name in ("a.jpg", "b c.jpg")}
    user_file(site, "alice/files/keep.txt", "alice's\n", 0o644)
    backed_up(site)
    shutil.rmtree(site.path("data/bob/files/Photos"))
    live, mark = content(site.db), len(site.install.commands())

    # in the selection tree, as an admin marks a folder: cd, mark, done
    out = bed.bareos.console(f"{RESTORE} select current\ncd {site.path('data/bob/files')}\nmark Photos\ndone\nyes")
    queued = re.search(r"Job queued\. JobId=(\d+)", out)
    assert queued, out
    restore = bed.bareos.wait(int(queued.group(1)))

    assert_ok(restore)
    for name, before in photos.items():
        assert described(site.path(f"data/bob/files/Photos/{name}")) == before
    assert content(site.db) == live
    assert site.install.scanned() == ["bob"]
    assert not [c for c in occ_since(site, mark) if c.startswith(("maintenance:", "config:system"))]
    assert not site.install.maintenance
    assert_nothing_left(bed)


def test_an_admins_maintenance_mode_stays_on_and_the_job_says_what_to_scan(make_site, bed):
    site = make_site("sqlite")
    user_file(site, "alice/files/report.txt", "figures\n", 0o640)
    backed_up(site)
    site.path("data/alice/files/report.txt").unlink()
    site.install.set_maintenance(True)                # the admin's own, no marker
    mark = len(site.install.commands())

    restore = bed.bareos.run_job(f"{RESTORE} file={site.path('data/alice/files/report.txt')} current done")

    assert_ok(restore)
    assert site.path("data/alice/files/report.txt").read_text() == "figures\n"
    assert site.install.maintenance
    assert site.install.scanned() == []
    assert not [c for c in occ_since(site, mark) if c.startswith(("maintenance:", "files:"))]
    assert "once it is off, run occ files:scan -- alice" in restore.log, restore
    site.install.set_maintenance(False)
    assert_nothing_left(bed)


def test_the_database_stream_alone_is_loaded_as_before(make_site, bed):
    site = make_site("mysql")
    database = content(site.db)
    backed_up(site)
    site.db.change()
    files, fingerprint = site.snapshot(), site.install.config().get("data-fingerprint")

    restore = bed.bareos.run_job(f"{RESTORE} file={PSEUDO_FILE} current done")

    assert_ok(restore)
    assert content(site.db) == database
    assert site.snapshot() == files
    assert site.install.config().get("data-fingerprint") != fingerprint
    assert not site.install.maintenance and site.install.scanned() == []
    assert_nothing_left(bed)


def test_one_file_from_a_dump_file_backup_leaves_the_database_alone(make_site, bed):
    """Method 4.2 (backup-nextcloud-dumpfile): one file restored with
    restore-nextcloud-dumpfile ends T without the dump file - the database
    stays as it is and only the file's user is scanned."""
    site = make_site("mysql")
    report = user_file(site, "alice/files/report.txt", "quarterly figures\n", 0o640)
    assert_ok(site.backup("backup-nextcloud-dumpfile"))
    site.path("data/alice/files/report.txt").unlink()
    site.db.change()
    live, mark = content(site.db), len(site.install.commands())

    restore = bed.bareos.run_job("restore client=bareos-fd fileset=nextcloud-dumpfile "
                                 "restorejob=restore-nextcloud-dumpfile "
                                 f"file={site.path('data/alice/files/report.txt')} current done")

    assert_ok(restore)
    assert described(site.path("data/alice/files/report.txt")) == report
    assert content(site.db) == live, "the live database must not be touched"
    assert site.install.scanned() == ["alice"]
    assert [c for c in occ_since(site, mark) if not c.startswith("status")] == ["files:scan -- alice"]
    assert not site.install.maintenance
    assert_nothing_left(bed)
