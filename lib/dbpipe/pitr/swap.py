"""Putting a recovered data directory in place of the live one.

The recovered directory was built beside the live one (same file system),
so the swap is two renames between a stop and a start; the old directory
is kept as DATADIR.dbpipe-old-<time>.  If the recovered server does not
start, or we are cancelled, the old directory goes back and is started.

What is closed around the swap (Nextcloud's restore cycle, handed in by
the executable as with copy-back: physical.copyback.CopyBackRequest.closed)
is entered only here - the recovery before it changed nothing live.  It
hears of the first change (LiveChange.begin) and of a rollback that put
the old directory back (reverted); a failure in between, or a kill, leaves
it closed, naming the command that finishes.

The swap's own record (DATADIR.dbpipe-swap.json, written before the
server is stopped, removed once it runs on either directory) is what a
kill -9 or a crash between the renames leaves: the next in-place run, or
dbpipe-pitr-restore --finish-swap, finishes that swap (or rolls it back
when nothing was renamed yet, or the recovered server does not start)
before anything else, and no run starts a new recovery while it is there."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .. import stamps
from ..engines import LiveChange
from ..errors import DataError, TempFailure, UnavailableError
from ..files import move
from ..log import log
from ..physical.swap_record import SwapRecord
from ..services import Service

Closed = Callable[[], AbstractContextManager[LiveChange]]
STAGING = ("", ".run", ".wal", ".failed")       # what a recovery puts beside its directory
SUFFIX = ".dbpipe-swap"                         # DATADIR.dbpipe-swap.json: the record; .lock


@dataclass(frozen=True)
class PitrSwap:
    """What a swap is about to do, saved before it stops the server."""

    datadir: str
    old: str                      # where the live directory goes
    new: str                      # the recovered, verified directory
    service: str
    target: str = ""


def sibling(live: str, tag: str, claim: bool = False) -> str:
    """LIVE.dbpipe-<tag>-<time>, unused with all its staging names: two
    restores in one second (a --beside server still running from the last
    one) must never share a directory.  claim makes it, empty and 0700, so a
    concurrent run cannot take it meanwhile."""
    base = f"{live.rstrip('/')}.dbpipe-{tag}-{stamps.for_name()}"
    for number in range(1, 1000):
        name = base if number == 1 else f"{base}-{number}"
        if any(os.path.lexists(name + extra) for extra in STAGING):
            continue
        if not claim:
            return name
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700)
            return name
    raise UnavailableError(f"no free name beside {live} ({base}-*): remove the old ones")


def swap(service: Service, live: str, new: str, still_running: Callable[[str], bool],
         closed: Closed | None = None, target: str = "") -> str:
    live = live.rstrip("/")
    record = swap_record(live)
    with record.locked(), (closed() if closed else contextlib.nullcontext(LiveChange())) as change:
        return _swap(service, PitrSwap(live, sibling(live, "old"), new, service.name, target),
                     still_running, change, record)


def _swap(service: Service, plan: PitrSwap, still_running: Callable[[str], bool], change: LiveChange,
          record: SwapRecord) -> str:
    live, old, new = plan.datadir, plan.old, plan.new
    change.begin()  # durably first: a run killed from here on leaves a record saying so
    record.save(plan)   # and ours: the next run finishes or rolls back the swap by it
    try:
        service.stop()
        if still_running(live):
            raise UnavailableError(f"the server of {live} still runs after stopping {service.name}; "
                                   "nothing changed")
        move(live, old)
    except BaseException:
        if not os.path.lexists(old):  # no file was touched
            with contextlib.suppress(Exception):
                service.start()
            record.clear()
            change.reverted()
        raise
    try:
        move(new, live)
        service.start()
    except BaseException as exc:
        _roll_back(service, live, old, new)
        record.clear()
        change.reverted()
        if isinstance(exc, Exception):
            raise UnavailableError(f"the recovered server did not start ({exc}); the old data "
                                   f"directory is back in place and started") from None
        raise
    record.clear()
    log.info("swapped in the recovered data directory; the old one is %s", old)
    return old


def _roll_back(service: Service, live: str, old: str, new: str) -> None:
    with contextlib.suppress(Exception):
        service.stop()
    if os.path.exists(live):
        move(live, new + ".failed")
    move(old, live)
    service.start()


# --- a swap killed half-way ---------------------------------------------------------------

def swap_record(live: str) -> SwapRecord:
    return SwapRecord(live.rstrip("/"), SUFFIX, "point-in-time swap", PitrSwap)


def refuse_unfinished(live: str) -> None:
    """A run that cannot finish a recorded swap (no --service) must not start
    another recovery beside it."""
    plan = swap_record(live).load()
    if plan is not None:
        raise TempFailure(f"an interrupted point-in-time swap into {plan.datadir} is recorded "
                          f"({swap_record(live).path}): finish it first with {finish_command(plan)}; "
                          "nothing was changed")


def finish_command(plan: PitrSwap) -> str:
    return f"dbpipe-pitr-restore --finish-swap --datadir {plan.datadir} --service {plan.service}"


def finish_interrupted(service: Service, live: str) -> str | None:
    """Finish or roll back a swap a killed run left (None: none is recorded).
    Once the first rename happened the swap is finished - the recovered
    directory was verified before the record was written - unless its server
    does not start; before it, nothing had changed and the live server is
    started again.  The one line says which."""
    record = swap_record(live)
    if not os.path.exists(record.path):    # the usual case: not even a lock file made
        return None
    with record.locked():
        plan = record.load()
        if plan is None:
            return None
        log.warning("an interrupted point-in-time swap into %s is recorded (%s): repairing it", plan.datadir,
                    record.path)
        state = tuple(os.path.lexists(path) for path in (plan.datadir, plan.old, plan.new))
        if state[:2] == (True, False):                  # stopped at most: nothing renamed
            service.start()
            record.clear()
            return (f"rolled back the interrupted point-in-time swap into {plan.datadir}: nothing had been "
                    f"renamed, {service.name} started on it again; the recovered directory {plan.new} is "
                    "left for you to remove or to restore again")
        if state == (False, True, True):                # between the renames
            move(plan.new, plan.datadir)
        elif state != (True, True, False):              # (True, True, False): both renamed
            raise DataError(f"the interrupted point-in-time swap into {plan.datadir} cannot be repaired: "
                            f"{plan.datadir}, {plan.old} and {plan.new} are not as it left them; look at "
                            f"the directories and remove {record.path} by hand")
        return _finish(service, plan, record)


def _finish(service: Service, plan: PitrSwap, record: SwapRecord) -> str:
    for staging in (".run", ".wal"):               # the recovery's, no longer needed either way
        shutil.rmtree(plan.new + staging, ignore_errors=True)
    try:
        service.start()
    except Exception as exc:  # noqa: BLE001 - said in the one line
        _roll_back(service, plan.datadir, plan.old, plan.new)
        record.clear()
        raise UnavailableError(f"rolled back the interrupted point-in-time swap into {plan.datadir}: the "
                               f"recovered server did not start ({exc}); the old data directory is back in "
                               f"place and started") from None
    record.clear()
    return (f"finished the interrupted point-in-time swap into {plan.datadir}: recovered to "
            f"{plan.target or 'its target'}, {service.name} started on it; the old data directory is "
            f"kept as {plan.old}")
