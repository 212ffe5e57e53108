"""A deadline for a whole hook, and a shield for putting things back.

Bareos has no timeout for RunScripts: a hook that hangs keeps Nextcloud in
maintenance mode for as long as it hangs.  The deadline turns SIGALRM into an
exception at any point, like cli.run() does with SIGTERM; the cleanup that
follows must not itself be interrupted, so it runs shielded.
"""

from __future__ import annotations

import contextlib
import signal

from ..errors import Cancelled, UnavailableError
from ..log import log
from ..process import CANCEL_SIGNALS, past_no_return, signals_handled

RECHECK = 0.5      # seconds: how soon a deadline held back by a point of no return looks again


class HookTimeout(UnavailableError):
    """The hook ran longer than --timeout (exit 69)."""


class Deadline:
    def __init__(self, seconds: float | None):
        self.seconds = seconds or 0
        self._handled = contextlib.nullcontext()
        self._held = False

    def _fire(self, _signum, _frame):
        """Past a point of no return the restore finishes first (stopping
        there would leave the live data half replaced, as a cancel would);
        the deadline strikes as soon as that is over."""
        passed = past_no_return()
        if passed:
            if not self._held:
                log.warning("the --timeout of %g s passed %s; that finishes first", self.seconds, passed)
                self._held = True
            signal.setitimer(signal.ITIMER_REAL, RECHECK)
            return
        self.disarm()
        raise HookTimeout(f"timed out after {self.seconds:g} s (--timeout)")

    def disarm(self) -> None:
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def __enter__(self):
        if self.seconds:
            self._handled = signals_handled((signal.SIGALRM,), self._fire)
            self._handled.__enter__()
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        self.disarm()
        return self._handled.__exit__(*exc)


@contextlib.contextmanager
def shielded(reraise: bool = True):
    """Defer SIGTERM/SIGINT/SIGHUP (and ignore SIGALRM) while the body runs.

    With reraise, a signal that arrived becomes Cancelled once the body is
    done; without (cleanup on an error path), the original error wins.
    """
    received: list[int] = []
    try:
        with signals_handled((*CANCEL_SIGNALS, signal.SIGALRM), lambda s, _f: received.append(s)):
            yield
    finally:
        if received:
            log.info("%s arrived while restoring the previous state; finished that first",
                     signal.Signals(received[0]).name)
    cancels = [s for s in received if s != signal.SIGALRM]
    if reraise and cancels:
        raise Cancelled(cancels[0])
