"""The archive_command step: one WAL segment into the spool, in bounded time.

PostgreSQL runs archive_command for every finished segment and retries it
until it exits 0; while it fails, segments pile up in pg_wal but the server
keeps serving.  So the command's one duty besides durability is to fail
fast: a full or hung spool disk must cost the server a retry, never a stall
(a reason admins leave WAL-G: "halts Postgres when S3 stalls").  Nothing
here talks to Bareos.
"""

from __future__ import annotations

import contextlib
import signal
import time

from ..errors import CantCreateError, DataError, TempFailure
from ..log import log
from .spool import Spool

DEFAULT_TIMEOUT = 30.0


@contextlib.contextmanager
def deadline(seconds: float, what: str):
    """TempFailure when the block takes longer than seconds (SIGALRM)."""
    def expired(_signum, _frame):
        raise TempFailure(f"{what} took longer than {seconds:g} s; gave up so the server can retry")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def archive_segment(spool: Spool, source: str, name: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Put one segment into the spool; True if new, False if already there."""
    started = time.monotonic()
    try:
        with deadline(timeout, f"archiving {name}"):
            new = spool.put(source, name)
    except (CantCreateError, TempFailure, DataError) as exc:
        spool.note_refusal(f"{name}: {exc}")
        raise
    took = (time.monotonic() - started) * 1000
    log.info("%s %s into %s in %.0f ms", "archived" if new else "already archived", name,
             spool.directory, took)
    return new
