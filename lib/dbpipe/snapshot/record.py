"""The durable record of one snapshot backup: every snapshot, bind mount and
stream file is written down *before* it is created, so whatever happens to
the process that created it (SIGKILL, a crash, a reboot), the next run finds
it - and removes only what the record names and the filesystem confirms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .. import records, stamps
from . import listings
from ..errors import ConfigError


@dataclass
class Taken:
    """One snapshot: recorded with its source's id before it exists, its own id after."""

    provider: str
    source: str            # the volume's root
    source_uuid: str
    path: str              # where the snapshot is
    uuid: str = ""


@dataclass
class Bind:
    source: str            # a directory inside a snapshot
    target: str            # where the job reads it: <view>/<original path>


@dataclass
class SnapshotRecord:
    view: str                                   # the root Bareos' StripPath removes
    snapshots: list[Taken] = field(default_factory=list)
    binds: list[Bind] = field(default_factory=list)
    stream: str = ""                            # the window's database stream
    stream_ready: bool = False                  # written and verified
    created: str = ""
    window: float = 0.0                         # seconds Nextcloud was closed

    @classmethod
    def new(cls, view: str, stream: str) -> "SnapshotRecord":
        return cls(view, stream=stream, created=stamps.record())

    def empty(self) -> bool:
        return not (self.snapshots or self.binds or self.stream)

    def describe(self) -> str:
        return (f"{len(self.snapshots)} snapshot(s), {len(self.binds)} bind mount(s) "
                f"of a snapshot backup started {self.created}")


class RecordStore:
    """One JSON file (0600, in the 0700 state directory), replaced atomically."""

    def __init__(self, path: str):
        self.path = path

    def load(self) -> SnapshotRecord | None:
        return records.load(self.path, _record, lambda exc: ConfigError(
            f"snapshot record {self.path} is unreadable or corrupt ({exc}); check "
            f"{listings()} and the mount table by hand, then remove it"))

    def save(self, record: SnapshotRecord) -> None:
        records.save(self.path, asdict(record))

    def clear(self) -> None:
        records.remove(self.path)


def _record(data: dict) -> SnapshotRecord:
    record = SnapshotRecord(**data)
    record.snapshots = [Taken(**item) for item in data.get("snapshots", [])]
    record.binds = [Bind(**item) for item in data.get("binds", [])]
    return record
