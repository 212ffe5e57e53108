"""Recovery targets: a second in time, "latest", a PostgreSQL transaction
id, or a MariaDB binary log position.

A time without a zone is the machine's local time, as an admin reads it off
a clock or a log; everything is compared and handed to the server in UTC.
A transaction id is recovered up to and including its commit (as
recovery_target_xid does); a binary log position FILE:POS replays every
event that begins before POS in FILE (as mariadb-binlog --stop-position
does on the last log it reads), so both the end of the last good
transaction and the start of the accident's event name the same state."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from ..errors import UsageError

LATEST = "latest"
POSITION = re.compile(r"([^/:\s]+\.\d{6,}):(\d+)")


@dataclass(frozen=True)
class RecoveryTarget:
    at: datetime.datetime | None      # aware; None for latest and the other kinds
    xid: int | None = None            # PostgreSQL: recovery_target_xid
    binlog: tuple[str, int] | None = None   # MariaDB: (binary log name, position)

    @classmethod
    def parse(cls, text: str) -> "RecoveryTarget":
        if text.strip().lower() == LATEST:
            return cls(None)
        try:
            value = datetime.datetime.fromisoformat(text.strip())
        except ValueError:
            raise UsageError(f"not a time: {text!r} (use 'YYYY-MM-DD HH:MM:SS' or latest)") from None
        return cls(value if value.tzinfo else value.astimezone())

    @classmethod
    def transaction(cls, text: str) -> "RecoveryTarget":
        if not text.strip().isdigit() or not 3 <= int(text) < 2 ** 32:
            raise UsageError(f"not a transaction id: {text!r} (a number, as pg_waldump shows it: 'tx: 1234')")
        return cls(None, xid=int(text))

    @classmethod
    def position(cls, text: str) -> "RecoveryTarget":
        match = POSITION.fullmatch(text.strip())
        if not match:
            raise UsageError(f"not a binary log position: {text!r} (use FILE:POS, e.g. mysql-bin.000012:4567)")
        return cls(None, binlog=(match.group(1), int(match.group(2))))

    @property
    def latest(self) -> bool:
        return self.at is None and self.xid is None and self.binlog is None

    def for_server(self) -> str:
        """As recovery_target_time and mariadb-binlog --stop-datetime want it, in UTC."""
        return self.at.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")

    def __str__(self):
        if self.xid is not None:
            return f"transaction {self.xid}"
        if self.binlog is not None:
            return f"binary log position {self.binlog[0]}:{self.binlog[1]}"
        return LATEST if self.at is None else show(self.at)


def show(at: datetime.datetime) -> str:
    return at.astimezone().strftime("%Y-%m-%d %H:%M:%S%z")


def from_epoch(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
