"""The weekly restore drill: the Admin job drill-nextcloud starts
restore-drill-nextcloud for the newest database stream, which is loaded into
a throwaway database beside the live one, checked, and dropped; the verdict
is in the job log, a damaged stream fails the job."""

from __future__ import annotations

import time

from .test_failures import corrupt_stream
from .test_jobs import assert_nothing_left, assert_ok, content, occ_since


def run_drill(bareos, timeout: float = 300):
    """Run the Admin job, then wait for the restore job it started."""
    before = latest(bareos, "restore-drill-nextcloud")
    admin = bareos.run_job("run job=drill-nextcloud")
    deadline = time.monotonic() + 30
    while (drill := latest(bareos, "restore-drill-nextcloud")) == before:
        assert time.monotonic() < deadline, f"the Admin job started no drill:\n{admin}"
        time.sleep(0.5)
    return admin, bareos.wait(drill, timeout)


def latest(bareos, name: str) -> int | None:
    rows = bareos.query(f"SELECT max(JobId) FROM Job WHERE Name = '{name}'")
    return int(rows[0][0]) if rows and rows[0][0] else None


def scratch_databases(site) -> list[str]:
    return [name for name in site.db.server.sql("SHOW DATABASES").split() if name.startswith("dbpipe_verify_")]


def test_the_drill_proves_the_newest_stream_loads_and_touches_nothing_live(make_site, bed):
    site = make_site("mysql")
    site.db.sql("CREATE TABLE oc_appconfig (appid VARCHAR(32), configkey VARCHAR(64), configvalue TEXT);"
                "CREATE TABLE oc_users (uid VARCHAR(64) PRIMARY KEY); INSERT INTO oc_users VALUES ('alice');"
                "CREATE TABLE oc_storages (numeric_id INT PRIMARY KEY, id VARCHAR(64))")
    assert_ok(site.backup("backup-nextcloud"))
    site.db.change()
    live, mark = content(site.db), len(site.install.commands())

    admin, drill = run_drill(bed.bareos)

    assert_ok(admin)
    assert_ok(drill)
    assert "ClientAfterJob: verdict:   intact, test restore passed" in drill.log, drill
    assert "oc_users=1" in drill.log.replace("\n", "")
    assert not list(bed.state.rglob("database.sql")), "the drill's copy must be removed"
    assert scratch_databases(site) == []
    assert content(site.db) == live
    assert occ_since(site, mark) == []
    assert_nothing_left(bed)


def test_a_stream_without_the_nextcloud_tables_fails_the_drill(make_site, bed):
    site = make_site("mysql")           # the sample database has no oc_users, oc_appconfig, ...
    assert_ok(site.backup("backup-nextcloud"))

    _, drill = run_drill(bed.bareos)

    assert drill.status == "E", drill
    assert "test restore lacks the tables oc_appconfig, oc_storages, oc_users" in drill.log, drill
    assert scratch_databases(site) == []
    assert not list(bed.state.rglob("database.sql"))


def test_a_damaged_stream_fails_the_drill(make_site, bed):
    site = make_site("sqlite")
    backup = site.backup("backup-nextcloud")
    assert_ok(backup)
    corrupt_stream(bed.bareos.volumes(backup.job_id))

    _, drill = run_drill(bed.bareos)

    assert not drill.ok and drill.status in "Ef", drill
    assert not list(bed.state.rglob("database.sql"))
