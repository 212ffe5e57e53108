"""dbpipe-pitr-restore for PostgreSQL: plan from the archive, then recover.

The plan (pgarchive) reads only stored files; whatever it refuses, nothing
has changed yet."""

from __future__ import annotations

from dataclasses import dataclass

from ..log import log
from ..process import RECOVERY_TIMEOUT, find_tool
from ..services import Service
from . import pgarchive, pgrecover
from .spool import Spool
from .swap import Closed
from .targettime import RecoveryTarget, show


@dataclass(frozen=True)
class PgRestore:
    wal_dir: str
    bases_dir: str
    datadir: str
    target: RecoveryTarget
    service: Service | None         # None: recover beside the live server
    bindir: str | None = None
    timeout: float = RECOVERY_TIMEOUT
    check_only: bool = False
    drill: bool = False             # recover beside, report, remove
    closed: Closed | None = None    # entered around the swap only (Nextcloud's restore cycle)


def restore(request: PgRestore) -> str:
    bindir = pgrecover.pg_bindir(request.datadir, request.bindir)
    spool = Spool(request.wal_dir)
    waldump = find_tool(f"{bindir}/pg_waldump", "pg_waldump", package_hint="postgresql")
    plan = pgarchive.plan(spool, request.bases_dir, request.target, waldump)
    summary = (f"plan: base backup of {plan.base.base.finished} ({plan.base.path}), "
               f"{len(plan.segments)} WAL segment(s) {plan.segments[0]} .. {plan.segments[-1]}, "
               f"newest recoverable commit {show(plan.newest)}")
    log.info("%s", summary)
    if request.check_only:
        return summary
    return pgrecover.recover(plan, spool, pgrecover.RecoveryRequest(
        request.datadir, bindir, request.service, request.timeout, request.drill, request.closed))
