"""Names that carry a time sort by age, in today's shape and the older ones."""

import re
import time

from dbpipe import stamps
from dbpipe.engines.mysql import MAX_NAME, side_name, side_names


def test_both_forms_are_utc():
    at = 1796143532.25          # 2026-12-01 16:45:32.25 UTC
    assert stamps.record(at) == "2026-12-01T16:45:32Z"
    assert stamps.for_name(at) == "20261201T164532Z"


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
    regex, _ = side_names("nc", "old")
    keys = [stamps.order_key(regex.match(name).group(1)) + regex.match(name).group(2) for name in names]
    assert keys == sorted(keys) and len(set(keys)) == 5


def test_side_names_of_older_versions_are_still_recognised():
    long_name = "n" * 60
    old = long_name[: MAX_NAME - 32] + "__dbpipe_old_20261201164532_9f3a"
    new = side_name(long_name, "old")
    regex, like = side_names(long_name, "old")
    assert len(old) == len(new) == MAX_NAME
    assert regex.match(old) and regex.match(new) and regex.match(new.lower())
    assert _like(like, old) and _like(like, new)


def _like(pattern: str, name: str) -> bool:
    """SQL LIKE with backslash escapes, as a regex."""
    parts = re.findall(r"\\.|%|_|[^\\%_]+", pattern)
    regex = "".join(re.escape(part[1]) if part.startswith("\\") else
                    ".*" if part == "%" else "." if part == "_" else re.escape(part) for part in parts)
    return re.fullmatch(regex, name) is not None
