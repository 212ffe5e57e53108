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


def swap(service: Service, live: str, new: str, still_running: Callable[[str], bool],
         closed: Closed | None = None) -> str:
    with (closed() if closed else contextlib.nullcontext(LiveChange())) as change:
        return _swap(service, live.rstrip("/"), new, still_running, change)


def _swap(service: Service, live: str, new: str, still_running: Callable[[str], bool],
          change: LiveChange) -> str:
    old = f"{live}.dbpipe-old-{stamps.for_name()}"
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
