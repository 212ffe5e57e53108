"""Recovery targets: a second in time, or "latest".

A time without a zone is the machine's local time, as an admin reads it off
a clock or a log; everything is compared and handed to the server in UTC."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from ..errors import UsageError

LATEST = "latest"


@dataclass(frozen=True)
class RecoveryTarget:
    at: datetime.datetime | None      # aware; None for latest

    @classmethod
    def parse(cls, text: str) -> "RecoveryTarget":
        if text.strip().lower() == LATEST:
            return cls(None)
        try:
            value = datetime.datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(f"not a time: {text!r} (use 'YYYY-MM-DD HH:MM:SS' or latest)") from None
        return cls(value if value.tzinfo else value.astimezone())

    @property
    def latest(self) -> bool:
        return self.at is None

    def for_server(self) -> str:
        """As recovery_target_time and mariadb-binlog --stop-datetime want it, in UTC."""
        return self.at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")

    def __str__(self):
        return LATEST if self.at is None else show(self.at)


def show(at: datetime.datetime) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S%z")


def from_epoch(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
