"""The durable record of one snapshot backup: every snapshot, bind mount and
stream file is written down *before* it is created, so whatever happens to
the process that created it (SIGKILL, a crash, a reboot), the next run finds
it - and removes only what the record names and the filesystem confirms.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field

from .. import stamps
from ..errors import CantCreateError, ConfigError
from ..files import atomic_write


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
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            record = SnapshotRecord(**data)
            record.snapshots = [Taken(**item) for item in data.get("snapshots", [])]
            record.binds = [Bind(**item) for item in data.get("binds", [])]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"snapshot record {self.path} is unreadable or corrupt ({exc}); check "
                              f"'btrfs subvolume list' and the mount table by hand, then remove it") from None
        return record

    def save(self, record: SnapshotRecord) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise CantCreateError(f"cannot create {os.path.dirname(self.path)}: {exc.strerror}") from None
        with atomic_write(self.path) as handle:
            handle.write(json.dumps(asdict(record), indent=1).encode())

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
