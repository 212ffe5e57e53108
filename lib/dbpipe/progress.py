"""Progress on a terminal, and byte counts as people read them."""

from __future__ import annotations

import sys
import time


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
