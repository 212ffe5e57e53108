"""Files owned by a numeric uid that has no passwd entry (containers,
restored systems): every child that runs as the owner - streaming or to
completion - drops to that uid and gid the same way."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ..dbs import SqliteDatabase
from ..helpers import chown_tree, dbpipe, id_without_account
from .test_roundtrip import content


@pytest.fixture
def reachable_dir():
    """pytest's tmp_path is root-only (0700); the owner must reach its files."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the files belong to another uid")
    base = tempfile.mkdtemp(prefix="dbpipe-owner-")
    os.chmod(base, 0o755)
    yield Path(base)
    shutil.rmtree(base, ignore_errors=True)


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
