"""Logging to stderr and syslog, tagged with the Bareos job.

bpipe throws the reader's stderr away (it ends up in the file daemon's journal
or /dev/null), so every line also goes to syslog where an admin can find it by
job id.  A daemonised bareos-fd gives its children an fd 2 opened read-only:
writing there fails, and that must never turn into a second error.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

LOGGER_NAME = "dbpipe"
SYSLOG_SOCKET_ENV = "DBPIPE_SYSLOG_SOCKET"
DEFAULT_SYSLOG_SOCKET = "/dev/log"

log = logging.getLogger(LOGGER_NAME)
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this value wherever it would appear in a log line."""
    if value:
        _secrets.add(value)


class _MaskSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            message = record.getMessage()
            for secret in _secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


class _QuietStreamHandler(logging.StreamHandler):
    """A stderr handler that gives up silently when fd 2 is unusable."""

    def handleError(self, record):  # noqa: N802 (logging API)
        pass


class _QuietSyslogHandler(logging.handlers.SysLogHandler):
    """The standard handler, silent when there is no syslog socket (containers, tests)."""

    append_nul = False

    def handleError(self, record):  # noqa: N802 (logging API)
        pass


def setup(program: str, tag: str = "", verbose: bool = False,
          stderr_level: int = logging.NOTSET) -> None:
    """Configure the 'dbpipe' logger for one executable; tag prefixes syslog lines."""
    logging.raiseExceptions = False
    tag = f"[{tag}] " if tag else ""
    log.handlers.clear()
    log.filters.clear()
    log.addFilter(_MaskSecrets())
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False

    stderr = _QuietStreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(f"{program}: %(message)s"))
    stderr.setLevel(stderr_level)
    log.addHandler(stderr)

    address = os.environ.get(SYSLOG_SOCKET_ENV, DEFAULT_SYSLOG_SOCKET)
    syslog = _QuietSyslogHandler(address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
    syslog.ident = f"{program}[{os.getpid()}]: "
    syslog.setFormatter(logging.Formatter(f"{tag}%(message)s"))
    syslog.setLevel(logging.INFO)
    log.addHandler(syslog)
