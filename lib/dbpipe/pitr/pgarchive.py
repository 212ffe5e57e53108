"""What a PostgreSQL archive can recover: base backups plus WAL segments.

Before anything changes, a restore works out from the stored files alone
which base to start from, which segments it needs and whether each one is
there and intact; the newest recoverable second is the last commit in the
last unbroken segment (pg_waldump).  A target outside that range, or behind
a missing or damaged segment, is refused with the range that is available.
A transaction id target must have committed in that run, after the base
was consistent; the range then names the transactions and their times.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

from ..errors import DataError, NoInputError
from ..process import COMMAND_TIMEOUT, LONG_TIMEOUT, run
from . import walnames
from .pgbase import StoredBase, finished_epoch, stored_bases, verify_stored
from .spool import Spool
from .targettime import RecoveryTarget, from_epoch, show

STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (UTC|[+-]\d\d)"
COMMIT_TIME = re.compile(r"\bCOMMIT " + STAMP)
TX_COMMIT = re.compile(r"\btx:\s+(\d+), lsn: \S+, prev \S+, desc: COMMIT " + STAMP)


@dataclass(frozen=True)
class Plan:
    base: StoredBase
    segments: list[str]            # verified, in order, from the base's first one
    segment_bytes: int
    newest: datetime.datetime      # the last commit the segments hold
    target: RecoveryTarget


@dataclass(frozen=True)
class Coverage:
    segments: list[str]
    gap: str                      # "" or what ends the unbroken run


def segment_bytes_of(spool: Spool) -> int:
    for name in spool.names():
        if walnames.SEGMENT_NAME.fullmatch(name):
            return os.path.getsize(spool.path(name))
    return walnames.DEFAULT_SEGMENT_BYTES


def coverage(spool: Spool, base: StoredBase, segment_bytes: int) -> Coverage:
    """The unbroken, intact run of segments from the base's first one."""
    timeline, segno = walnames.parse(
        walnames.segment_of(base.base.timeline, base.base.start_lsn, segment_bytes), segment_bytes)
    present = {name for name in spool.names() if walnames.SEGMENT_NAME.fullmatch(name)}
    later = sorted(n for n in present if walnames.parse(n, segment_bytes)[0] == timeline
                   and walnames.parse(n, segment_bytes)[1] >= segno)
    run_of: list[str] = []
    while True:
        name = walnames.segment_name(timeline, segno + len(run_of), segment_bytes)
        if name not in present:
            beyond = [n for n in later if n > name]
            gap = f"segment {name} is missing (the archive has {beyond[0]} and later)" if beyond else ""
            return Coverage(run_of, gap)
        try:
            spool.verify(name)
        except DataError as exc:
            return Coverage(run_of, str(exc))
        run_of.append(name)


def last_commit(spool: Spool, segments: list[str], waldump: str) -> datetime.datetime | None:
    """The newest COMMIT time in the segments (searching from the newest)."""
    for name in reversed(segments):
        result = run([waldump, "--path", spool.directory, name], timeout=COMMAND_TIMEOUT)
        found = COMMIT_TIME.findall(result.stdout)
        if found:
            return _aware(*found[-1])
    return None


def _aware(stamp: str, zone: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp + ("+00:00" if zone == "UTC" else zone + ":00"))


def commits(spool: Spool, segments: list[str], waldump: str) -> dict[int, datetime.datetime]:
    """Transaction id -> commit time of every commit in the segments (one
    pg_waldump over the run, transaction records only)."""
    result = run([waldump, "--path", spool.directory, "--rmgr", "Transaction", segments[0], segments[-1]],
                 timeout=LONG_TIMEOUT)
    return {int(xid): _aware(stamp, zone) for xid, stamp, zone in TX_COMMIT.findall(result.stdout)}


def plan(spool: Spool, bases_dir: str, target: RecoveryTarget, waldump: str) -> Plan:
    bases = stored_bases(bases_dir)
    if not bases:
        raise NoInputError(f"no PostgreSQL base backup in {bases_dir}")
    segment_bytes = segment_bytes_of(spool)
    if target.xid is not None:
        return plan_transaction(spool, bases, target, waldump, segment_bytes)
    usable = [b for b in bases if target.latest or from_epoch(finished_epoch(b.base)) <= target.at]
    oldest = from_epoch(finished_epoch(bases[0].base))
    chosen = usable[-1] if usable else bases[0]
    covered = coverage(spool, chosen, segment_bytes)
    newest = last_commit(spool, covered.segments, waldump) if covered.segments else None
    start = from_epoch(finished_epoch(chosen.base))
    available = (f"available: {show(oldest)} .. {show(newest)}" if newest and newest >= start
                 else f"no recoverable time after the base backup of {show(start)}")
    gap = f"; {covered.gap}" if covered.gap else ""
    if newest is None or newest < start:
        raise DataError(f"the archive holds no commit after the base backup of {show(start)}{gap}; "
                        f"{available}")
    if not usable:
        raise DataError(f"{target} is before the oldest base backup; {available}")
    if not target.latest and target.at > newest:
        raise DataError(f"{target} is beyond what the archive covers{gap}; {available}")
    verify_stored(chosen)
    return Plan(chosen, covered.segments, segment_bytes, newest, target)


def plan_transaction(spool: Spool, bases: list[StoredBase], target: RecoveryTarget, waldump: str,
                     segment_bytes: int) -> Plan:
    """The newest base after which the transaction committed in the unbroken
    run of segments.  Older bases are tried only while the id is older than
    every commit after the newer base (ids grow with time, roughly)."""
    refusal = ""
    for chosen in reversed(bases):
        covered = coverage(spool, chosen, segment_bytes)
        start = from_epoch(finished_epoch(chosen.base))
        found = commits(spool, covered.segments, waldump) if covered.segments else {}
        after = {xid: at for xid, at in found.items() if at >= start}
        if target.xid in after:
            verify_stored(chosen)
            return Plan(chosen, covered.segments, segment_bytes, max(after.values()), target)
        gap = f"; {covered.gap}" if covered.gap else ""
        available = (f"available: transactions {min(after)} .. {max(after)}, committed "
                     f"{show(min(after.values()))} .. {show(max(after.values()))}" if after
                     else f"no commit after the base backup of {show(start)}")
        refusal = refusal or f"{target} did not commit in what the archive covers{gap}; {available}"
        if after and target.xid > min(after):
            break
    raise DataError(refusal)
