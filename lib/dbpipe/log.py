"""Logging to stderr and syslog, tagged with the Bareos job.

bpipe throws the reader's stderr away (it ends up in the file daemon's journal
or /dev/null), so every line also goes to syslog where an admin can find it by
job id.  A daemonised bareos-fd gives its children an fd 2 opened read-only:
writing there fails, and that must never turn into a second error.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time

from .bareos import BareosJob, JobLog, JobLogHandler

LOGGER_NAME = "dbpipe"
SYSLOG_SOCKET_ENV = "DBPIPE_SYSLOG_SOCKET"
DEFAULT_SYSLOG_SOCKET = "/dev/log"
SYSLOG_FACILITY_DAEMON = 3

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


class _UnixSyslogHandler(logging.Handler):
    """RFC 3164 lines to a local syslog socket; silent when there is none."""

    def __init__(self, ident: str, address: str, facility: int):
        super().__init__()
        self.ident, self.address, self.facility = ident, address, facility
        self.sock: socket.socket | None = None

    def _connect(self) -> socket.socket | None:
        if self.sock is None:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.connect(self.address)
                self.sock = sock
            except OSError:
                return None
        return self.sock

    SEVERITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

    def emit(self, record: logging.LogRecord) -> None:
        priority = self.facility * 8 + self.SEVERITY.get(record.levelname, 4)
        line = f"<{priority}>{self.ident}[{os.getpid()}]: {self.format(record)}"
        sock = self._connect()
        if sock is not None:
            try:
                sock.send(line.encode("utf-8", "replace")[:8000])
            except OSError:
                self.sock = None

    def close(self):
        if self.sock is not None:
            self.sock.close()
        super().close()


def setup(program: str, job: BareosJob | None = None, verbose: bool = False,
          stderr_level: int = logging.NOTSET) -> None:
    """Configure the 'dbpipe' logger for one executable."""
    logging.raiseExceptions = False
    job = job or BareosJob.from_environ()
    tag = f"[{job.label()}] " if job.label() else ""
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
    syslog = _UnixSyslogHandler(program, address, SYSLOG_FACILITY_DAEMON)
    syslog.setFormatter(logging.Formatter(f"{tag}%(message)s"))
    syslog.setLevel(logging.INFO)
    log.addHandler(syslog)
    if job.job_id.isdigit():
        record = JobLog(job.job_id)
        record.prune()
        log.addHandler(JobLogHandler(record, program))
    logging.getLogger("sh").setLevel(logging.WARNING)


class Progress:
    """Bytes and rate on stderr, only when a person is watching a terminal."""

    INTERVAL = 0.5

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = _isatty(self.stream)
        self.started = time.monotonic()
        self._next = self.started + self.INTERVAL

    def update(self, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.INTERVAL
        rate = total / max(now - self.started, 1e-6)
        self._write(f"\r{self.label}: {human_bytes(total)} ({human_bytes(rate)}/s)   ")

    def done(self) -> None:
        if self.enabled:
            self._write("\r\033[K")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def human_bytes(count: float) -> str:
    if count < 1024:
        return f"{int(count)} B"
    for unit in ("KiB", "MiB", "GiB"):
        count /= 1024
        if count < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}"
