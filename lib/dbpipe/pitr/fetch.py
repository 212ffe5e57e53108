"""Fetching an archive back from Bareos for a point-in-time restore.

Through bconsole, like the restore drill: the newest successful base backup
job that ended before the target, and every successful spool job since that
base began, restored below one fetch directory (never in place).  A
transaction id or binary log position has no time the catalog knows: the
newest base (chain) is fetched, as for "latest".  The plan
then reads the fetched files exactly as it reads a local spool."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from ..bareos import Catalog, CatalogJob
from ..errors import NoInputError, UnavailableError
from ..log import log
from .targettime import RecoveryTarget


@dataclass(frozen=True)
class BareosSource:
    catalog: Catalog
    client: str
    restore_job: str
    base_job: str
    spool_job: str


def _when(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp).astimezone()   # the director's local time


def choose_base(jobs: list[CatalogJob], target: RecoveryTarget) -> CatalogJob:
    if not jobs:
        raise NoInputError("the catalog has no successful base backup job")
    before = [job for job in jobs if target.at is None or _when(job.end) <= target.at]
    return (before or jobs)[-1 if before else 0]


def chain_jobs(jobs: list[CatalogJob], target: RecoveryTarget) -> list[CatalogJob]:
    """A physical chain up to the target: the last Full before it and every
    job after that Full that ended before it."""
    before = [job for job in jobs if target.at is None or _when(job.end) <= target.at]
    fulls = [i for i, job in enumerate(before) if job.level == "F"]
    if not fulls:
        raise NoInputError("the catalog has no successful full physical backup before the target")
    return before[fulls[-1]:]


def fetch(source: BareosSource, target: RecoveryTarget, where: str, chain: bool = False) -> None:
    """Restore the base job (chain=True: each job of the physical chain, one
    restore each: they share one pseudo file) and the spool jobs it needs below where."""
    jobs = source.catalog.jobs(source.base_job)
    bases = chain_jobs(jobs, target) if chain else [choose_base(jobs, target)]
    spool_jobs = [job.job_id for job in source.catalog.jobs(source.spool_job) if job.end >= bases[0].start]
    if not spool_jobs:
        raise NoInputError(f"no successful {source.spool_job} job since the base backup job {bases[0].job_id}")
    os.makedirs(where, mode=0o700, exist_ok=True)
    log.info("fetching base backup job(s) %s and spool jobs %s from Bareos into %s",
             ",".join(str(b.job_id) for b in bases), ",".join(map(str, spool_jobs)), where)
    for ids in [[base.job_id] for base in bases] + [spool_jobs]:
        restored = source.catalog.wait(source.catalog.restore_jobs(ids, source.client, source.restore_job, where))
        if restored.status != "T":
            raise UnavailableError(f"Bareos restore job {restored.job_id} of jobs {ids} ended with "
                                   f"status {restored.status}: see its job log")


def start_drill(source: BareosSource, where: str, base_restore_job: str,
                chain: bool = False) -> tuple[int, list[int]]:
    """Start the restore of the newest base job (chain=True: each job of the
    newest physical chain, one restore each) with base_restore_job, then of
    every spool job since (source.restore_job, whose After script runs the
    drill); (the last JobId, the restored jobs).  Separate jobs: Bareos 25
    fails a restore that mixes a bpipe stream with plain files ("Unbalanced
    call to createFile").  The last has a higher Priority number, so it
    waits for the others.  Not waited for here: the drill's Admin job must end."""
    jobs = source.catalog.jobs(source.base_job)
    latest = RecoveryTarget(None)
    bases = chain_jobs(jobs, latest) if chain else [choose_base(jobs, latest)]
    spool_jobs = [job.job_id for job in source.catalog.jobs(source.spool_job) if job.end >= bases[0].start]
    if not spool_jobs:
        raise NoInputError(f"no successful {source.spool_job} job since the base backup job {bases[0].job_id}")
    for base in bases:
        source.catalog.restore_jobs([base.job_id], source.client, base_restore_job, where)
    last = source.catalog.restore_jobs(spool_jobs, source.client, source.restore_job, where)
    return last, [*(base.job_id for base in bases), *spool_jobs]
