"""dbpipe-mariabackup on its own: levels without a base, the lock, a cancelled
incremental, and the password's way to mariabackup."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time

from ..helpers import BIN, last_line, write_secret
from .conftest import forget_command, job_env

BACKUP = str(BIN / "dbpipe-mariabackup")


def reader(source, state, *args, env=None, stdout=subprocess.DEVNULL, **popen) -> subprocess.CompletedProcess:
    argv = [BACKUP, *source.connection_args(), "--state-dir", str(state), *args]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                          env=env or job_env({}), cwd="/", timeout=120, **popen)


def private_state(tmp_path) -> dict:
    """A job's record goes below $DBPIPE_STATE_DIR: never /var/lib/dbpipe in a test."""
    return {"DBPIPE_STATE_DIR": str(tmp_path / "state-root")}


def pieces(state) -> list[dict]:
    return json.loads((state / "chain.json").read_text())["pieces"]


def test_incremental_without_a_base_takes_a_full_backup_and_says_so(source, tmp_path, env, syslog):
    result = reader(source, tmp_path / "state", "--level", "incremental", env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert "taking a full backup instead of an incremental one" in result.stderr.decode()
    assert "taking a full backup instead" in syslog.text()
    assert [p["level"] for p in pieces(tmp_path / "state")] == ["full"]


def test_strict_refuses_instead_and_records_nothing(source, tmp_path):
    result = reader(source, tmp_path / "state", env=job_env(private_state(tmp_path), "D", 7), stdout=subprocess.PIPE)
    # Bareos level D without a chain: a full backup (no --strict) ...
    assert result.returncode == 0 and b"-- dbpipe-trailer-end" in result.stdout[-200:]
    result = reader(source, tmp_path / "fresh", "--strict", env=job_env(private_state(tmp_path), "I", 8),
                    stdout=subprocess.PIPE)
    assert result.returncode == 66 and "--strict" in last_line(result)
    assert result.stdout == b"" and not (tmp_path / "fresh" / "chain.json").exists()


def test_a_second_backup_of_the_same_chain_waits_its_turn(source, tmp_path):
    (tmp_path / "state").mkdir()
    with open(tmp_path / "state" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = reader(source, tmp_path / "state")
    assert result.returncode == 75 and "another backup of this chain is running" in last_line(result)


def test_a_cancelled_incremental_does_not_advance_the_chain(source, tmp_path, env, private_tmp):
    state = tmp_path / "state"
    assert reader(source, state, "--level", "full", env=env).returncode == 0
    before = (state / "chain.json").read_bytes()
    source.sql("CREATE DATABASE IF NOT EXISTS cancel; USE cancel; "
               "CREATE OR REPLACE TABLE t ENGINE=InnoDB SELECT seq, MD5(seq) m FROM seq_1_to_2000")

    proc = subprocess.Popen([BACKUP, *source.connection_args(), "--state-dir", str(state),
                             "--level", "incremental"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/")
    assert proc.stdout.read(4096)          # mariabackup is streaming; nobody reads on: it blocks
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)       # what a cancelled Bareos job amounts to
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()
    assert "cancelled by SIGTERM" in stderr.decode()
    assert (state / "chain.json").read_bytes() == before
    assert os.listdir(private_tmp) == []   # mariabackup's scratch directory is gone
    assert not _processes_mentioning(str(private_tmp))
    result = reader(source, state, "--level", "incremental", env=env)
    assert result.returncode == 0, result.stderr.decode()
    full, incremental = pieces(state)
    assert incremental["parent_id"] == full["piece_id"] and incremental["sequence"] == 1
    assert incremental["from_lsn"] == full["to_lsn"]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


def test_the_password_reaches_mariabackup_through_neither_argv_nor_environment(source, tmp_path, env, syslog):
    password = "s3cret-'\"$(x) ;pw"
    source.sql("CREATE USER IF NOT EXISTS bk@localhost IDENTIFIED BY '" + password.replace("'", "''") + "';"
               "GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO bk@localhost")
    record = tmp_path / "seen"
    wrapper = tmp_path / "mariabackup"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nenv >> {record}\nexec mariabackup "$@"\n')
    wrapper.chmod(0o755)
    secret = write_secret(tmp_path, "pw", password)

    result = subprocess.run([BACKUP, "--socket", source.socket, "--user", "bk", "--password-file", secret,
                             "--state-dir", str(tmp_path / "state"), "--mariabackup", str(wrapper)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd="/", timeout=120)

    assert result.returncode == 0, result.stderr.decode()
    seen = record.read_text()
    assert "--defaults-extra-file=/dev/fd/" in seen
    assert password not in seen and password not in result.stderr.decode() and password not in syslog.text()


def test_wrong_password_fails_with_the_permission_code(source, tmp_path):
    secret = write_secret(tmp_path, "pw", "wrong")
    result = subprocess.run([BACKUP, "--socket", source.socket, "--user", "bk", "--password-file", secret,
                             "--state-dir", str(tmp_path / "state")], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=job_env({}), cwd="/")
    assert result.returncode == 77, result.stderr.decode()
    assert not (tmp_path / "state" / "chain.json").exists()


def test_a_server_that_is_down_fails_the_backup(new_service, tmp_path):
    down = new_service("down")
    result = subprocess.run([BACKUP, *down.connection_args(), "--state-dir", str(tmp_path / "state")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=job_env(private_state(tmp_path), "F", 9), cwd="/", timeout=120)
    assert result.returncode == 69 and "cannot connect" in last_line(result)
    assert result.stdout == b"" and not (tmp_path / "state" / "chain.json").exists()


def test_a_killed_mariabackup_fails_the_backup_and_leaves_no_valid_stream(source, tmp_path, env):
    state = tmp_path / "state"
    assert reader(source, state, "--level", "full", env=env).returncode == 0
    before = (state / "chain.json").read_bytes()
    proc = subprocess.Popen([BACKUP, *source.connection_args(), "--state-dir", str(state),
                             "--level", "incremental"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd="/")
    head = proc.stdout.read(4096)
    tool = _children(proc.pid)
    assert tool, "mariabackup is not running"
    os.kill(tool[0], signal.SIGKILL)
    rest, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 69, stderr.decode()
    assert "mariabackup was killed by SIGKILL" in stderr.decode()
    assert b"dbpipe-trailer" not in (head + rest)[-500:]
    assert (state / "chain.json").read_bytes() == before


def _children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def test_a_failed_jobs_backup_is_taken_back_out_of_the_chain(source, tmp_path, env):
    state = tmp_path / "state"
    for level, job in (("F", 31), ("I", 32)):
        assert reader(source, state, env=job_env(env, level, job)).returncode == 0
    for job in (32, 32):   # the second time there is nothing left to forget
        assert subprocess.run(forget_command(state, job), env=env, capture_output=True).returncode == 0
        assert [p["job_id"] for p in pieces(state)] == ["31"]
    assert subprocess.run(forget_command(state, 31), env=env, capture_output=True).returncode == 0
    assert not (state / "chain.json").exists()
    result = reader(source, state, env=job_env(env, "I", 33))
    assert result.returncode == 0 and "taking a full backup instead" in result.stderr.decode()


RENAMING_WRAPPER = """#!/bin/sh
# mariabackup 10.11, then its --extra-lsndir files renamed as MariaDB 11.1+ names them (MDEV-18931)
mariabackup "$@"
code=$?
for arg in "$@"; do case "$arg" in --extra-lsndir=*) dir="${arg#--extra-lsndir=}" ;; esac; done
mv "$dir/xtrabackup_checkpoints" "$dir/mariadb_backup_checkpoints" || exit 99
mv "$dir/xtrabackup_info" "$dir/mariadb_backup_info" || exit 99
ls "$dir" > %s
exit $code
"""


def test_mariadb_11_file_names_are_read(source, tmp_path, env):
    """MariaDB 11 is not installable here: real 10.11 backups (full, then an
    incremental on top) whose checkpoint and info files carry the 11.1+ names."""
    listing = tmp_path / "lsndir"
    wrapper = tmp_path / "mariabackup"
    wrapper.write_text(RENAMING_WRAPPER % listing)
    wrapper.chmod(0o755)
    state = tmp_path / "state"
    for level in ("full", "incremental"):
        result = reader(source, state, "--level", level, "--mariabackup", str(wrapper), env=env)
        assert result.returncode == 0, result.stderr.decode()
        assert listing.read_text().split() == ["mariadb_backup_checkpoints", "mariadb_backup_info"]
    full, incremental = pieces(state)
    assert full["from_lsn"] == 0 < full["to_lsn"] and full["tool_version"]
    assert incremental["level"] == "incremental" and incremental["from_lsn"] == full["to_lsn"]
    assert incremental["tool_version"] == full["tool_version"]
