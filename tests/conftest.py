"""Shared fixtures: private servers, populated test databases, a syslog socket
and the bare Bareos-like environment for running the executables."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile

import pytest

from testkit import package, servers
from testkit.dbs import MysqlDatabase, PgsqlDatabase, SqliteDatabase
from .helpers import SyslogCollector, bareos_env, write_secret

SPECS = servers.server_specs()


class ServerPool:
    """Servers started on first use and stopped at the end of the session."""

    def __init__(self):
        self.started = {}

    def get(self, kind: str, spec: str):
        if (kind, spec) not in self.started:
            self.started[kind, spec] = servers.start_server(kind, spec)
        return self.started[kind, spec]

    def close(self):
        for server in self.started.values():
            servers.destroy(server)


@pytest.fixture(scope="session")
def server_pool():
    pool = ServerPool()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def deb(tmp_path_factory):
    """The Debian package (`make deb`, offline), built once per session."""
    try:
        return package.build_deb(tmp_path_factory.mktemp("deb"))
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session", params=SPECS["mysql"])
def mysql_server(request, server_pool):
    return server_pool.get("mysql", request.param)


@pytest.fixture(scope="session", params=SPECS["pgsql"])
def pg_server(request, server_pool):
    return server_pool.get("pgsql", request.param)


@pytest.fixture
def syslog():
    directory = tempfile.mkdtemp(prefix="dbpipe-sl-")
    collector = SyslogCollector(os.path.join(directory, "log"))
    yield collector
    collector.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def private_tmp(tmp_path):
    """TMPDIR for the executables: must be empty again after every run."""
    path = tmp_path / "tmpdir"
    path.mkdir()
    return path


@pytest.fixture
def state_root(tmp_path):
    """$DBPIPE_STATE_DIR for the executables (never /var/lib/dbpipe in a test)."""
    return tmp_path / "state-root"


@pytest.fixture
def env(syslog, private_tmp, state_root):
    return bareos_env(DBPIPE_SYSLOG_SOCKET=syslog.path, TMPDIR=str(private_tmp),
                      DBPIPE_STATE_DIR=str(state_root))


def unique(prefix: str = "db") -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def make_mysql(server, tmp_path, name=None, can_create=True, password="pw-'\"$(x)`;"):
    db = MysqlDatabase(server, name or unique("nc"))
    db.populate()
    user = unique("u")
    server.create_user(user, password, db.name, can_create=can_create)
    db.password = password
    db.user_args = server.args(db.name, user=user,
                               password_file=write_secret(tmp_path, f"{user}.pw", password))
    return db


def make_pgsql(server, tmp_path, name=None, password="pw-'\"$(x)`;:\\"):
    user = unique("u")
    server.sql(f'CREATE ROLE "{user}" LOGIN PASSWORD \'{password.replace(chr(39), chr(39) * 2)}\'')
    db = PgsqlDatabase(server, name or unique("nc"), owner=user)
    db.populate()
    db.password = password
    db.user_args = server.args(db.name, user=user,
                               password_file=write_secret(tmp_path, f"{user}.pw", password))
    return db


def make_sqlite(tmp_path, name="owncloud.db"):
    directory = tmp_path / "data"
    directory.mkdir(exist_ok=True)
    db = SqliteDatabase(str(directory / name))
    db.populate()
    db.password = None
    return db


ENGINE_PARAMS = ["sqlite"] + [f"{kind}:{spec}" for kind in ("mysql", "pgsql") for spec in SPECS[kind]]


def _engine_id(param: str) -> str:
    return param.replace(":local", "")


@pytest.fixture(params=ENGINE_PARAMS, ids=_engine_id)
def database(request, tmp_path, server_pool):
    """A populated database on each engine, reached as a password-protected user."""
    if request.param == "sqlite":
        return make_sqlite(tmp_path)
    kind, spec = request.param.split(":", 1)
    server = server_pool.get(kind, spec)
    return make_mysql(server, tmp_path) if kind == "mysql" else make_pgsql(server, tmp_path)
