"""Files owned by a numeric uid that has no passwd entry (containers,
restored systems): every child that runs as the owner - streaming or to
completion - drops to that uid and gid the same way."""

from __future__ import annotations

import os

import pytest

from testkit.dbs import SqliteDatabase
from ..helpers import chown_tree, dbpipe, id_without_account, reachable_tempdir
from .test_roundtrip import content


@pytest.fixture
def reachable_dir():
    """The owner must reach its files."""
    with reachable_tempdir("dbpipe-owner-", "the files belong to another uid") as base:
        yield base


def test_sqlite_owned_by_a_uid_without_passwd_entry(reachable_dir, env, tmp_path):
    owner = id_without_account()
    (reachable_dir / "data").mkdir()
    db = SqliteDatabase(str(reachable_dir / "data" / "owncloud.db"))
    db.populate()
    chown_tree(reachable_dir / "data", owner, owner)
    stream = tmp_path / "stream.sql"
    with open(stream, "wb") as out:   # streaming: the dump tool runs as the owner
        result = dbpipe("dbpipe-dump", *db.args(), stdout=out, env=env)
    assert result.returncode == 0, result.stderr.decode()
    before = content(db)
    db.change()

    # run to completion as the owner: journal mode, integrity check, .backup
    result = dbpipe("dbpipe-restore", *db.args(), stdin=stream, env=env)

    assert result.returncode == 0, result.stderr.decode()
    assert content(db) == before
    st = os.stat(db.path)
    assert (st.st_uid, st.st_gid) == (owner, owner)
    kept = [name for name in os.listdir(reachable_dir / "data") if ".dbpipe-old-" in name]
    assert len(kept) == 1 and os.stat(reachable_dir / "data" / kept[0]).st_uid == owner
