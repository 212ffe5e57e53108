"""Snapshot mode's pure parts: when a dump's point counts as fixed, the view's
paths and the shipped FileSet's StripPath, and how btrfs failures read."""

from __future__ import annotations

import re

import pytest

from dbpipe.dump import SnapshotWatch
from dbpipe.engines import get_engine
from dbpipe.errors import CantCreateError, PermissionDenied, UnavailableError
from dbpipe.snapshot import DEFAULT_ROOT
from dbpipe.snapshot.btrfs import _failure
from dbpipe.snapshot.mounts import _unescape
from dbpipe.snapshot.view import depth, view_path

from ..helpers import ROOT

MARIADB_HEAD = (b"-- MariaDB dump 10.19\n--\n-- Host: localhost    Database: nc\n"
                b"/*!40101 SET NAMES utf8mb4 */;\n" + b"/*!40014 SET x=1 */;\n" * 40)
MARIADB_TABLE = b"\n--\n-- Table structure for table `oc_filecache`\n--\n\nCREATE TABLE ..."


def fired_after(engine: str, chunks: list[bytes]) -> int | None:
    """After which chunk (1-based) the watch fired, None if it did not."""
    calls = []
    watch = SnapshotWatch(get_engine(engine), lambda: calls.append(True))
    for number, chunk in enumerate(chunks, 1):
        watch(memoryview(chunk))
        if calls:
            assert len(calls) == 1
            return number
    return None


@pytest.mark.parametrize("cut", range(1, len(MARIADB_TABLE)))
def test_mariadb_dump_counts_as_fixed_at_its_first_table_across_any_chunk_border(cut):
    """The header comes before START TRANSACTION WITH CONSISTENT SNAPSHOT: it
    proves nothing; the first table section does, wherever the pipe cut it."""
    stream = MARIADB_HEAD + MARIADB_TABLE
    border = len(MARIADB_HEAD) + cut
    assert fired_after("mysql", [MARIADB_HEAD]) is None
    assert fired_after("mysql", [stream[:border], stream[border:]]) == (
        1 if b"\n-- Table structure for table " in stream[:border] else 2)


def test_pg_dump_counts_as_fixed_at_its_first_byte_sqlite_only_at_the_end():
    assert fired_after("pgsql", [b"-"]) == 1
    assert fired_after("sqlite", [b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE a(b);\n"]) is None
    calls = []
    watch = SnapshotWatch(get_engine("sqlite"), lambda: calls.append(True))
    watch.fire()
    watch.fire()
    assert calls == [True], "once, when the dump is done"


def test_only_the_dumps_beginning_is_searched_for_the_proof():
    """A marker beyond LOOK_AT proves nothing: the watch has stopped looking
    (the dump's end fires it), so the copy loop pays nothing after that."""
    filler = b"/*!40014 SET x=1 */;\n" * (SnapshotWatch.LOOK_AT // 20 + 1)
    assert fired_after("mysql", [MARIADB_HEAD + filler, MARIADB_TABLE]) is None
    assert fired_after("mysql", [MARIADB_HEAD, MARIADB_TABLE + filler]) == 2


def test_the_view_keeps_the_original_path_below_a_root_stripPath_removes():
    assert view_path("/run/dbpipe/snapshot/abc", "/var/www/nextcloud/data") == \
        "/run/dbpipe/snapshot/abc/var/www/nextcloud/data"
    assert depth("/run/dbpipe/snapshot/abc") == 4
    shipped = (ROOT / "bareos-config/bareos-dir.d/fileset/nextcloud-snapshot.conf").read_text()
    strip = int(re.search(r"StripPath = (\d+)", shipped).group(1))
    assert strip == depth(DEFAULT_ROOT) + 1, "the shipped StripPath must remove <root>/<key>"


def test_mountinfo_escapes():
    assert _unescape(r"/srv/a\040b\011c\134d") == "/srv/a b\tc\\d"


@pytest.mark.parametrize("line, error", [
    ("ERROR: cannot snapshot '/srv': No space left on device", CantCreateError),
    ("ERROR: cannot snapshot '/srv': Disk quota exceeded", CantCreateError),
    ("ERROR: cannot snapshot '/srv': Operation not permitted", PermissionDenied),
    ("ERROR: cannot snapshot '/srv': Read-only file system", CantCreateError),
    ("ERROR: Could not statfs: No such device", UnavailableError),
])
def test_btrfs_failures_say_which_cause_in_one_line(line, error):
    failure = _failure("snapshot of /srv", line)
    assert type(failure) is error
    assert str(failure).startswith("snapshot of /srv: ") and "\n" not in str(failure)
