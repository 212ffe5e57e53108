"""Fixtures: a private PostgreSQL that archives its WAL with dbpipe-wal-archive
into a spool the postgres account owns (the helpers are in testkit/pitr.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from testkit import servers
from testkit.pitr import archive_command, configure, owned_dir

PG15 = "/usr/lib/postgresql/15/bin"


@pytest.fixture
def reachable(tmp_path):
    """A temp dir the postgres account can enter."""
    if os.geteuid() != 0:
        pytest.fail("the PITR tests run PostgreSQL as postgres and mount tmpfs: run them as root")
    base = Path(tempfile.mkdtemp(prefix="dbpipe-pitr-"))
    os.chmod(base, 0o755)
    yield base
    for mount in sorted(base.rglob("*"), reverse=True):
        if mount.is_dir() and os.path.ismount(mount):
            subprocess.run(["umount", "-l", str(mount)], check=False)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def archiving_pg(reachable):
    """(server, spool): PostgreSQL 15 archiving every WAL segment into spool."""
    spool = owned_dir(reachable / "spool")
    server = servers.local_postgres()
    try:
        configure(server, {"archive_mode": "on", "archive_command": archive_command(spool),
                           "track_commit_timestamp": "on", "wal_level": "replica"})
        yield server, spool
    finally:
        servers.destroy(server)




@pytest.fixture(params=["pgsql", "mysql"])
def accident(request, reachable):
    """tests/pitr/accidents.py's accident on each engine (own server)."""
    from .accidents import MariaAccident, PgAccident
    if request.param == "pgsql":
        yield PgAccident(request.getfixturevalue("archiving_pg"), reachable)
        return
    made = MariaAccident(reachable)
    try:
        yield made
    finally:
        made.destroy()
