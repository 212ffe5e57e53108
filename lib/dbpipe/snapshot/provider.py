"""What a snapshot provider must do - the whole boundary between the backup
flow and one kind of filesystem (or volume manager).

The flow never runs a filesystem tool itself: it asks the provider which
volume holds a path, what else is nested inside that volume, to flush it
before the window, to take a read-only snapshot into a given place, to say
what a path is (so only our own snapshots are ever removed), and to delete
one.  btrfs is the one provider shipped; LVM thin snapshots or ZFS would be
further subclasses (a provider whose snapshot is a block device mounts it in
create() and unmounts it in delete(); the flow only needs a directory).
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from typing import ClassVar

from .mounts import Mount


@dataclass(frozen=True)
class Volume:
    """The unit one snapshot covers."""

    provider: str
    root: str          # the directory where the volume's tree starts
    uuid: str          # the volume's id ("" if it has none): its snapshots name it as parent
    home: str          # where our snapshots of it are kept (on the same filesystem)


@dataclass(frozen=True)
class SnapshotInfo:
    """What a provider can tell about a path that is a volume of its kind."""

    uuid: str
    parent_uuid: str
    readonly: bool


class Provider(abc.ABC):
    name: ClassVar[str]
    fstypes: ClassVar[tuple[str, ...]]    # /proc/self/mountinfo types it handles
    kind: ClassVar[str]                   # what one volume is, for messages: "btrfs subvolume"
    listing: ClassVar[str]                # how an admin lists its snapshots by hand
    home_name: ClassVar[str]              # the directory below a mount point that holds our snapshots

    def snapshots_below(self, mount_point: str) -> str:
        """Where our snapshots of a filesystem mounted at mount_point are kept
        (a FileSet of that mount point leaves them out)."""
        return os.path.join(mount_point, self.home_name)

    def home(self, mount: Mount, key: str) -> str:
        """Where the snapshots of one installation (key) go on mount."""
        return os.path.join(self.snapshots_below(mount.point), key)

    def holds_snapshots(self, path: str) -> bool:
        """Whether path lies among our snapshots (of any run, any mount)."""
        return self.home_name in path.split("/")

    @abc.abstractmethod
    def volume(self, path: str, mount: Mount, key: str) -> Volume:
        """The volume holding path (on mount); snapshots go below a directory named key."""

    @abc.abstractmethod
    def nested(self, volume: Volume, mount: Mount) -> list[str]:
        """Absolute paths of volumes inside this one: its snapshot shows them empty."""

    @abc.abstractmethod
    def flush(self, volume: Volume) -> None:
        """Write out dirty data now, so the snapshot inside the window is quick."""

    @abc.abstractmethod
    def create(self, volume: Volume, destination: str) -> None:
        """An atomic, read-only snapshot of volume, visible at destination."""

    @abc.abstractmethod
    def info(self, path: str) -> SnapshotInfo | None:
        """What path is; None if it is no volume of this provider's kind."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove the snapshot at path."""
