"""nextcloud-before-backup / nextcloud-after-backup: maintenance mode that
cannot get stuck.  Real hooks, the occ double run by php-cli as www-data,
real signals, real database servers."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import time

from ..helpers import chown_tree, dbpipe, id_without_account
from ..integration.test_mysql_lock_wait import holding_session, release
from testkit import installs
from .conftest import lines, text


BEFORE, AFTER = "nextcloud-before-backup", "nextcloud-after-backup"
MARKER = "dbpipe.maintenance"


def records(state_dir) -> list[str]:
    return sorted(p.name for p in state_dir.glob("*.json")) if state_dir.exists() else []


def assert_back_to_normal(install, state_dir):
    """Maintenance off, our marker gone, no record left behind."""
    config = install.config()
    assert config["maintenance"] is False
    assert MARKER not in config
    assert records(state_dir) == []


def test_before_then_after_switches_maintenance_on_and_off(plain_install, run_hook, state_dir, syslog):
    assert os.geteuid() == 0  # as Bareos runs client scripts
    result = run_hook(BEFORE, plain_install)

    assert result.returncode == 0, text(result)
    assert plain_install.maintenance
    assert plain_install.config()[MARKER] is True
    assert "maintenance mode: on (confirmed by occ status)" in lines(result)
    record = state_dir / records(state_dir)[0]
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700

    result = run_hook(AFTER, plain_install)

    assert result.returncode == 0, text(result)
    assert_back_to_normal(plain_install, state_dir)
    assert "maintenance mode: off" in lines(result)
    assert "maintenance mode: off" in syslog.text()
    assert result.stderr == b""  # step lines go to stdout only (Bareos merges both)
    # privilege drop: occ ran as the owner of config.php, never as root
    web = installs.web_account()
    assert {call["uid"] for call in plain_install.calls()} == {web.pw_uid}
    st = plain_install.config_file.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (web.pw_uid, 0o640)  # as rewritten by occ


def test_an_owner_without_passwd_entry_runs_occ_php_and_sqlite3(nc_root, run_hook, state_dir, env,
                                                                 occ_variant):
    """config.php and the SQLite file owned by a bare uid: discovery, the dump
    and every occ call run as that uid (before: exit 78, and 70 for sqlite)."""
    _, values = installs.sqlite_database(nc_root)
    install = installs.build(nc_root, values, variant=occ_variant)
    owner = id_without_account()
    chown_tree(nc_root, owner, owner)

    dumped = dbpipe("dbpipe-dump", "--nextcloud", nc_root, env=env)
    before = run_hook(BEFORE, install)
    on = install.maintenance
    after = run_hook(AFTER, install)

    assert dumped.returncode == 0, dumped.stderr.decode()
    assert before.returncode == 0 and on, text(before)
    assert after.returncode == 0, text(after)
    assert_back_to_normal(install, state_dir)
    assert {call["uid"] for call in install.calls()} == {owner}
    assert install.config_file.stat().st_uid == owner


def test_an_admins_maintenance_mode_stays_on(plain_install, run_hook, state_dir):
    plain_install.set_maintenance(True)
    admin_calls = len(plain_install.calls())

    before = run_hook(BEFORE, plain_install)
    after = run_hook(AFTER, plain_install)

    assert before.returncode == after.returncode == 0
    assert "maintenance mode: already on (an admin's, stays on)" in lines(before)
    assert "maintenance mode: was on before, stays on" in lines(after)
    assert plain_install.maintenance
    assert MARKER not in plain_install.config()
    ours = plain_install.commands()[admin_calls:]
    assert not [c for c in ours if c.startswith(("maintenance:mode", "config:system"))]
    assert records(state_dir) == []


def test_after_hook_alone_changes_nothing(plain_install, run_hook, state_dir):
    before = plain_install.config_file.read_bytes()

    result = run_hook(AFTER, plain_install, "--dump-to", state_dir.parent / "never-written.sql")

    assert result.returncode == 0, text(result)
    assert "nothing to put back: no record of nextcloud-before-backup" in lines(result)
    assert plain_install.config_file.read_bytes() == before
    assert not plain_install.maintenance


def test_dump_to_writes_a_verified_private_file_the_after_hook_removes(plain_install, run_hook, tmp_path):
    dump = tmp_path / "dumps" / "nextcloud.sql"

    result = run_hook(BEFORE, plain_install, "--dump-to", dump)

    assert result.returncode == 0, text(result)
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    assert any(line.startswith(f"database dump: {dump} (") for line in lines(result))
    assert dbpipe("dbpipe-verify", dump).returncode == 0

    result = run_hook(AFTER, plain_install, "--dump-to", dump)

    assert result.returncode == 0, text(result)
    assert not dump.exists()
    assert f"dump file {dump}: removed" in lines(result)


def test_a_file_that_is_not_a_dump_is_never_removed(plain_install, run_hook, tmp_path):
    dump = tmp_path / "nextcloud.sql"
    dump.write_text("precious, not a dump\n")

    result = run_hook(AFTER, plain_install, "--dump-to", dump)

    assert result.returncode == 64
    assert "is not a dbpipe dump; not removing it" in text(result)
    assert dump.read_text() == "precious, not a dump\n"


def test_dump_to_never_overwrites_a_file_that_is_not_a_dump_of_this_installation(plain_install, run_hook,
                                                                                   tmp_path, state_dir, syslog):
    notes = tmp_path / "notes.txt"
    notes.write_text("an admin's notes\n")

    result = run_hook(BEFORE, plain_install, "--dump-to", notes)

    assert result.returncode == 73, text(result)
    assert result.stderr.decode().splitlines()[-1] == (
        f"nextcloud-before-backup: --dump-to {notes} exists and is not a dbpipe dump of sqlite "
        f"{plain_install.database.path}: not overwriting it (move it away or choose another file)")
    assert notes.read_text() == "an admin's notes\n"
    assert [call["args"][0] for call in plain_install.calls()] == ["config:list"]    # read only
    assert_back_to_normal(plain_install, state_dir)
    result = run_hook(AFTER, plain_install, "--dump-to", notes)          # RunsOnFailure
    assert result.returncode == 64 and notes.read_text() == "an admin's notes\n"
    # a dump of this installation, left by an earlier run, is replaced
    dump = tmp_path / "nextcloud.sql"
    for _ in range(2):
        result = run_hook(BEFORE, plain_install, "--dump-to", dump)
        assert result.returncode == 0, text(result)
        assert run_hook(AFTER, plain_install, "--dump-to", dump, "--keep-dump").returncode == 0
    assert dbpipe("dbpipe-verify", dump).returncode == 0


def test_a_full_disk_under_dump_to_names_the_file(plain_install, run_hook, tmp_path, state_dir, syslog):
    full = tmp_path / "full"
    full.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], check=True)
    try:
        fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 4096)
        os.close(fd)
        dump = full / "nextcloud.sql"

        result = run_hook(BEFORE, plain_install, "--dump-to", dump)

        assert result.returncode == 73, text(result)
        assert result.stderr.decode().splitlines()[-1] == (
            f"nextcloud-before-backup: cannot write {dump}: No space left on device")
        assert_back_to_normal(plain_install, state_dir)
        assert sorted(os.listdir(full)) == ["filler"]
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_dump_inside_the_web_root_is_refused_before_anything_changes(plain_install, run_hook):
    result = run_hook(BEFORE, plain_install, "--dump-to", plain_install.root / "data" / "db.sql")
    assert result.returncode == 64
    assert "inside the Nextcloud directory" in text(result)
    assert plain_install.calls() == []


def test_database_down_during_dump_puts_maintenance_back(pgsql_install, run_hook, state_dir, tmp_path):
    dump = tmp_path / "nextcloud.sql"
    server = pgsql_install.database.server
    server.stop()
    try:
        result = run_hook(BEFORE, pgsql_install, "--dump-to", dump)
    finally:
        server.start()

    assert result.returncode == 69, text(result)
    assert "failed: putting back the previous state" in lines(result)
    assert_back_to_normal(pgsql_install, state_dir)
    assert not dump.exists() and list(tmp_path.glob(".nextcloud.sql*")) == []
    # the after hook (RunsOnFailure) then finds nothing to do
    result = run_hook(AFTER, pgsql_install, "--dump-to", dump)
    assert result.returncode == 0
    assert "nothing to put back" in text(result)


def test_a_dump_waiting_for_a_lock_gives_up_after_the_hooks_lock_timeout_and_reopens(
        mysql_install, run_hook, state_dir, tmp_path):
    """An admin's LOCK TABLES holds the dump off while Nextcloud is closed:
    --lock-timeout bounds how long users are shut out for it (default 300 s)."""
    dump = tmp_path / "nextcloud.sql"
    db = mysql_install.database
    session, holder = holding_session(db.server, db)
    try:
        started = time.monotonic()
        result = run_hook(BEFORE, mysql_install, "--dump-to", dump, "--lock-timeout", "2")
        elapsed = time.monotonic() - started
    finally:
        release(session)
    assert result.returncode == 75, text(result)
    assert elapsed < 30, elapsed
    assert "(--lock-timeout)" in text(result) and f"session {holder}" in text(result), text(result)
    assert_back_to_normal(mysql_install, state_dir)
    assert not dump.exists()


def test_sigterm_during_the_before_hook_puts_maintenance_back(plain_install, start_hook, state_dir):
    hook = start_hook(BEFORE, plain_install, settle="60")
    hook.wait_for("waiting 60 s")
    assert plain_install.maintenance

    hook.proc.send_signal(signal.SIGTERM)
    code, stderr = hook.finish()

    assert code == 128 + signal.SIGTERM
    assert "cancelled by SIGTERM" in stderr
    assert_back_to_normal(plain_install, state_dir)


def test_concurrent_hooks_second_exits_75(plain_install, start_hook, run_hook):
    first = start_hook(BEFORE, plain_install, settle="60")
    first.wait_for("waiting 60 s")

    second = run_hook(AFTER, plain_install)

    assert second.returncode == 75
    assert "another dbpipe hook is working on" in text(second)
    assert plain_install.maintenance  # the second hook did not interleave
    first.proc.send_signal(signal.SIGINT)
    assert first.finish()[0] == 128 + signal.SIGINT
    assert not plain_install.maintenance


def test_failing_occ_gives_its_message_and_puts_maintenance_back(plain_install, run_hook, state_dir):
    """occ status fails right after maintenance went on."""
    plain_install.fail({"match": "status", "skip": 2, "times": 1,
                        "message": "An unhandled exception has been thrown: database is locked"})

    result = run_hook(BEFORE, plain_install)

    assert result.returncode == 69
    assert ("occ status failed (exit 1): An unhandled exception has been thrown: database is locked"
            in text(result))
    assert "maintenance:mode --on" in plain_install.commands()
    assert_back_to_normal(plain_install, state_dir)


def test_read_only_config_is_reported_and_nothing_is_left_behind(nc_root, run_hook, state_dir,
                                                                 occ_variant):
    db, values = installs.sqlite_database(nc_root)
    install = installs.build(nc_root, {**values, "config_is_read_only": True}, variant=occ_variant)

    result = run_hook(BEFORE, install)

    assert result.returncode == 69
    assert 'Config is set to be read-only via option "config_is_read_only".' in text(result)
    assert_back_to_normal(install, state_dir)


def test_hanging_occ_times_out_and_maintenance_goes_back(plain_install, run_hook, state_dir):
    plain_install.fail({"match": "status", "action": "hang", "skip": 2, "times": 1})

    result = run_hook(BEFORE, plain_install, "--command-timeout", "1")

    assert result.returncode == 69
    assert "occ status: php timed out after 1 s" in text(result)
    assert_back_to_normal(plain_install, state_dir)


def test_whole_hook_timeout_puts_maintenance_back(plain_install, run_hook, state_dir):
    result = run_hook(BEFORE, plain_install, "--timeout", "1", settle="30")

    assert result.returncode == 69
    assert "timed out after 1 s (--timeout)" in text(result)
    assert_back_to_normal(plain_install, state_dir)


def test_unfinished_cycle_keeps_the_original_state(plain_install, run_hook, state_dir):
    """A before hook whose after hook never ran: the next cycle keeps what the
    admin had before the first one, and its after hook ends it."""
    assert run_hook(BEFORE, plain_install).returncode == 0
    again = run_hook(BEFORE, plain_install)
    assert again.returncode == 0
    assert any(line.startswith("keeping an unfinished record: maintenance mode (was off before)")
               for line in lines(again))
    assert run_hook(AFTER, plain_install).returncode == 0
    assert_back_to_normal(plain_install, state_dir)


def test_lost_record_is_recovered_through_the_marker(plain_install, run_hook, state_dir, tmp_path):
    assert run_hook(BEFORE, plain_install, state=tmp_path / "lost").returncode == 0

    result = run_hook(AFTER, plain_install)

    assert result.returncode == 0, text(result)
    assert "putting back: maintenance mode (was off before) by our marker in config.php" in text(result)
    assert_back_to_normal(plain_install, state_dir)


def test_a_config_php_rewritten_behind_occ_is_caught_and_maintenance_goes_back(plain_install, run_hook,
                                                                               start_hook, state_dir):
    """Another writer rewrites config.php between occ's --on and the status
    that confirms it, keeping maintenance on but losing our marker: occ status
    cannot tell, config.php read back can; the hook fails with one line and
    puts maintenance mode back (issue 16, point 9)."""
    assert run_hook(BEFORE, plain_install).returncode == 0   # learn the order of the calls
    commands = plain_install.commands()
    confirming = sum(1 for c in commands[:commands.index("maintenance:mode --on")] if c.startswith("status"))
    assert run_hook(AFTER, plain_install).returncode == 0
    plain_install.fail({"match": "status", "action": "pause", "skip": confirming, "times": 1})

    hook = start_hook(BEFORE, plain_install)
    deadline = time.monotonic() + 30
    while plain_install.commands()[-1:] != ["status --output=json"] or not plain_install.maintenance:
        assert time.monotonic() < deadline and hook.proc.poll() is None, "the hook never paused"
        time.sleep(0.05)
    values = plain_install.file_config()
    del values[MARKER]
    plain_install.config_file.write_text(installs.php_config(values))   # the other writer
    (plain_install.root / "occ-resume").write_text("")
    code, stderr = hook.finish()

    assert code == 75, stderr
    assert [line for line in stderr.splitlines() if line.strip()][-1] == (
        f"nextcloud-before-backup: {plain_install.config_file} lacks 'dbpipe.maintenance' => true right "
        "after occ maintenance:mode --on, though occ status reports it on: another writer changed "
        "config.php meanwhile; run the job again")
    assert "failed: putting back the previous state" in hook.lines
    assert_back_to_normal(plain_install, state_dir)


def test_php_warnings_before_the_json_are_passed_over(plain_install, run_hook, state_dir):
    """A deprecated app or php.ini makes PHP print a warning on stdout before
    every occ output, JSON included."""
    (plain_install.root / "occ-php-warning").write_text("Creation of dynamic property is deprecated")

    before = run_hook(BEFORE, plain_install)
    on = plain_install.maintenance
    after = run_hook(AFTER, plain_install)

    assert before.returncode == 0 and on, text(before)
    assert after.returncode == 0, text(after)
    assert_back_to_normal(plain_install, state_dir)


def test_an_installation_not_installed_yet_is_refused_and_left_alone(plain_install, run_hook, state_dir):
    values = plain_install.file_config()
    plain_install.config_file.write_text(installs.php_config({**values, "installed": False}))
    config = plain_install.config_file.read_bytes()

    result = run_hook(BEFORE, plain_install)

    assert result.returncode == 78, text(result)
    assert f"Nextcloud in {os.path.realpath(plain_install.root)} is not installed" in text(result)
    assert plain_install.config_file.read_bytes() == config
    assert records(state_dir) == []
