"""Fetching an archive back from Bareos for a point-in-time restore.

Through bconsole, like the restore drill: the newest successful base backup
job that ended before the target, and every successful spool job since that
base began, restored below one fetch directory (never in place).  The plan
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
    before = [job for job in jobs if target.latest or _when(job.end) <= target.at]
    return (before or jobs)[-1 if before else 0]


def fetch(source: BareosSource, target: RecoveryTarget, where: str) -> None:
    """Restore the base job and the spool jobs it needs below where."""
    base = choose_base(source.catalog.jobs(source.base_job), target)
    spool_jobs = [job.job_id for job in source.catalog.jobs(source.spool_job) if job.end >= base.start]
    if not spool_jobs:
        raise NoInputError(f"no successful {source.spool_job} job since the base backup job {base.job_id}")
    os.makedirs(where, mode=0o700, exist_ok=True)
    log.info("fetching base backup job %d and spool jobs %s from Bareos into %s", base.job_id,
             ",".join(map(str, spool_jobs)), where)
    for ids in ([base.job_id], spool_jobs):
        restored = source.catalog.wait(source.catalog.restore_jobs(ids, source.client, source.restore_job, where))
        if restored.status != "T":
            raise UnavailableError(f"Bareos restore job {restored.job_id} of jobs {ids} ended with "
                                   f"status {restored.status}: see its job log")
