"""Names beside the live data directory: two recoveries in one second (a
--beside server of the last one still running) never share a directory."""

import os

from dbpipe.pitr.swap import sibling


def test_a_second_recovery_in_the_same_second_gets_its_own_directory(tmp_path):
    live = str(tmp_path / "data")
    first = sibling(live, "pitr", claim=True)
    (tmp_path / os.path.basename(first) / "ibdata1").write_text("busy")
    second = sibling(live, "pitr", claim=True)
    assert second != first and os.listdir(second) == []
    assert oct(os.stat(second).st_mode & 0o777) == "0o700"


def test_a_name_whose_staging_is_taken_is_not_used(tmp_path):
    live = str(tmp_path / "data")
    taken = sibling(live, "old")
    os.mkdir(taken + ".failed")
    assert sibling(live, "old") not in (taken, taken + ".failed")
