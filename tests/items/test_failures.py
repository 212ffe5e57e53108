"""Every failure gives one clear line and its exit code, and leaves no scratch
database (or temporary SQLite file) behind - caused for real: wrong names,
a dump without DAV tables, a truncated dump, an account that may not create
databases, a SIGTERM in the middle of loading."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time

import pytest

from ..helpers import BIN, last_line, write_secret
from .conftest import restore_items


def test_unknown_user(dav_dump, env, private_tmp):
    before = dav_dump.databases()

    result = restore_items(dav_dump, "export", "--user", "mallory", "--out", "/nonexistent", env=env)

    assert result.returncode == 66
    assert last_line(result).endswith("unknown user 'mallory': no calendars or address books of "
                                      "principals/users/mallory in this dump (users with DAV data: "
                                      "alice, bob, o'brien)")
    assert dav_dump.databases() == before and os.listdir(private_tmp) == []


def test_unknown_calendar_and_uid(dav_dumps, env, private_tmp):
    dump = dav_dumps.get("sqlite")

    calendar = restore_items(dump, "list", "--user", "alice", "--calendar", "Urlaub", env=env)
    uid = restore_items(dump, "export", "--user", "bob", "--uid", "todo-milk-1", "--out", "/x", env=env)

    assert calendar.returncode == uid.returncode == 66
    assert "no calendar 'Urlaub' for this user; there are: personal (Persönlich)" in last_line(calendar)
    assert "no item with UID 'todo-milk-1' in calendar 'personal'" in last_line(uid)
    assert os.listdir(private_tmp) == []


@pytest.mark.parametrize("kind", ["sqlite", "mysql"])
def test_dump_without_dav_tables(kind, dav_dumps, env, private_tmp):
    dump = dav_dumps.get(kind, "plain")
    before = dump.databases()

    result = restore_items(dump, "list", "--user", "alice", env=env)

    assert result.returncode == 65
    assert "this dump has no Nextcloud DAV tables (oc_calendars, oc_cards, ...); is this a " \
           "Nextcloud database?" in last_line(result)
    assert dump.databases() == before and os.listdir(private_tmp) == []


def test_truncated_dump_from_stdin_is_refused(dav_dumps, env):
    dump = dav_dumps.get("pgsql")
    data = open(dump.path, "rb").read()
    before = dump.databases()

    result = restore_items(dump, "list", "--user", "alice", env=env, stdin=data[: len(data) - 300])

    assert result.returncode == 65
    assert "incomplete stream" in last_line(result) or "trailer" in last_line(result)
    assert dump.databases() == before


@pytest.mark.parametrize("kind", ["mysql", "pgsql"])
def test_scratch_server_that_refuses_to_create_a_database(kind, dav_dumps, env, tmp_path):
    dump = dav_dumps.get(kind)
    server = dump.server
    user, password = f"nocreate_{secrets.token_hex(3)}", "pw-" + secrets.token_hex(6)
    if kind == "mysql":
        server.sql(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY '{password}'")
    else:
        server.sql(f"CREATE ROLE \"{user}\" LOGIN NOCREATEDB PASSWORD '{password}'")
    before = dump.databases()
    args = server.args(user=user, password_file=write_secret(tmp_path, "pw", password))
    scratch = ["--scratch-" + a[2:] if a.startswith("--") else a for a in args]

    result = subprocess.run([str(BIN / "nextcloud-restore-items"), "list", "--user", "alice",
                             *scratch, dump.path], capture_output=True, env=env, cwd="/")

    assert result.returncode == 73, result.stderr
    assert "the scratch server refuses to create a database" in last_line(result)
    assert password.encode() not in result.stderr
    assert dump.databases() == before
    if kind == "pgsql":             # a wrong password is a refused login, not a refused CREATE
        wrong = [a if a != args[args.index("--password-file") + 1] else
                 write_secret(tmp_path, "wrong", "wrong-pw") for a in scratch]
        refused = subprocess.run([str(BIN / "nextcloud-restore-items"), "list", "--user", "alice",
                                  *wrong, dump.path], capture_output=True, env=env, cwd="/")
        assert refused.returncode == 77, refused.stderr
        assert "password authentication failed" in last_line(refused)


def test_sigterm_while_loading_removes_the_scratch_database(dav_dumps, env):
    dump = dav_dumps.get("mysql")
    data = open(dump.path, "rb").read()
    before = dump.databases()
    proc = subprocess.Popen([str(BIN / "nextcloud-restore-items"), "list", "--user", "alice",
                             *dump.scratch_args(), "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/")
    proc.stdin.write(data[: len(data) // 2])
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while not (dump.databases() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dump.databases() - before, "the scratch database never appeared"

    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signal.SIGTERM
    assert "cancelled by SIGTERM" in stderr.decode()
    assert dump.databases() == before


def test_usage_errors_need_no_database(env):
    def run(*args):
        return subprocess.run([str(BIN / "nextcloud-restore-items"), *args], capture_output=True,
                              env=env, cwd="/", stdin=subprocess.DEVNULL)

    dated_book = run("export", "--user", "alice", "--addressbook", "contacts", "--from", "2024-01-01",
                     "--out", "/tmp/x")
    bad_date = run("list", "--user", "alice", "--from", "March")
    no_user = run("list")

    assert dated_book.returncode == bad_date.returncode == no_user.returncode == 64
    assert "do not apply to --addressbook" in last_line(dated_book)
    assert "bad date 'March'" in last_line(bad_date)
    assert "--user" in last_line(no_user)
