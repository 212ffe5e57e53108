"""One line per step on stdout, and the same line in syslog.

Bareos copies a client RunScript's stdout and stderr into the job log (split
at about 129 characters), so step lines go to stdout only: the stderr log
handler would print each twice.  Errors still go through dbpipe.log.
"""

from __future__ import annotations

import logging
import sys

from ..log import log


class StepReport:
    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def step(self, message: str) -> None:
        self._print(message)
        record = log.makeRecord(log.name, logging.INFO, __file__, 0, "%s", (message,), None)
        if log.filter(record):
            for handler in log.handlers:
                if not isinstance(handler, logging.StreamHandler):
                    handler.handle(record)

    def _print(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stdout must not turn a step into a failure
