"""Failures caused for real under real Bareos: a dump the server refuses, a
server stopped mid-dump, a job cancelled from bconsole while the reader
streams, a damaged volume.  Each: the job does not end T, the job log says
why in our own words, maintenance mode ends as it started, the live database
is unchanged and nothing partial can be restored."""

from __future__ import annotations

import contextlib
import re
import time

import pytest
from dbpipe.bareos import exit_code_of

from testkit import servers
from ..conftest import SPECS, make_mysql
from .conftest import PSEUDO_FILE
from .test_jobs import assert_nothing_left, content, occ_since, profile_values

HOLD_TABLE = "oc_zz_held"     # dumped last (alphabetical): the dump blocks mid-stream on it


def joblog_lines(job) -> list[str]:
    """The job log's messages without Bareos' time and daemon prefix."""
    return [re.sub(r"^.*?JobId \d+: ", "", line).strip() for line in job.log.splitlines()]


def assert_in_joblog(job, line: str) -> None:
    assert f"ClientAfterJob: {line}" in joblog_lines(job), f"{line!r} not in the job log:\n{job.log}"


def attempt_restore(site, job_id: int, job: str, where: str = "/"):
    """A restore of a failed backup: None when Bareos has nothing to restore."""
    try:
        return site.bareos.restore(job_id, job, where=where, file=PSEUDO_FILE)
    except RuntimeError as exc:
        assert "no job started" in str(exc), exc
        return None


@contextlib.contextmanager
def held_mid_dump(db):
    """A table whose rows the dump tool cannot read while we hold a write lock on it:
    mariadb-dump has streamed every table before it and waits, mid-stream."""
    import pymysql
    db.sql(f"CREATE TABLE {HOLD_TABLE} (id INT PRIMARY KEY, v TEXT); "
           f"INSERT INTO {HOLD_TABLE} SELECT seq, REPEAT('x', 100) FROM seq_1_to_1000")
    conn = pymysql.connect(unix_socket=db.server.socket, user="root", database=db.name)
    conn.cursor().execute(f"LOCK TABLES {HOLD_TABLE} WRITE")
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def waiting_for_the_held_table(db) -> int:
    """Sessions waiting for the held table: the dump tool, stuck mid-stream."""
    return int(db.server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                             f"WHERE INFO LIKE '%{HOLD_TABLE}%' AND STATE LIKE 'Waiting%'").strip() or 0)


def wait_until_blocked(db, timeout: float = 120) -> None:
    """Until the dump tool waits for the held table (Before hook and settle are done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if waiting_for_the_held_table(db):
            return
        time.sleep(0.2)
    raise AssertionError("the dump never reached the held table")


def test_a_dump_the_server_refuses_fails_the_job_with_our_reason_in_the_job_log(make_site, bed):
    site = make_site("mysql")
    user = site.install.config()["dbuser"]
    for host in ("localhost", "%"):
        site.db.server.sql(f"ALTER USER '{user}'@'{host}' IDENTIFIED BY 'not-the-password'")
    live = content(site.db)

    backup = site.backup("backup-nextcloud")

    assert backup.status == "f", backup
    assert_in_joblog(backup, f"dbpipe-dump: access denied for user '{user}'@'localhost'")
    assert "Error closing stream for pseudo file /NEXTCLOUD/database.sql: 268435533" in backup.log
    assert not site.install.maintenance
    restore = attempt_restore(site, backup.job_id, "restore-dbpipe-files", where=str(bed.base / "nothing"))
    assert restore is None or not restore.ok, restore
    assert not (bed.base / "nothing" / PSEUDO_FILE.lstrip("/")).exists()
    assert content(site.db) == live
    assert_nothing_left(bed)


def test_a_plain_database_job_shows_the_reason_too(bed, server_pool, tmp_path):
    db = make_mysql(server_pool.get("mysql", SPECS["mysql"][0]), tmp_path)
    values = profile_values(db)
    values["user"] = "nobody_here"
    profile = bed.profiles / "mydb.conf"
    profile.write_text("[database]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    profile.chmod(0o600)

    backup = bed.bareos.backup("backup-database-mydb")

    assert backup.status == "f", backup
    assert_in_joblog(backup, "dbpipe-dump: access denied for user 'nobody_here'@'localhost'")
    assert_nothing_left(bed)


def test_a_failing_writer_says_why_in_the_restore_job_log_and_changes_nothing(make_site, bed):
    site = make_site("pgsql")
    backup = site.backup("backup-nextcloud")
    assert backup.ok, backup
    site.db.change()
    live, user = content(site.db), site.install.config()["dbuser"]
    site.db.server.sql(f"ALTER ROLE \"{user}\" PASSWORD 'not-the-password'")

    restore = site.restore(backup.job_id, "restore-nextcloud")

    assert not restore.ok and restore.status in "Ef", restore
    assert_in_joblog(restore, f'dbpipe-restore: password authentication failed for user "{user}"')
    assert "nextcloud-after-restore" not in restore.log
    assert content(site.db) == live
    assert_nothing_left(bed)


@pytest.fixture
def own_mariadb():
    """A MariaDB server of this test's own: it gets stopped."""
    server = servers.local_mariadb()
    yield server
    servers.destroy(server)


def test_server_stopped_mid_dump(make_site, bed, own_mariadb):
    site = make_site("mysql", own_mariadb)
    with held_mid_dump(site.db):
        job_id = bed.bareos.start_job("run job=backup-nextcloud level=Full")
        wait_until_blocked(site.db)
        own_mariadb.stop()
        backup = bed.bareos.wait(job_id)
    own_mariadb.start()

    assert backup.status == "f", backup
    assert any(line.startswith("ClientAfterJob: dbpipe-dump: ") for line in joblog_lines(backup)), backup
    assert bpipe_exit_code(backup) == 69, backup
    assert not site.install.maintenance
    assert "maintenance mode: off" in backup.log
    restore = attempt_restore(site, job_id, "restore-dbpipe-files", where=str(bed.base / "partial"))
    assert restore is None or not restore.ok, restore
    assert not (bed.base / "partial" / PSEUDO_FILE.lstrip("/")).exists()
    assert_nothing_left(bed)


def test_a_job_cancelled_while_the_reader_streams(make_site, bed):
    """Cancelled while the dump tool is stuck on a held table lock.  bareos-fd
    (25.1) stays blocked reading the pipe after a cancel and closes it only
    once data comes: the job ends after the tool's next write, which meets the
    closed pipe - then quickly, with the tool gone (docs/bareos.md)."""
    site = make_site("mysql")
    with held_mid_dump(site.db) as lock:
        job_id = bed.bareos.start_job("run job=backup-nextcloud level=Full")
        wait_until_blocked(site.db)
        bed.bareos.cancel(job_id)
        time.sleep(3)
        lock.close()                               # the dump tool writes again, into the closed pipe
        released = time.monotonic()
        backup = bed.bareos.wait(job_id, timeout=90)
        bed.bareos.wait_client_idle(timeout=90)    # the fd runs ClientAfterJob after the reader ended
        took = time.monotonic() - released
    live = content(site.db)

    assert backup.status == "A", backup
    assert took < 60 and waiting_for_the_held_table(site.db) == 0, took
    assert not site.install.maintenance, backup
    calls = site.install.commands()
    assert calls.index("maintenance:mode --on") < calls.index("maintenance:mode --off")
    mark = len(site.install.commands())
    restore = attempt_restore(site, job_id, "restore-nextcloud")
    assert restore is None or not restore.ok, restore
    assert content(site.db) == live
    assert occ_since(site, mark) == []
    assert_nothing_left(bed)


@pytest.mark.parametrize("damage", ["first block", "last block"])
def test_a_damaged_volume_is_refused_and_the_live_database_stays_byte_for_byte(damage, make_site, bed):
    """First block: the storage daemon restores nothing; Nextcloud stays as it was.
    Last block: the files come back, the database stream does not (the writer
    sees it end without its trailer): the live database is untouched and
    Nextcloud stays closed (the restored config.php), saying so."""
    site = make_site("pgsql")
    backup = site.backup("backup-nextcloud")
    assert backup.ok, backup
    site.db.change()
    live, mark = content(site.db), len(site.install.commands())
    corrupt(site.bareos.volumes(backup.job_id), at_end=damage == "last block")

    restore = site.restore(backup.job_id, "restore-nextcloud")

    assert not restore.ok and restore.status in "Ef", restore
    assert content(site.db) == live
    assert [c for c in occ_since(site, mark) if not c.startswith("status")] == [], restore.log
    if damage == "first block":     # bareos-fd still ran the After script: nothing came back, it changes nothing
        assert (f"Bareos job {restore.job_id} restored no database stream, the database is left as it is; "
                "user files restored: none") in restore.log, restore.log
        assert not site.install.maintenance
    else:                           # a fatal writer error: no After script, the restored config.php
        assert "ClientAfterJob: dbpipe-restore: incomplete stream: no dbpipe trailer" in restore.log
        assert site.install.maintenance, "a half-finished restore must keep Nextcloud closed"
    assert_nothing_left(bed)


# --- helpers -----------------------------------------------------------------------------

def bpipe_exit_code(job) -> int | None:
    """bpipe logs a failed close as 0x10000000 | exit code (bareos.exit_code_of)."""
    match = re.search(r"Error closing stream for pseudo file \S+: (\d+)", job.log)
    return exit_code_of(int(match.group(1))) if match else None


def corrupt_stream(parts) -> None:
    """Flip one byte of the SQL inside this job's part of its volume."""
    for volume, first, last in parts:
        data = bytearray(volume.read_bytes())
        offset = data.find(b"CREATE TABLE", first, last + 1)
        if offset >= 0:
            data[offset + 3] ^= 0x01
            volume.write_bytes(bytes(data))
            return
    raise AssertionError(f"no SQL found in {parts}")


def corrupt(parts, at_end: bool) -> None:
    """Flip a byte in the job's first block (files and the stream's start), or
    near the end of its data (the stream's tail)."""
    if not at_end:
        return corrupt_stream(parts)
    volume, _, last = parts[-1]
    data = bytearray(volume.read_bytes())
    data[min(last, len(data)) - 100] ^= 0x01
    volume.write_bytes(bytes(data))
