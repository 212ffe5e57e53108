"""Tests that need a server of their own: a server stopped in the middle of a
dump, and cluster-wide --all-databases dumps and restores.  One private
MariaDB and one private PostgreSQL for this module, destroyed afterwards."""

from __future__ import annotations

import os
import re
import threading

import pytest

from testkit import servers
from testkit.dbs import MysqlDatabase, PgsqlDatabase
from ..helpers import dbpipe
from .kit import (DUMP_TOOLS, LeftoverWatch, add_big_table, assert_failed, assert_result, finish,
                  has_trailer, read_all, start, verify_bytes, wait_for_child)


@pytest.fixture(scope="module", params=["mysql", "pgsql"])
def server(request):
    server = servers.local_mariadb() if request.param == "mysql" else servers.local_postgres()
    yield server
    servers.destroy(server)


def populated(server, name: str):
    db = MysqlDatabase(server, name) if server.kind == "mysql" else PgsqlDatabase(server, name)
    db.populate()
    return db


@pytest.fixture(scope="module")
def cluster(server):
    """Two databases on the server and an --all-databases stream of it all."""
    dbs = [populated(server, "nc_all_one"), populated(server, "nc_all_two")]
    admin = server.args()
    result = dbpipe("dbpipe-dump", *admin, "--all-databases")
    assert result.returncode == 0, result.stderr
    return dbs, [db.fingerprint() for db in dbs], result.stdout


def test_all_databases_stream_is_verified_before_loading(server, cluster, env, syslog, private_tmp):
    dbs, before, stream = cluster
    with LeftoverWatch():
        result = dbpipe("dbpipe-restore", *server.args(), stdin=stream[:-100], env=env)
    assert_result(result, syslog, "dbpipe-restore", 65, r"incomplete stream")
    assert [db.fingerprint() for db in dbs] == before
    assert os.listdir(private_tmp) == []


def test_all_databases_dump_and_restore(server, cluster, env, syslog, private_tmp):
    dbs, before, stream = cluster
    assert stream.startswith(f"-- dbpipe-stream 1 engine={server.kind} scope=all database=\n".encode())
    checked = verify_bytes(stream, env)
    assert checked.returncode == 0 and b"(all databases)" in checked.stdout
    dbs[0].change()
    server.drop_database(dbs[1].name)  # lost entirely since the backup
    with LeftoverWatch():              # no --database: an all-databases stream needs none
        result = dbpipe("dbpipe-restore", *server.args(), stdin=stream, env=env)
    assert result.returncode == 0, result.stderr
    assert "restoring all" in result.stderr.decode()
    assert [db.fingerprint() for db in dbs] == before
    assert os.listdir(private_tmp) == []


def test_server_stopped_mid_dump(server, env, syslog, private_tmp, tmp_path):
    db = populated(server, "nc_stopped")
    if server.kind == "pgsql":
        db.owner = server.admin_user
    add_big_table(db)
    stopper = threading.Thread(target=server.stop)
    try:
        with LeftoverWatch():
            proc = start("dbpipe-dump", *server.args(db.name), env=env)
            head = read_all(proc.stdout, 1 << 20)
            wait_for_child(proc.pid, DUMP_TOOLS[server.kind])
            stopper.start()          # the dump tool is blocked on a full pipe meanwhile
            stopper.join(60)
            stored = head + read_all(proc.stdout)
            code, err = finish(proc)
    finally:
        stopper.join(60)
        server.start()
    assert_failed(code, err, syslog, "dbpipe-dump", 69,
                  r"lost connection|server closed the connection|terminating connection|gone away")
    assert not has_trailer(stored)
    assert os.listdir(private_tmp) == []
    assert re.search(rb"CREATE TABLE", stored)
