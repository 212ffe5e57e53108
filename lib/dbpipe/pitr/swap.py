"""Putting a recovered data directory in place of the live one.

The recovered directory was built beside the live one (same file system),
so the swap is two renames between a stop and a start; the old directory
is kept as DATADIR.dbpipe-old-<time>.  If the recovered server does not
start, or we are cancelled, the old directory goes back and is started."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from .. import stamps
from ..errors import UnavailableError
from ..log import log
from ..services import Service


def swap(service: Service, live: str, new: str, still_running: Callable[[str], bool]) -> str:
    live = live.rstrip("/")
    old = f"{live}.dbpipe-old-{stamps.for_name()}"
    service.stop()
    if still_running(live):
        raise UnavailableError(f"the server of {live} still runs after stopping {service.name}; nothing changed")
    os.rename(live, old)
    try:
        os.rename(new, live)
        service.start()
    except BaseException as exc:
        _roll_back(service, live, old, new)
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
