"""Emptying the spool: a file leaves only once a successful Bareos job holds it.

Run after each spool job (director-side RunScript, or cron on the database
host): asks the catalog which spool paths the recent successful jobs of
that job name hold, and removes exactly those - the segment and its
checksum both held, or neither goes.  What stays is reported, loudly past
the warning share of the limit, so the job log says when Bareos has not
been taking the spool."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..bareos import Catalog
from ..log import log
from .spool import CHECKSUM_SUFFIX, MiB, Spool

RECENT_JOBS = 50
WARN_SHARE = 0.8


@dataclass(frozen=True)
class Pruned:
    removed: list[str]
    left: int
    left_bytes: int
    refusals: tuple[str, ...] = ()


def held_paths(catalog: Catalog, job_name: str, current: int | None) -> set[str]:
    """Paths of the recent successful jobs, and of the current one: an After
    script that runs only on success sees its job still running."""
    held: set[str] = set()
    job_ids = [job.job_id for job in catalog.jobs(job_name)[-RECENT_JOBS:]]
    for job_id in job_ids + ([current] if current and current not in job_ids else []):
        held.update(catalog.files(job_id))
    return held


def prune(spool: Spool, catalog: Catalog, job_name: str, current: int | None = None) -> Pruned:
    held = held_paths(catalog, job_name, current)
    log.debug("the catalog holds %d path(s) of %s", len(held), job_name)
    removed = []
    for name in spool.names():
        path = os.path.join(os.path.abspath(spool.directory), name)
        if path in held and path + CHECKSUM_SUFFIX in held:
            spool.remove(name)
            removed.append(name)
    left = spool.names()
    log.debug("removed %s", " ".join(removed))
    return Pruned(removed, len(left), spool.used_bytes(), tuple(spool.take_refusals()))


def report(spool: Spool, pruned: Pruned) -> str:
    line = (f"spool {spool.directory}: removed {len(pruned.removed)} file(s) a successful Bareos job "
            f"holds; {pruned.left} file(s), {pruned.left_bytes // MiB} MiB left")
    if spool.max_bytes:
        line += f" (limit {spool.max_bytes // MiB} MiB)"
        if pruned.left_bytes > WARN_SHARE * spool.max_bytes:
            line = "WARNING: " + line + ": near or over the limit, archiving stops there"
    if pruned.refusals:
        first, last = pruned.refusals[0].split(" ", 1)[0], pruned.refusals[-1].split(" ", 1)[1]
        line += (f"\nWARNING: the archive command refused {len(pruned.refusals)} time(s) since {first} "
                 f"(the server kept the WAL and retries; last: {last})")
    return line
