"""The jobs of bareos-config/ run by a real bpipe plugin and real RunScripts
(private Bacula 9.6 daemons; every command split the Bareos way, no shell).

Bacula differs from Bareos where it matters for assertions: a failing reader
only gives JobErrors > 0 (Bareos: a fatal job error), so success is always
checked as JobStatus T *and* JobErrors 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from .. import servers
from ..helpers import BIN, bareos_env, sha256
from ..conftest import make_mysql
from ..nextcloud.test_service import WebServer
from .conftest import session_server
from .translate import Translation, stock_restore_job

ENGINES = ("mysql", "pgsql", "sqlite")
PSEUDO_FILE = "/NEXTCLOUD/database.sql"
VOLATILE = ("maintenance", "data-fingerprint", "dbpipe.maintenance")


def content(db) -> bytes:
    """The logical content of the database (names that legitimately differ removed)."""
    data = db.content() if db.kind == "sqlite" else db.fingerprint()
    return re.sub(rb"^-- (Host: |Dumping (events|routines) for database ).*$", b"", data, flags=re.MULTILINE)


def stable_config(site) -> dict:
    return {k: v for k, v in site.install.config().items() if k not in VOLATILE}


def occ_since(site, mark: int) -> list[str]:
    """occ calls that change the installation (the reader's and writer's
    config:list to find the database does not)."""
    return [call for call in site.install.commands()[mark:] if not call.startswith("config:list")]


def change_everything(site) -> None:
    """Users keep working after the backup: database and files change."""
    site.db.change()
    site.path("data/alice/files/Readme.md").write_text("changed after the backup\n")
    site.path("data/bob/files/Readme.md").unlink()
    shutil.rmtree(site.path("custom_apps/example"))


def assert_ok(job) -> None:
    """JobStatus T and JobErrors 0, or the whole job log."""
    if not job.ok:
        pytest.fail(f"expected a clean job, got:\n{job}", pytrace=False)


def assert_nothing_left(e2e) -> None:
    assert sorted(os.listdir(e2e.tmpdir)) == [], "temp files left behind"


@pytest.mark.parametrize("engine", ENGINES)
def test_one_job_backs_up_files_and_database_and_one_restore_brings_both_back(engine, make_site, e2e):
    site = make_site(engine)
    site.jobs("backup-nextcloud", "restore-nextcloud")
    files, database, config = site.snapshot(), content(site.db), stable_config(site)

    backup = site.backup("backup-nextcloud")

    assert_ok(backup)
    stored = set(site.bacula.files(backup.job_id))
    assert PSEUDO_FILE in stored
    assert {str(site.install.root / rel) for rel in files} <= stored
    assert not {str(site.install.root / rel) for rel in site.excluded()} & stored, "optional excludes ignored"
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

    assert_ok(restore)
    assert content(site.db) == database
    after = site.snapshot()
    assert {rel: after.get(rel) for rel in files} == files
    assert stable_config(site) == config
    assert not site.install.maintenance
    assert site.install.config().get("data-fingerprint") != fingerprint
    assert "maintenance:data-fingerprint" in occ_since(site, mark)
    assert_nothing_left(e2e)


def test_restore_elsewhere_writes_the_dump_as_a_file_and_leaves_the_live_site_alone(make_site, e2e):
    site = make_site("mysql")
    site.jobs("backup-nextcloud")
    where = e2e.base / f"bareos-restores-{site.label}"
    restore_job = site.stock_restore("nextcloud", where)
    backed_up = site.snapshot()
    backup = site.backup("backup-nextcloud")
    assert_ok(backup)
    change_everything(site)
    live_db, live_files, mark = content(site.db), site.snapshot(), len(site.install.commands())

    restore = site.restore(backup.job_id, restore_job, where=str(where), translated=False)

    assert_ok(restore)
    dump = where / PSEUDO_FILE.lstrip("/")
    assert stat_mode(dump) == 0o600
    verified = subprocess.run([str(BIN / "dbpipe-verify"), str(dump)], capture_output=True, text=True,
                              env=bareos_env())
    assert verified.returncode == 0, verified.stderr
    copy = where / str(site.install.root).lstrip("/")
    for rel, (digest, *_) in backed_up.items():
        assert not digest or sha256(copy / rel) == digest, rel
    assert content(site.db) == live_db
    assert site.snapshot() == live_files
    assert occ_since(site, mark) == [], "no hook may touch the live installation"
    assert_nothing_left(e2e)


def test_corrupted_volume_is_refused_and_the_live_database_stays_untouched(make_site, e2e):
    site = make_site("pgsql")
    site.jobs("backup-nextcloud", "restore-nextcloud")
    backup = site.backup("backup-nextcloud")
    assert_ok(backup)
    site.db.change()
    live_db, mark = content(site.db), len(site.install.commands())
    corrupt_stream(site.bacula.volumes(backup.job_id))

    restore = site.restore(backup.job_id, "restore-nextcloud", file=PSEUDO_FILE)

    assert not restore.ok and restore.status in "Ef", restore
    assert "checksum mismatch" in restore.log, restore
    assert bpipe_exit_code(restore) == 65, restore
    assert content(site.db) == live_db
    assert not site.install.maintenance
    assert occ_since(site, mark) == [], "after-restore must not run after a failed restore"
    assert_nothing_left(e2e)


@pytest.fixture
def own_pg_server():
    """A PostgreSQL server of this test's own: it gets stopped."""
    server = servers.local_postgres()
    yield server
    servers.destroy(server)


def test_database_down_fails_the_job_and_maintenance_ends_as_it_started(make_site, e2e, own_pg_server):
    site = make_site("pgsql", own_pg_server)
    site.jobs("backup-nextcloud", "backup-nextcloud-dumpfile")
    own_pg_server.stop()
    try:
        streamed = site.backup("backup-nextcloud")
        site.install.set_maintenance(True)              # an admin's maintenance mode
        dumped = site.backup("backup-nextcloud-dumpfile")
    finally:
        own_pg_server.start()                           # so the database can be dropped

    assert streamed.errors > 0, streamed                # Bareos: a fatal error, job status f
    assert "Error closing" in streamed.log and bpipe_exit_code(streamed) == 69, streamed
    assert "<27>dbpipe-dump[" in e2e.syslog.text(), "Bareos drops the reader's stderr: syslog has it"
    calls = site.install.commands()
    assert calls.index("maintenance:mode --on") < calls.index("maintenance:mode --off")
    assert dumped.status in "Ef", dumped                # the Before script failed the job
    assert "ClientAfterJob: nextcloud-after-backup" in dumped.log, "the After script must run on failure"
    assert site.install.maintenance                     # the admin's, still on
    assert "dbpipe.maintenance" not in site.install.config()
    assert not site.dump_dir.exists() or list(site.dump_dir.iterdir()) == []
    assert_nothing_left(e2e)


def test_dump_file_method_backs_up_and_restores_files_and_database(make_site, e2e):
    site = make_site("sqlite")
    site.jobs("backup-nextcloud-dumpfile", "restore-nextcloud-dumpfile")
    files, database = site.snapshot(), content(site.db)
    dump = site.dump_dir / "nextcloud-database.sql"

    backup = site.backup("backup-nextcloud-dumpfile")

    assert_ok(backup)
    assert str(dump) in site.bacula.files(backup.job_id)
    assert not dump.exists(), "the After script removes the dump file"
    assert not site.install.maintenance
    change_everything(site)

    restore = site.restore(backup.job_id, "restore-nextcloud-dumpfile")

    assert_ok(restore)
    assert content(site.db) == database
    after = site.snapshot()
    assert {rel: after.get(rel) for rel in files} == files
    assert not site.install.maintenance
    assert_nothing_left(e2e)


def test_stop_service_method_stops_the_web_server_for_the_job(make_site, e2e, tmp_path):
    """Method 4.1: a real process (php -S) stands in for apache2, driven
    through a systemctl look-alike instead of the system's service manager."""
    web = WebServer(tmp_path)
    site = make_site("sqlite")
    site.translation.hook_options += ["--service-manager", str(web.manager)]
    site.jobs("backup-nextcloud-stop-service")
    assert subprocess.run([str(web.manager), "start", "apache2"]).returncode == 0
    mark = len(web.actions())
    try:
        backup = site.backup("backup-nextcloud-stop-service")
        assert_ok(backup)
        assert web.up()
    finally:
        subprocess.run([str(web.manager), "stop", "apache2"])
    assert "service apache2: stopped" in backup.log and "service apache2: started" in backup.log
    assert web.actions()[mark:mark + 3] == ["is-active apache2", "stop apache2", "start apache2"]
    assert not [c for c in site.install.commands() if c.startswith("maintenance:")]
    assert PSEUDO_FILE in site.bacula.files(backup.job_id)


def test_any_database_through_a_profile(e2e, server_pool, tmp_path):
    db = make_mysql(session_server(server_pool, "mysql"), tmp_path)
    profile = e2e.profiles / "mydb.conf"
    profile.write_text("[database]\n" + "".join(
        f"{key} = {value}\n" for key, value in profile_values(db).items()))
    profile.chmod(0o600)
    translation = Translation({"/usr/local/bin/": f"{BIN}/"}, suffix="-profile")
    e2e.add(translation.job_with_fileset("backup-database-mydb")
            + [stock_restore_job("RestoreFiles-profile", "database-mydb-profile", "/tmp/bareos-restores")])
    database = content(db)
    backup = e2e.bacula.backup("backup-database-mydb-profile")
    assert_ok(backup)
    db.change()

    restore = e2e.bacula.restore(backup.job_id, "RestoreFiles-profile", where="/")

    assert_ok(restore)
    assert content(db) == database
    assert_nothing_left(e2e)


# --- helpers -----------------------------------------------------------------------------

def bpipe_exit_code(job) -> int | None:
    """bpipe logs a failed close (reader or writer) as 0x10000000 | exit code."""
    match = re.search(r"Error closing for file \S+: (\d+)", job.log)
    return int(match.group(1)) & 0xFFFFFFF if match else None


def stat_mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def corrupt_stream(volumes) -> None:
    """Flip one byte of the SQL inside the stored stream (Bacula's block
    checksums are off in the test device, as they can be in Bareos)."""
    for volume in volumes:
        data = bytearray(volume.read_bytes())
        offset = data.find(b"CREATE TABLE")
        if offset >= 0:
            data[offset] ^= 0x01
            volume.write_bytes(bytes(data))
            return
    raise AssertionError(f"no SQL found in {volumes}")


def profile_values(db) -> dict:
    """The [database] keys of a profile for a tests.conftest make_mysql() database."""
    args, values = db.user_args, {}
    for i in range(0, len(args), 2):
        values[args[i].lstrip("-").replace("-", "_")] = args[i + 1]
    return values
