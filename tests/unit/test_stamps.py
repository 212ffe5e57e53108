"""Names that carry a time sort by age, in today's shape and the older ones."""

import re
import time

from dbpipe import stamps
from dbpipe.engines.mysql import MAX_NAME, SideNames, side_name


def test_all_forms_are_utc():
    at = 1796143532.25          # 2026-12-01 16:45:32.25 UTC
    assert stamps.record(at) == "2026-12-01T16:45:32Z"
    assert stamps.for_name(at) == "20261201T164532Z"
    assert stamps.for_listing(1796143532) == "2026-12-01 16:45 UTC"
    assert stamps.for_listing(None) == "", "an item without dates is an empty cell, not today"


def test_every_shape_of_name_stamp_is_found_and_sorts_together():
    pattern = re.compile("^x-" + stamps.NAME_PATTERN + "$")
    shapes = ["x-20261201-164530", "x-20261201164531", "x-20261201T164532", "x-20261201T164533Z"]
    keys = [stamps.order_key(pattern.match(name).group(1)) for name in shapes]
    assert keys == sorted(keys) and len(set(keys)) == 4


def test_side_names_made_within_one_second_sort_by_age():
    names = []
    for _ in range(5):
        names.append(side_name("nc", "old"))
        time.sleep(0.003)
    claimed = SideNames("nc", "old").claim(names, [])
    keys = [key for _, key in claimed]
    assert [name for name, _ in claimed] == names and keys == sorted(keys) and len(set(keys)) == 5


def test_side_names_made_in_the_same_instant_differ():
    """Two restores started together never pick the same staging database."""
    names = [side_name("nc", "new") for _ in range(2000)]
    assert len(set(names)) == len(names)


def test_side_names_of_long_names_with_a_common_start_never_mix():
    one, two = "nextcloud_instance_0123456789_one", "nextcloud_instance_0123456789_two"
    ones = [side_name(one, role) for role in ("new", "old")]
    twos = [side_name(two, role) for role in ("new", "old")]
    assert all(len(name) <= MAX_NAME for name in ones + twos)
    for role, mine, theirs in (("new", ones[0], twos[0]), ("old", ones[1], twos[1])):
        assert [n for n, _ in SideNames(one, role).claim([mine, theirs], [one, two])] == [mine]
        assert [n for n, _ in SideNames(two, role).claim([mine, theirs], [one, two])] == [theirs]
        assert _like(SideNames(one, role).like, mine) and _like(SideNames(one, role).like, theirs)


def test_side_names_of_older_versions_are_claimed_only_when_unambiguous():
    long_name = "n" * 60
    cut_a = long_name[: MAX_NAME - 32] + "__dbpipe_old_20261201164532_9f3a"     # before stamps.py
    cut_b = long_name[: MAX_NAME - 34] + "__dbpipe_old_20261201T164532Z_9f3b"   # stamps.py, no hash
    short = "nc__dbpipe_old_20261201T164532Z_9f3c"                              # never cut
    new = side_name(long_name, "old")
    names = SideNames(long_name, "old")
    assert len(cut_a) == len(cut_b) == MAX_NAME
    assert [n for n, _ in names.claim([cut_a, cut_b, new, new.lower()], [])] == [cut_a, cut_b, new, new.lower()]
    assert all(_like(names.like, name) for name in (cut_a, cut_b, new))
    # another database starts with the same 30 characters: the cut names may be its
    rival = long_name[:40] + "x"
    assert [n for n, _ in names.claim([cut_a, cut_b, new], [rival])] == [new]
    assert [n for n, _ in SideNames("nc", "old").claim([short, cut_b], ["nc_other"])] == [short]
    assert SideNames("n", "old").claim([short], []) == []


def _like(pattern: str, name: str) -> bool:
    """SQL LIKE with backslash escapes, as a regex."""
    parts = re.findall(r"\\.|%|_|[^\\%_]+", pattern)
    regex = "".join(re.escape(part[1]) if part.startswith("\\") else
                    ".*" if part == "%" else "." if part == "_" else re.escape(part) for part in parts)
    return re.fullmatch(regex, name) is not None
