"""Secrets and hostile names, with the real tools running.

While a dump and a restore with a password run, every /proc/*/cmdline and
every /proc/*/environ on the machine is scanned for the password; temporary
files are private while they exist and gone afterwards; database, user and
file names with quotes, spaces, backticks, ';' and '$()' work end to end.
"""

from __future__ import annotations

import os
import secrets
import stat
import time

import pytest

from ..conftest import ENGINE_PARAMS, _engine_id, make_mysql, make_pgsql, make_sqlite
from ..helpers import dbpipe, write_secret
from .kit import (DUMP_TOOLS, LOADERS, LeftoverWatch, add_big_table, descendants, dump_bytes, finish,
                  has_trailer, read_all, server_params, start, wait_for_child)

HOSTILE = "a 'b' \"c\" `d` ;$(id) e"
SCAN_SECONDS = 0.5


def scan_proc(secret: bytes) -> list[str]:
    """Every process's argv and environment that contains the secret."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{name}/{part}", "rb") as handle:
                    if secret in handle.read():
                        found.append(f"/proc/{name}/{part}")
            except OSError:
                pass   # gone, or a kernel thread
    return found


def temp_file_modes(directory) -> list[str]:
    """Everything below directory that others could read or enter."""
    loose = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(root, name)
            with_mode = stat.S_IMODE(os.lstat(path).st_mode)
            if with_mode & 0o077:
                loose.append(f"{path} {with_mode:04o}")
    return loose


def watch(proc, kind_children, secret: bytes, private_tmp) -> tuple[set, set]:
    """Scan repeatedly while the children run; returns (children seen, temp files seen)."""
    seen_children, seen_files = set(), set()
    deadline = time.monotonic() + SCAN_SECONDS
    while time.monotonic() < deadline:
        seen_children |= {p.comm for p in descendants(proc.pid) if p.comm in kind_children}
        assert scan_proc(secret) == []
        assert temp_file_modes(private_tmp) == []
        for _root, _, files in os.walk(private_tmp):
            seen_files |= set(files)
    return seen_children, seen_files


@server_params
def test_password_never_visible_while_dump_and_restore_run(kind_spec, server_pool, tmp_path, env,
                                                          syslog, private_tmp):
    kind, spec = kind_spec.split(":", 1)
    password = f"pw {HOSTILE} {secrets.token_hex(8)} \\:"
    db = (make_mysql if kind == "mysql" else make_pgsql)(server_pool.get(kind, spec), tmp_path,
                                                         password=password)
    add_big_table(db, rows=3000)   # enough to fill every pipe on the way
    secret = password.encode()
    with LeftoverWatch():
        proc = start("dbpipe-dump", *db.args(), "--verbose", env=env)
        head = read_all(proc.stdout, 1 << 20)
        wait_for_child(proc.pid, DUMP_TOOLS[kind])          # blocked on its full pipe: scan at leisure
        children, files = watch(proc, DUMP_TOOLS[kind], secret, private_tmp)
        stream = head + read_all(proc.stdout)
        code, err = finish(proc)
    assert code == 0, err
    assert children and (kind == "mysql" or files == {"pgpass"})
    assert has_trailer(stream) and secret not in stream
    assert os.listdir(private_tmp) == []

    # the writer: mysql in replace mode, so that its spool file exists as well
    mode = ["--mode", "replace"] if kind == "mysql" else []
    with LeftoverWatch():
        proc = start("dbpipe-restore", *db.args(), *mode, "--drop-old", "--verbose", env=env)
        proc.stdin.write(stream[: len(stream) // 2])
        proc.stdin.flush()
        if kind == "pgsql":
            wait_for_child(proc.pid, LOADERS[kind])
        children, files = watch(proc, LOADERS[kind], secret, private_tmp)
        proc.stdin.write(stream[len(stream) // 2:])
        proc.stdin.close()
        code, err = finish(proc)
    assert code == 0, err
    if kind == "mysql":
        assert files == {"stream.sql"}     # the verified spool of replace mode
    else:
        assert children == {"psql"} and files == {"pgpass"}
    assert os.listdir(private_tmp) == []
    assert "starting " in err              # --verbose logs every child's argv ...
    assert password not in err and password not in syslog.text()   # ... never the password


def test_password_is_not_logged_when_authentication_fails(server_pool, tmp_path, env, syslog):
    """The tool's own error message may echo what it was given: it must be masked."""
    kind_spec = next(p for p in ENGINE_PARAMS if p != "sqlite")
    kind, spec = kind_spec.split(":", 1)
    db = (make_mysql if kind == "mysql" else make_pgsql)(server_pool.get(kind, spec), tmp_path)
    wrong = f"wrong-{secrets.token_hex(6)}"
    args = list(db.args())
    args[args.index("--password-file") + 1] = write_secret(tmp_path, "wrong.pw", wrong)
    result = dbpipe("dbpipe-dump", *args, "--verbose", env=env)
    assert result.returncode == 77
    assert wrong.encode() not in result.stderr + result.stdout
    assert wrong not in syslog.text()


# --- hostile names ------------------------------------------------------------------------------

def hostile_mysql(server, tmp_path):
    db = make_mysql(server, tmp_path, name=f"nc {HOSTILE}")
    user, password = f"u {HOSTILE}", f"p {HOSTILE}"
    server.create_user(user, password, db.name, can_create=True)
    db.user_args = server.args(db.name, user=user, password_file=write_secret(tmp_path, "h.pw", password))
    return db


def hostile_pgsql(server, tmp_path):
    db = make_pgsql(server, tmp_path, name=f"nc {HOSTILE}")
    user, password = f"u {HOSTILE}", f"p {HOSTILE}"
    role = '"' + user.replace('"', '""') + '"'
    server.sql(f"CREATE ROLE {role} LOGIN PASSWORD '{password.replace(chr(39), chr(39) * 2)}'")
    server.sql(f'REASSIGN OWNED BY "{db.owner}" TO {role}', database=db.name)
    db.owner = user
    db.user_args = server.args(db.name, user=user, password_file=write_secret(tmp_path, "h.pw", password))
    return db


@pytest.mark.parametrize("kind_spec", ENGINE_PARAMS, ids=_engine_id)
def test_hostile_names_work_end_to_end(kind_spec, server_pool, tmp_path, env, private_tmp):
    if kind_spec == "sqlite":
        (tmp_path / f"dir {HOSTILE}").mkdir()
        db = make_sqlite(tmp_path / f"dir {HOSTILE}", name=f"nc {HOSTILE}.db")
        content = db.content
    else:
        kind, spec = kind_spec.split(":", 1)
        server = server_pool.get(kind, spec)
        db = (hostile_mysql if kind == "mysql" else hostile_pgsql)(server, tmp_path)
        content = db.fingerprint
    stream = dump_bytes(db, env)
    assert dbpipe("dbpipe-verify", stdin=stream, env=env).returncode == 0
    before = content()
    db.change()
    with LeftoverWatch():
        result = dbpipe("dbpipe-restore", *db.args(), stdin=stream, env=env)
    assert result.returncode == 0, result.stderr
    assert content() == before
    assert os.listdir(private_tmp) == []
    # and --test-restore of the same stream
    scratch = [] if kind_spec == "sqlite" else db.server.args()
    result = dbpipe("dbpipe-verify", "--test-restore", *scratch, stdin=stream, env=env)
    assert result.returncode == 0, result.stderr
