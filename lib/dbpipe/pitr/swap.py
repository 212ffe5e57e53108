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
it closed, naming the command that finishes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager

from .. import stamps
from ..engines import LiveChange
from ..errors import UnavailableError
from ..log import log
from ..services import Service

Closed = Callable[[], AbstractContextManager[LiveChange]]
STAGING = ("", ".run", ".wal", ".failed")       # what a recovery puts beside its directory


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
         closed: Closed | None = None) -> str:
    with (closed() if closed else contextlib.nullcontext(LiveChange())) as change:
        return _swap(service, live.rstrip("/"), new, still_running, change)


def _swap(service: Service, live: str, new: str, still_running: Callable[[str], bool],
          change: LiveChange) -> str:
    old = sibling(live, "old")
    change.begin()  # durably first: a run killed from here on leaves a record saying so
    try:
        service.stop()
        if still_running(live):
            raise UnavailableError(f"the server of {live} still runs after stopping {service.name}; "
                                   "nothing changed")
    except BaseException:
        change.reverted()  # no file was touched
        raise
    os.rename(live, old)
    try:
        os.rename(new, live)
        service.start()
    except BaseException as exc:
        _roll_back(service, live, old, new)
        change.reverted()
        if isinstance(exc, Exception):
            raise UnavailableError(f"the recovered server did not start ({exc}); the old data "
                                   f"directory is back in place and started") from None
        raise
    log.info("swapped in the recovered data directory; the old one is %s", old)
    return old


def _roll_back(service: Service, live: str, old: str, new: str) -> None:
    with contextlib.suppress(Exception):
        service.stop()
    if os.path.exists(live):
        os.rename(live, new + ".failed")
    os.rename(old, live)
    service.start()
