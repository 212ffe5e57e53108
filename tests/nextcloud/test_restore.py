"""nextcloud-after-restore: the whole backup -> restore cycle against real
MariaDB, PostgreSQL and SQLite installations, and its failure paths."""

from __future__ import annotations

import os
import re
import shlex
import signal
import time

import pytest

from ..helpers import dbpipe, last_line
from testkit import installs
from .conftest import lines, text


BEFORE, AFTER, RESTORE = "nextcloud-before-backup", "nextcloud-after-backup", "nextcloud-after-restore"
MARKER = "dbpipe.maintenance"


def content(db) -> bytes:
    """What a restore must reproduce (the mysql dump header names host and database)."""
    data = db.content() if db.kind == "sqlite" else db.fingerprint()
    return re.sub(rb"^-- (Host: |Dumping (events|routines) for database ).*$", b"", data,
                  flags=re.MULTILINE)


def index(commands: list[str], prefix: str) -> int:
    return next(i for i, command in enumerate(commands) if command.startswith(prefix))


def back_up(install, run_hook, dump) -> bytes:
    """The backup job: before hook, Bareos saving config/ (in maintenance
    mode), after hook.  Returns the saved config.php."""
    assert run_hook(BEFORE, install, "--dump-to", dump).returncode == 0
    saved = install.config_file.read_bytes()
    assert run_hook(AFTER, install, "--dump-to", dump, "--keep-dump").returncode == 0
    return saved


@pytest.fixture(params=["sqlite", "mysql", "pgsql"])
def any_install(request, occ_variant):
    return request.getfixturevalue("plain_install" if request.param == "sqlite"
                                   else f"{request.param}_install")


def test_full_cycle_restores_the_dump_and_brings_nextcloud_back(any_install, run_hook, tmp_path,
                                                                state_dir, occ_variant):
    install, dump = any_install, tmp_path / "nextcloud.sql"
    saved_config = back_up(install, run_hook, dump)
    expected = content(install.database)
    install.database.change()
    assert content(install.database) != expected
    install.config_file.write_bytes(saved_config)  # the restore job brought config/ back
    assert install.maintenance and install.config()[MARKER] is True
    first = len(install.calls())

    result = run_hook(RESTORE, install, "--dump-from", dump, "--scan-user", "alice", "--drop-old")

    assert result.returncode == 0, text(result)
    assert content(install.database) == expected
    config = install.config()
    assert config["maintenance"] is False and MARKER not in config
    assert re.fullmatch(r"[0-9a-f]{32}", config["data-fingerprint"])
    assert f"data fingerprint: updated to {config['data-fingerprint']}" in lines(result)
    calls, commands = install.calls()[first:], install.commands()[first:]
    assert calls[index(commands, "maintenance:data-fingerprint")]["maintenance"] is True
    assert index(commands, "maintenance:mode --off") < index(commands, "files:scan")
    assert install.scanned() == ["alice"]
    version = installs.VARIANT_VERSIONS[occ_variant]
    assert lines(result)[-2:] == [f"occ status: installed, version {version}, maintenance off", "done"]
    assert list(state_dir.glob("*.json")) == []


def test_bad_dump_is_refused_and_nothing_changes(pgsql_install, run_hook, tmp_path, state_dir, env):
    install, dump = pgsql_install, tmp_path / "nextcloud.sql"
    values = install.file_config()
    values["dbhost"] = f"127.0.0.1:{install.database.server.port}"  # TCP this time
    install.config_file.write_text(installs.php_config(values))
    with open(dump, "wb") as out:
        assert dbpipe("dbpipe-dump", "--nextcloud", install.root, stdout=out, env=env).returncode == 0
    install.database.change()
    live = install.database.fingerprint()
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])  # truncated, e.g. an interrupted restore
    first = len(install.calls())

    result = run_hook(RESTORE, install, "--dump-from", dump, "--scan-all")

    assert result.returncode == 65, text(result)
    assert install.database.fingerprint() == live
    config = install.config()
    assert config["maintenance"] is False and config["data-fingerprint"] == ""
    assert not [c for c in install.commands()[first:] if c.startswith(("maintenance:data", "files:"))]
    assert install.scanned() == []
    assert list(state_dir.glob("*.json")) == []


def test_fingerprint_failure_puts_maintenance_back_and_skips_the_scan(plain_install, run_hook):
    plain_install.fail({"match": "maintenance:data-fingerprint", "message": "Disk quota exceeded"})

    result = run_hook(RESTORE, plain_install, "--scan-all")

    assert result.returncode == 69
    assert "occ maintenance:data-fingerprint failed (exit 1): Disk quota exceeded" in text(result)
    assert not plain_install.maintenance
    assert plain_install.scanned() == []


def last_error(result) -> str:
    return [line for line in result.stderr.decode().splitlines() if line.strip()][-1]


@pytest.mark.parametrize("engine", ["sqlite", "mysql"])
def test_fingerprint_failing_after_the_database_was_replaced_keeps_nextcloud_closed(
        engine, occ_variant, request, run_hook, tmp_path, state_dir, env):
    """The seen case: the database is restored, then data-fingerprint fails.
    Maintenance mode stays on (sync clients must not meet restored data under
    the old fingerprint), one line names the command that finishes the job,
    no backup hook can end it, and the named command does."""
    install = request.getfixturevalue("plain_install" if engine == "sqlite" else "mysql_install")
    dump = tmp_path / "nextcloud.sql"
    back_up(install, run_hook, dump)
    expected = content(install.database)
    install.database.change()
    install.fail({"match": "maintenance:data-fingerprint", "message": "Disk quota exceeded"})

    result = run_hook(RESTORE, install, "--dump-from", dump, "--scan-user", "alice")

    finish = f"nextcloud-after-restore {install.root} --state-dir {state_dir} --scan-user alice"
    assert result.returncode == 69, text(result)
    assert last_error(result) == (
        "nextcloud-after-restore: occ maintenance:data-fingerprint failed (exit 1): Disk quota exceeded; "
        f"the restore is half-finished, so Nextcloud stays in maintenance mode; finish it with: {finish}")
    assert "failed after the restore changed data: maintenance mode stays on" in lines(result)
    assert install.maintenance and install.config()[MARKER] is True
    assert install.config()["data-fingerprint"] == ""
    assert content(install.database) == expected          # the restored data, as restored
    assert install.scanned() == []
    if engine == "sqlite":                                 # leftovers: only the kept old copy
        names = os.listdir(os.path.dirname(install.database.path))
        assert [n for n in names if ".dbpipe-" in n and ".dbpipe-old-" not in n] == []
    else:
        assert [n for n in install.database.server.sql("SHOW DATABASES").split()
                if n.startswith(install.database.name) and "__dbpipe_new_" in n] == []

    for hook in (BEFORE, AFTER):                           # a backup job must not open it
        refused = run_hook(hook, install)
        assert refused.returncode == 75, text(refused)
        assert f"half-finished and Nextcloud stays in maintenance mode; finish it first with: {finish}" \
            in last_error(refused)
    assert install.maintenance

    install.fail()
    argv = shlex.split(finish)
    done = dbpipe(argv[0], *argv[1:], "--settle", "0", env=env)

    assert done.returncode == 0, text(done)
    config = install.config()
    assert config["maintenance"] is False and MARKER not in config
    assert re.fullmatch(r"[0-9a-f]{32}", config["data-fingerprint"])
    assert install.scanned() == ["alice"] and list(state_dir.glob("*.json")) == []
    assert content(install.database) == expected


def test_a_restored_config_keeps_nextcloud_closed_when_the_dump_is_refused(plain_install, run_hook,
                                                                           tmp_path, state_dir):
    """config/ came back from the backup (maintenance on, our marker): data has
    changed before the hook ran, so even a refused dump keeps it closed."""
    install, dump = plain_install, tmp_path / "nextcloud.sql"
    saved_config = back_up(install, run_hook, dump)
    install.database.change()
    live = install.database.fingerprint()
    install.config_file.write_bytes(saved_config)
    dump.write_bytes(dump.read_bytes()[:-200])             # truncated on the way back

    result = run_hook(RESTORE, install, "--dump-from", dump)

    assert result.returncode == 65, text(result)
    assert last_error(result).endswith(
        "the restore is half-finished, so Nextcloud stays in maintenance mode; finish it with: "
        f"nextcloud-after-restore {install.root} --state-dir {state_dir} --dump-from {dump}")
    assert install.maintenance and install.database.fingerprint() == live
    assert install.config()["data-fingerprint"] == ""


def test_sigterm_during_restore_puts_maintenance_back(plain_install, start_hook):
    hook = start_hook(RESTORE, plain_install, "--scan-all", settle="60")
    hook.wait_for("waiting 60 s")
    hook.proc.send_signal(signal.SIGTERM)
    assert hook.finish()[0] == 128 + signal.SIGTERM
    config = plain_install.config()
    assert config["maintenance"] is False and config["data-fingerprint"] == ""


def test_an_admins_maintenance_mode_stays_on_and_the_scan_is_refused_upfront(plain_install, run_hook):
    plain_install.set_maintenance(True)

    refused = run_hook(RESTORE, plain_install, "--scan-user", "alice")
    assert refused.returncode == 64
    assert "files:scan needs it off" in text(refused)
    assert plain_install.config()["data-fingerprint"] == ""

    result = run_hook(RESTORE, plain_install)
    assert result.returncode == 0, text(result)
    assert plain_install.maintenance and plain_install.config()["data-fingerprint"]
    assert "maintenance mode: was on before, stays on" in lines(result)


def test_unknown_scan_user_fails_after_maintenance_is_off(plain_install, run_hook):
    result = run_hook(RESTORE, plain_install, "--scan-user", "alice", "--scan-user", "carol")

    assert result.returncode == 66
    assert "occ files:scan: Unknown user 2 carol" in text(result)
    assert not plain_install.maintenance
    assert plain_install.scanned() == ["alice"]


def test_database_older_than_the_code_is_reported(nc_root, run_hook, occ_variant):
    db, values = installs.sqlite_database(nc_root)
    install = installs.build(nc_root, {**values, "version": "28.0.9.2"}, variant=occ_variant)

    result = run_hook(RESTORE, install, "--scan-all")

    assert result.returncode == 78
    assert ("needs 'occ upgrade': the restored database and the installed code are not from the same "
            "version; files:scan not run (occ offers no app commands until then)") in last_error(result)
    assert not install.maintenance and install.scanned() == []   # real occ loads no apps then


@pytest.mark.parametrize("occ_variant", ["pr56754"])
def test_where_occ_refuses_php_writes_config_php_and_refuses_a_read_only_one(nc_root, run_hook,
                                                                            occ_variant):
    """The next occ has no data-fingerprint in maintenance mode: PHP writes it,
    and like Nextcloud refuses a read-only config (an admin's maintenance
    mode, which stays on)."""
    _, values = installs.sqlite_database(nc_root)
    install = installs.build(nc_root, {**values, "maintenance": True}, variant=occ_variant)

    result = run_hook(RESTORE, install)

    assert result.returncode == 0, text(result)
    assert re.fullmatch(r"[0-9a-f]{32}", install.config()["data-fingerprint"])
    assert "maintenance:data-fingerprint" in install.commands()   # refused, then PHP
    assert oct(install.config_file.stat().st_mode & 0o777) == "0o640"

    values = install.file_config()
    install.config_file.write_text(installs.php_config({**values, "config_is_read_only": True,
                                                        "data-fingerprint": ""}))
    result = run_hook(RESTORE, install)

    assert result.returncode == 69, text(result)
    assert 'Config is set to be read-only via option "config_is_read_only".' in last_error(result)
    assert install.maintenance and install.config()["data-fingerprint"] == ""


@pytest.mark.parametrize("writer", ["exit 65", "killed", "never ran", "unreadable record"])
def test_after_a_failed_bpipe_writer_the_hook_changes_nothing(writer, plain_install, run_hook, env,
                                                             tmp_path, occ_variant):
    """restore-nextcloud's After script runs by bareos-fd's own status, which a
    failing writer does not always spoil: --bareos-job %i makes it check."""
    from dbpipe.bareos import JobLog
    install, dump = plain_install, tmp_path / "nextcloud.sql"
    saved = back_up(install, run_hook, dump)
    install.config_file.write_bytes(saved)       # config/ came back from the backup
    record = JobLog("31", str(tmp_path / "state-root" / "joblog"))
    if writer == "unreadable record":            # the record directory is not a directory
        (tmp_path / "state-root").mkdir()
        (tmp_path / "state-root" / "joblog").write_text("")
    elif writer != "never ran":
        record.append("dbpipe-restore 100 started", record.status_path)
    if writer == "exit 65":
        record.append("dbpipe-restore: stream checksum mismatch")
        record.append("dbpipe-restore 100 exit 65", record.status_path)
    mark = len(install.commands())

    result = run_hook(RESTORE, install, "--bareos-job", "31",
                      env={**env, "DBPIPE_STATE_DIR": str(tmp_path / "state-root")})

    assert result.returncode == 65, text(result)
    said = {"exit 65": "failed (exit 65: stream checksum mismatch)", "killed": "failed (did not finish)",
            "never ran": "did not run", "unreadable record": ""}[writer]
    if said:
        assert f"the database restore of Bareos job 31 {said}" in last_line(result)
    else:
        assert last_line(result).endswith(f"cannot read the record of Bareos job 31 in "
                                          f"{tmp_path / 'state-root' / 'joblog'}: Not a directory")
    assert install.commands()[mark:] == [] and install.maintenance


def test_after_a_good_bpipe_writer_the_hook_finishes_the_restore(plain_install, run_hook, env, tmp_path):
    from dbpipe.bareos import JobLog
    install, dump = plain_install, tmp_path / "nextcloud.sql"
    install.config_file.write_bytes(back_up(install, run_hook, dump))
    record = JobLog("32", str(tmp_path / "state-root" / "joblog"))
    record.append("dbpipe-restore 100 started", record.status_path)
    record.append("dbpipe-restore 100 exit 0", record.status_path)

    result = run_hook(RESTORE, install, "--bareos-job", "32",
                      env={**env, "DBPIPE_STATE_DIR": str(tmp_path / "state-root")})

    assert result.returncode == 0, text(result)
    assert not install.maintenance


def test_sigterm_during_the_replace_mode_fallback_is_a_cancel(nc_root, server_pool, occ_variant, run_hook,
                                                              start_hook, tmp_path, state_dir):
    """An account that may not create databases gets replace mode; a SIGTERM
    while it loads puts the previous content back and is a cancel (143), not
    a damaged dump (65) - an admin must not throw away a good backup."""
    from ..integration.kit import add_big_table
    from .conftest import _install

    server = server_pool.get("mysql", "local")
    db, values = installs.mysql_database(server)
    for host in ("%", "localhost"):
        server.sql(f"REVOKE ALL PRIVILEGES ON *.* FROM '{values['dbuser']}'@'{host}'")
    definer = f"`{values['dbuser']}`@`localhost`"    # as when Nextcloud made them: replace mode can put them back
    db.sql(f"CREATE OR REPLACE DEFINER={definer} VIEW oc_big_files AS "
           "SELECT fileid, name FROM oc_filecache WHERE size > 50000;"
           "DROP TRIGGER oc_filecache_etag;"
           f"CREATE DEFINER={definer} TRIGGER oc_filecache_etag BEFORE INSERT ON oc_filecache "
           "FOR EACH ROW SET NEW.etag = COALESCE(NEW.etag, MD5(NEW.path))")
    add_big_table(db, 40_000)
    install = _install(nc_root, (db, values), occ_variant)
    dump = tmp_path / "nextcloud.sql"
    try:
        back_up(install, run_hook, dump)
        db.change()
        live = db.fingerprint()
        hook = start_hook(RESTORE, install, "--dump-from", dump)
        deadline = time.monotonic() + 120
        while server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                         f"WHERE DB = '{db.name}' AND INFO LIKE 'INSERT INTO `oc_big`%'") in ("", "0"):
            assert time.monotonic() < deadline and hook.proc.poll() is None, hook.lines
            time.sleep(0.02)
        hook.proc.send_signal(signal.SIGTERM)
        code, stderr = hook.finish(180)

        assert code == 143, stderr
        assert stderr.strip().splitlines()[-1] == \
            "nextcloud-after-restore: cancelled by SIGTERM; the previous content was put back"
        assert "restore mode: replace (account may not create databases)" in stderr
        assert db.fingerprint() == live
        assert not install.maintenance and list(state_dir.glob("*.json")) == []
    finally:
        server.drop_database(db.name)


def restore_job(tmp_path, job_id: str):
    """The record of a restore job whose Before script marked its start
    (dbpipe-joblog --begin %i) and whose bpipe writer never ran."""
    import time
    from dbpipe.bareos import JobLog
    time.sleep(0.05)      # after the kernel's timestamp tick of earlier writes
    record = JobLog(job_id, str(tmp_path / "state-root" / "joblog"))
    record.begin()
    return record


def test_files_restored_without_the_database_are_scanned_for_their_users(plain_install, run_hook, env,
                                                                        tmp_path):
    """One file or folder (no database stream selected): the database and
    maintenance mode stay as they are; files:scan for exactly their users."""
    install = plain_install
    data = install.root / "data"
    for user in installs.USERS:
        (data / user / "files" / "old.txt").write_text("before the restore\n")
    live, mark = content(install.database), len(install.commands())
    restore_job(tmp_path, "41")
    (data / "bob" / "files" / "Docs").mkdir()
    (data / "bob" / "files" / "Docs" / "report.txt").write_text("restored\n")   # what Bareos writes

    result = run_hook(RESTORE, install, "--bareos-job", "41",
                      env={**env, "DBPIPE_STATE_DIR": str(tmp_path / "state-root")})

    assert result.returncode == 0, text(result)
    assert install.scanned() == ["bob"]
    assert [c for c in install.commands()[mark:] if c.startswith(("maintenance:", "files:"))] == \
        ["files:scan -- bob"]
    assert not install.maintenance and content(install.database) == live
    assert "restored no database stream, the database is left as it is; user files restored: bob: 2 paths" \
        in text(result)


def test_dump_file_method_one_file_restore_leaves_the_database_alone(plain_install, run_hook, env, tmp_path):
    """restore-nextcloud-dumpfile with one file selected: neither the dump
    file nor config/ came back, so the old dump file beside it is not loaded;
    files:scan for the file's user."""
    install, dump = plain_install, tmp_path / "nextcloud.sql"
    back_up(install, run_hook, dump)                 # an older dump file stays beside
    install.database.change()
    live, mark = content(install.database), len(install.commands())
    restore_job(tmp_path, "44")
    (install.root / "data" / "alice" / "files" / "report.txt").write_text("restored\n")

    result = run_hook(RESTORE, install, "--dump-from", dump, "--bareos-job", "44",
                      env={**env, "DBPIPE_STATE_DIR": str(tmp_path / "state-root")})

    assert result.returncode == 0, text(result)
    assert install.scanned() == ["alice"]
    assert [c for c in install.commands()[mark:] if c.startswith(("maintenance:", "files:"))] == \
        ["files:scan -- alice"]
    assert not install.maintenance and content(install.database) == live


def test_dump_file_method_loads_a_dump_file_the_job_put_back(plain_install, run_hook, env, tmp_path):
    """The dump file came back in this job: the database is restored from it."""
    install, dump = plain_install, tmp_path / "nextcloud.sql"
    back_up(install, run_hook, dump)
    saved = content(install.database)
    install.database.change()
    restore_job(tmp_path, "45")
    dump.write_bytes(dump.read_bytes())              # what Bareos writes: a new ctime

    result = run_hook(RESTORE, install, "--dump-from", dump, "--bareos-job", "45",
                      env={**env, "DBPIPE_STATE_DIR": str(tmp_path / "state-root")})

    assert result.returncode == 0, text(result)
    assert content(install.database) == saved and not install.maintenance


def test_dump_file_method_config_without_its_dump_file_stays_an_error(plain_install, run_hook, env, tmp_path):
    """config/ came back but the dump file did not: Nextcloud stays as it is."""
    install, dump = plain_install, tmp_path / "nextcloud.sql"
    saved = back_up(install, run_hook, dump)
    restore_job(tmp_path, "46")
    install.config_file.write_bytes(saved)

    result = run_hook(RESTORE, install, "--dump-from", dump, "--bareos-job", "46",
                      env={**env, "DBPIPE_STATE_DIR": str(tmp_path / "state-root")})

    assert result.returncode == 65, text(result)
    assert f"Bareos job 46 restored config/ but not the dump file {dump}" in last_line(result)
    assert install.maintenance


def test_a_restored_config_without_the_database_stays_an_error(plain_install, run_hook, env, tmp_path):
    """The start mark is there but config/ came back: a whole backup whose
    database stream did not arrive, which must not reopen Nextcloud."""
    install, dump = plain_install, tmp_path / "nextcloud.sql"
    saved = back_up(install, run_hook, dump)
    restore_job(tmp_path, "42")
    install.config_file.write_bytes(saved)
    mark = len(install.commands())

    result = run_hook(RESTORE, install, "--bareos-job", "42",
                      env={**env, "DBPIPE_STATE_DIR": str(tmp_path / "state-root")})

    assert result.returncode == 65, text(result)
    assert "the database restore of Bareos job 42 did not run (no database stream restored)" in last_line(result)
    assert install.commands()[mark:] == [] and install.maintenance
