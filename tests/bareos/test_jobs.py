"""Every shipped job, run as shipped by real Bareos 25 daemons, against real
databases and the occ double: backups end T, restores bring files and
database back to the backup moment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from ..conftest import SPECS, make_mysql
from ..helpers import bareos_env, sha256
from ..nextcloud.test_service import WebServer
from .conftest import PSEUDO_FILE

ENGINES = ("mysql", "pgsql", "sqlite")
VOLATILE = ("maintenance", "data-fingerprint", "dbpipe.maintenance")


def content(db) -> bytes:
    """The logical content of the database (names that legitimately differ removed)."""
    data = db.content() if db.kind == "sqlite" else db.fingerprint()
    return re.sub(rb"^-- (Host: |Dumping (events|routines) for database ).*$", b"", data, flags=re.MULTILINE)


def stable_config(site) -> dict:
    return {k: v for k, v in site.install.config().items() if k not in VOLATILE}


def occ_since(site, mark: int) -> list[str]:
    """occ calls that change the installation (config:list only reads)."""
    return [call for call in site.install.commands()[mark:] if not call.startswith("config:list")]


def change_everything(site) -> None:
    """Users keep working after the backup: database and files change."""
    site.db.change()
    site.path("data/alice/files/Readme.md").write_text("changed after the backup\n")
    site.path("data/bob/files/Readme.md").unlink()
    if site.path("custom_apps/example").exists():
        shutil.rmtree(site.path("custom_apps/example"))


def assert_ok(job) -> None:
    if not job.ok:
        pytest.fail(f"expected JobStatus T without errors, got:\n{job}", pytrace=False)


def assert_nothing_left(bed) -> None:
    assert sorted(os.listdir(bed.tmpdir)) == [], "temp files left behind"
    assert not list((bed.state / "joblog").glob("*.log")), "job-log records left behind"


def assert_round_trip(site, bed) -> None:
    files, database, config = site.snapshot(), content(site.db), stable_config(site)

    backup = site.backup("backup-nextcloud")

    assert_ok(backup)
    stored = set(site.bareos.files(backup.job_id))
    assert PSEUDO_FILE in stored
    assert set(files) <= stored
    assert not site.excluded() & stored, "the shipped excludes were ignored"
    assert str(site.path("data/.ocdata")) in stored
    calls = site.install.commands()
    assert calls.index("maintenance:mode --on") < calls.index("maintenance:mode --off")
    assert not site.install.maintenance
    assert "maintenance mode: on" in backup.log and "maintenance mode: off" in backup.log

    change_everything(site)
    assert content(site.db) != database
    fingerprint = site.install.config().get("data-fingerprint")
    mark = len(site.install.commands())

    restore = site.restore(backup.job_id, "restore-nextcloud")

    assert_restored(site, restore, database, files, config)
    assert site.install.config().get("data-fingerprint") != fingerprint
    assert "maintenance:data-fingerprint" in occ_since(site, mark)
    assert_nothing_left(bed)


def assert_restored(site, restore, database: bytes, files: dict, config: dict) -> None:
    """A good restore-nextcloud: database and files of the backup, Nextcloud open."""
    assert_ok(restore)
    assert content(site.db) == database
    after = site.snapshot()
    assert {path: after.get(path) for path in files} == files
    assert stable_config(site) == config
    assert not site.install.maintenance


@pytest.mark.parametrize("engine", ENGINES)
def test_method_4_3_one_job_backs_up_files_and_database_one_restore_brings_both_back(engine, make_site, bed):
    assert_round_trip(make_site(engine), bed)


def test_a_data_directory_outside_the_web_root_and_no_custom_apps(make_site, bed):
    """config.php's datadirectory decides, not /var/www/nextcloud/data; no W for
    a custom_apps that does not exist."""
    site = make_site("mysql", data_outside=True, custom_apps=False)
    assert not str(site.data).startswith(str(site.install.root))
    assert not site.path("custom_apps").exists()
    assert_round_trip(site, bed)


def test_method_4_2_dump_file_round_trip(make_site, bed):
    site = make_site("sqlite")
    files, database = site.snapshot(), content(site.db)
    dump = site.dump_dir / "nextcloud-database.sql"

    backup = site.backup("backup-nextcloud-dumpfile")

    assert_ok(backup)
    assert str(dump) in site.bareos.files(backup.job_id)
    assert not dump.exists(), "the After script removes the dump file"
    assert not site.install.maintenance
    change_everything(site)

    restore = site.restore(backup.job_id, "restore-nextcloud-dumpfile")

    assert_ok(restore)
    assert content(site.db) == database
    after = site.snapshot()
    assert {path: after.get(path) for path in files} == files
    assert not site.install.maintenance
    assert_nothing_left(bed)


def test_restore_elsewhere_writes_the_verified_dump_and_leaves_the_live_site_alone(make_site, bed):
    site = make_site("pgsql")
    where = bed.base / f"bareos-restores-{site.label}"
    backed_up = site.snapshot()
    backup = site.backup("backup-nextcloud")
    assert_ok(backup)
    change_everything(site)
    live_db, live_files, mark = content(site.db), site.snapshot(), len(site.install.commands())

    restore = site.restore(backup.job_id, "restore-dbpipe-files", where=str(where))

    assert_ok(restore)
    dump = where / PSEUDO_FILE.lstrip("/")
    assert os.stat(dump).st_mode & 0o777 == 0o600
    verified = subprocess.run([str(bed.bindir / "dbpipe-verify"), str(dump)], capture_output=True,
                              text=True, env=bareos_env())
    assert verified.returncode == 0, verified.stderr
    for path, (digest, *_) in backed_up.items():
        assert not digest or sha256(where / path.lstrip("/")) == digest, path
    assert content(site.db) == live_db
    assert site.snapshot() == live_files
    assert occ_since(site, mark) == [], "nothing may touch the live installation"
    assert_nothing_left(bed)


def test_method_4_1_stop_service_stops_the_web_server_for_the_job(make_site, bed, tmp_path):
    """A real process (php -S) stands in for apache2; the fd finds the test's
    service(8) and systemctl first on its PATH."""
    web = WebServer(tmp_path)
    shims = {"systemctl": f'exec {web.manager} "$@"',
             "service": f'action=$2; [ "$action" = status ] && action=is-active\nexec {web.manager} "$action" "$1"'}
    for name, body in shims.items():
        (bed.shims / name).write_text(f"#!/bin/sh\n{body}\n")
        (bed.shims / name).chmod(0o755)
    site = make_site("sqlite")
    assert subprocess.run([str(web.manager), "start", "apache2"]).returncode == 0
    mark = len(web.actions())
    try:
        backup = site.backup("backup-nextcloud-stop-service")
        assert_ok(backup)
        assert web.up()
    finally:
        subprocess.run([str(web.manager), "stop", "apache2"])
        for name in shims:
            (bed.shims / name).unlink()
    assert "service apache2: stopped" in backup.log and "service apache2: started" in backup.log
    assert web.actions()[mark:mark + 3] == ["is-active apache2", "stop apache2", "start apache2"]
    assert not [c for c in site.install.commands() if c.startswith("maintenance:")]
    assert PSEUDO_FILE in site.bareos.files(backup.job_id)


def test_any_database_through_a_profile(bed, server_pool, tmp_path):
    db = make_mysql(server_pool.get("mysql", SPECS["mysql"][0]), tmp_path)
    profile = bed.profiles / "mydb.conf"
    profile.write_text("[database]\n" + "".join(
        f"{key} = {value}\n" for key, value in profile_values(db).items()))
    profile.chmod(0o600)
    database = content(db)
    backup = bed.bareos.backup("backup-database-mydb")
    assert_ok(backup)
    db.change()

    restore = bed.bareos.restore(backup.job_id, "restore-dbpipe-files", where="/")

    assert_ok(restore)
    assert content(db) == database
    assert_nothing_left(bed)


def profile_values(db) -> dict:
    """The [database] keys of a profile for a tests.conftest make_mysql() database."""
    args, values = db.user_args, {}
    for i in range(0, len(args), 2):
        values[args[i].lstrip("-").replace("-", "_")] = args[i + 1]
    return values
