"""Timestamps, in three forms only, all UTC.

`record()` is read back by people and programs (the stream header, state
and snapshot records): ISO 8601 to the second.  `for_name()` goes into the
names of what we keep or leave behind (kept copies, side databases, chain
ids, snapshot directories): the same instant without separators, so names
sort by age and fit where a ':' or '-' would not.  `for_listing()` is what
a table for people shows (item listings): to the minute, saying UTC.  UTC because a copy kept
before a time-zone change must still sort right; the 'Z' says so.

Versions before this module named kept copies in local time, in three
shapes (20261201T164532, 20261201164532, 20261201-164532): NAME_PATTERN
still finds them and `order_key` sorts all shapes together (to the second;
across a time-zone offset the old ones may sort a few hours off).

`time`, not `datetime`: dbpipe-dump imports this, and start-up counts.
"""

from __future__ import annotations

import time

# a regex group matching for_name() and the older local-time shapes
NAME_PATTERN = r"(\d{8}[T-]?\d{6}Z?)"


def record(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def for_name(at: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))


def for_listing(at: float | None) -> str:
    """No moment (an item without dates) is an empty cell, not today."""
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def order_key(stamp: str) -> str:
    """A stamp from NAME_PATTERN as a key that sorts oldest first."""
    return "".join(char for char in stamp if char.isdigit())
