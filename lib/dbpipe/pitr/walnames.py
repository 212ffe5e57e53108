"""PostgreSQL WAL file names and positions.

A segment name is timeline, then the segment number split in two 8-digit
hex halves; with 16 MiB segments (the default) each half-step covers 0x100
segments.  The segment size is what the spool's files measure."""

from __future__ import annotations

import re

from ..errors import DataError

DEFAULT_SEGMENT_BYTES = 16 << 20
SEGMENT_NAME = re.compile(r"[0-9A-F]{24}")


def lsn_value(lsn: str) -> int:
    """'0/2000028' -> its byte position."""
    try:
        high, low = lsn.split("/")
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        raise DataError(f"not a WAL position: {lsn!r}") from None


def per_xlogid(segment_bytes: int) -> int:
    return 0x100000000 // segment_bytes


def segment_name(timeline: int, segno: int, segment_bytes: int) -> str:
    per = per_xlogid(segment_bytes)
    return f"{timeline:08X}{segno // per:08X}{segno % per:08X}"


def parse(name: str, segment_bytes: int) -> tuple[int, int]:
    """(timeline, segment number) of a segment name."""
    if not SEGMENT_NAME.fullmatch(name):
        raise DataError(f"not a WAL segment name: {name!r}")
    return int(name[:8], 16), int(name[8:16], 16) * per_xlogid(segment_bytes) + int(name[16:], 16)


def segment_of(timeline: int, lsn: str, segment_bytes: int) -> str:
    return segment_name(timeline, lsn_value(lsn) // segment_bytes, segment_bytes)
