"""The weekly restore drill: the Admin job drill-nextcloud finds the newest
database stream of whichever Nextcloud FileSet backed it up, has
restore-drill-nextcloud load it into a throwaway database beside the live one
(created with the server's administrative account: Nextcloud's own user has
no grant beyond its database), waits for it and ends with its verdict: T only
for an intact stream that loads, non-T otherwise, the reason in its log.
Cancelling the Admin job cancels the drill job it started."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from .test_failures import corrupt_stream, held_mid_dump, wait_until_blocked
from .test_jobs import assert_nothing_left, assert_ok, content, occ_since


SQLITE_TABLES = ("CREATE TABLE oc_appconfig (appid TEXT, configkey TEXT, configvalue TEXT);"
                 "CREATE TABLE oc_users (uid TEXT PRIMARY KEY); INSERT INTO oc_users VALUES ('alice');"
                 "CREATE TABLE oc_storages (numeric_id INT PRIMARY KEY, id TEXT);")


def run_drill(bareos, timeout: float = 300):
    """Run the Admin job; it ends after the restore job it started."""
    before = latest(bareos, "restore-drill-nextcloud")
    admin = bareos.run_job("run job=drill-nextcloud", timeout)
    drill = latest(bareos, "restore-drill-nextcloud")
    assert drill != before, f"the Admin job started no drill:\n{admin}"
    return admin, bareos.job(drill)


def latest(bareos, name: str) -> int | None:
    rows = bareos.query(f"SELECT max(JobId) FROM Job WHERE Name = '{name}'")
    return int(rows[0][0]) if rows and rows[0][0] else None


def scratch_databases(site) -> list[str]:
    if site.db.kind == "mysql":
        names = site.db.server.sql("SHOW DATABASES").split()
    else:
        names = site.db.server.sql("SELECT datname FROM pg_database").split()
    return [name for name in names if name.startswith("dbpipe_verify_")]


def nextcloud_tables(site) -> None:
    if site.db.kind == "sqlite":
        import sqlite3
        with sqlite3.connect(site.db.path) as conn:
            conn.executescript(SQLITE_TABLES)
        conn.close()
        return
    site.db.sql("CREATE TABLE oc_appconfig (appid VARCHAR(32), configkey VARCHAR(64), configvalue TEXT);"
                "CREATE TABLE oc_users (uid VARCHAR(64) PRIMARY KEY); INSERT INTO oc_users VALUES ('alice');"
                "CREATE TABLE oc_storages (numeric_id INT PRIMARY KEY, id VARCHAR(64))")
    if site.db.kind == "pgsql":     # Nextcloud's user owns its tables
        user = site.install.config()["dbuser"]
        site.db.sql("".join(f'ALTER TABLE {table} OWNER TO "{user}";'
                            for table in ("oc_appconfig", "oc_users", "oc_storages")))


def only_its_own_database(site) -> None:
    """Nextcloud's user as its installer leaves it: all rights on its own database, nothing else."""
    user = site.install.config()["dbuser"]
    if site.db.kind == "mysql":
        for host in ("%", "localhost"):
            site.db.server.sql(f"REVOKE ALL PRIVILEGES ON *.* FROM '{user}'@'{host}'")
        grants = site.db.server.sql(f"SHOW GRANTS FOR '{user}'@'localhost'")
        assert "ON *.*" not in grants.replace("GRANT USAGE ON *.*", ""), grants
    else:
        assert site.db.server.sql(f"SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = '{user}'") == "f"


def test_the_drill_proves_the_newest_stream_loads_and_touches_nothing_live(make_site, bed):
    site = make_site("mysql")
    nextcloud_tables(site)
    only_its_own_database(site)
    assert_ok(site.backup("backup-nextcloud"))
    site.db.change()
    live, mark = content(site.db), len(site.install.commands())

    admin, drill = run_drill(bed.bareos)

    assert_ok(drill)
    assert_ok(admin)
    assert "ClientAfterJob: verdict:   intact, test restore passed" in drill.log, drill
    assert "oc_users=1" in drill.log.replace("\n", "")
    assert f"drill: JobId {drill.job_id} ended T: verdict:   intact, test restore passed" in admin.log, admin
    assert not list(bed.state.rglob("database.sql")), "the drill's copy must be removed"
    assert scratch_databases(site) == []
    assert content(site.db) == live
    assert occ_since(site, mark) == []
    assert_nothing_left(bed)


def test_postgresql_needs_no_createdb_for_the_drill(make_site, bed):
    site = make_site("pgsql")
    nextcloud_tables(site)
    only_its_own_database(site)
    assert_ok(site.backup("backup-nextcloud"))

    admin, drill = run_drill(bed.bareos)

    assert_ok(drill)
    assert_ok(admin)
    assert "verdict:   intact, test restore passed" in admin.log, admin
    assert scratch_databases(site) == []


def test_a_dump_file_backup_is_drilled_too(make_site, bed):
    """The newest backup came from nextcloud-dumpfile: the drill follows it."""
    site = make_site("sqlite")
    nextcloud_tables(site)
    assert_ok(site.backup("backup-nextcloud-dumpfile"))

    admin, drill = run_drill(bed.bareos)

    assert_ok(drill)
    assert_ok(admin)
    assert "(FileSet nextcloud-dumpfile)" in admin.log, admin
    assert "verdict:   intact, test restore passed" in admin.log, admin
    assert not list(bed.state.rglob("*.sql"))


def test_a_stream_without_the_nextcloud_tables_fails_the_drill_and_the_admin_job(make_site, bed):
    site = make_site("mysql")           # the sample database has no oc_users, oc_appconfig, ...
    only_its_own_database(site)
    assert_ok(site.backup("backup-nextcloud"))

    admin, drill = run_drill(bed.bareos)

    assert drill.status == "E", drill
    assert "test restore lacks the tables oc_appconfig, oc_storages, oc_users" in drill.log, drill
    assert admin.status != "T", admin
    assert f"drill: JobId {drill.job_id} ended E: " in admin.log, admin
    assert scratch_databases(site) == []
    assert not list(bed.state.rglob("database.sql"))


def test_a_damaged_volume_fails_the_drill_and_the_admin_job(make_site, bed):
    site = make_site("sqlite")
    backup = site.backup("backup-nextcloud")
    assert_ok(backup)
    corrupt_stream(bed.bareos.volumes(backup.job_id))

    admin, drill = run_drill(bed.bareos)

    assert not drill.ok and drill.status in "Ef", drill
    assert admin.status != "T", admin
    assert f"drill: JobId {drill.job_id} ended {drill.status}: " in admin.log, admin
    assert not list(bed.state.rglob("database.sql"))


def drills_running() -> list[str]:
    """Command lines of dbpipe-drill processes (the director's RunScripts)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"/dbpipe-drill") for arg in argv[:2]):
            found.append(b" ".join(argv).decode())
    return found


def started_drill(bareos, before: int | None, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while (drill := latest(bareos, "restore-drill-nextcloud")) == before:
        assert time.monotonic() < deadline, "the Admin job started no drill"
        time.sleep(0.3)
    return drill


def test_cancelling_the_admin_job_cancels_the_drill_job_it_started(make_site, bed):
    """Bareos sends the drill no signal on `cancel` (it runs the After scripts
    at once): the After script stops the drill, which cancels its restore job.
    The restore job is held in the director's queue by a backup of the same
    client that a table lock keeps running (the client runs one job at a time)."""
    site = make_site("mysql")
    nextcloud_tables(site)
    assert_ok(site.backup("backup-nextcloud"))
    with held_mid_dump(site.db) as lock:
        busy = bed.bareos.start_job("run job=backup-nextcloud level=Full")
        wait_until_blocked(site.db)
        before = latest(bed.bareos, "restore-drill-nextcloud")
        admin_id = bed.bareos.start_job("run job=drill-nextcloud")
        drill_id = started_drill(bed.bareos, before)
        assert bed.bareos.status(drill_id) not in "TEfA", "the drill job must still be waiting"

        cancelled = bed.bareos.cancel(admin_id)
        admin = bed.bareos.wait(admin_id, timeout=120)
        drill = bed.bareos.wait(drill_id, timeout=120)
        assert drills_running() == [], cancelled
        lock.close()
        assert_ok(bed.bareos.wait(busy, timeout=300))

    assert admin.status == "A", admin
    assert drill.status == "A", drill
    assert f"drill: Admin job {admin_id} cancelled: stopping dbpipe-drill" in admin.log, admin
    assert (f"drill: cancelled (SIGTERM): restore-drill-nextcloud JobId {drill_id} cancelled, ended A"
            in admin.log), admin
    assert "dbpipe-drill: cancelled by SIGTERM" in admin.log, admin
    assert "No Jobs running" in bed.bareos.console("status director")
    assert scratch_databases(site) == []
    assert not list(bed.state.rglob("database.sql"))
    assert_nothing_left(bed)


@contextlib.contextmanager
def read_locked(server):
    """The whole database server under a global read lock: the drill job's
    test restore waits to create its scratch database, the job running."""
    import pymysql
    conn = pymysql.connect(unix_socket=server.socket, user="root")
    conn.cursor().execute("FLUSH TABLES WITH READ LOCK")
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def wait_for_the_scratch_database(server, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not int(server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE "
                             "'Waiting for%' AND INFO LIKE '%dbpipe_verify_%'").strip() or 0):
        assert time.monotonic() < deadline, "the drill's test restore never waited for the lock"
        time.sleep(0.2)


def test_cancelling_the_admin_job_while_its_drill_job_runs(make_site, bed):
    """The drill job is running (its test restore waits for a global read lock
    on the database server): cancelled, it ends A once that step returns, and
    nothing of the drill is left."""
    site = make_site("mysql")
    nextcloud_tables(site)
    assert_ok(site.backup("backup-nextcloud"))
    with read_locked(site.db.server) as lock:
        before = latest(bed.bareos, "restore-drill-nextcloud")
        admin_id = bed.bareos.start_job("run job=drill-nextcloud")
        drill_id = started_drill(bed.bareos, before)
        wait_for_the_scratch_database(site.db.server)
        assert bed.bareos.status(drill_id) == "R"
        threading.Timer(5, lock.close).start()     # the cancel waits for the drill, which waits for its job

        bed.bareos.cancel(admin_id)
        admin = bed.bareos.wait(admin_id, timeout=180)
        drill = bed.bareos.wait(drill_id, timeout=180)
        bed.bareos.wait_client_idle()

    assert drill.status == "A", drill
    assert admin.status == "A", admin
    assert (f"drill: cancelled (SIGTERM): restore-drill-nextcloud JobId {drill_id} cancelled, ended A"
            in admin.log), admin
    assert drills_running() == []
    assert scratch_databases(site) == []
    assert not list(bed.state.rglob("database.sql"))
    assert_nothing_left(bed)
