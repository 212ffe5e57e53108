"""Read-only filesystem snapshots, so a backup reads a fixed moment while the
application runs on.

provider (the interface: volume, nested, flush, create, info, delete) is
the only thing that knows a filesystem; btrfs is the one provider shipped,
because it is the one tested for real (loop devices).  LVM and ZFS cannot be
tested on the machines dbpipe is tested on, so they are not shipped; each
would be one more module with one Provider subclass, registered below.
view builds the predictable paths Bareos reads and takes them down again;
record is the durable list of everything created; mounts reads the mount
table and binds.
"""

from __future__ import annotations

from ..errors import ConfigError
from .btrfs import SNAPSHOT_DIR, BtrfsProvider
from .mounts import Mount
from .provider import Provider

# where the views live: /run is emptied at boot, like the mount table itself
DEFAULT_ROOT = "/run/dbpipe/snapshot"
__all__ = ["DEFAULT_ROOT", "PROVIDERS", "SNAPSHOT_DIR", "provider_for"]

PROVIDERS: dict[str, type[Provider]] = {BtrfsProvider.name: BtrfsProvider}


def provider_for(mount: Mount, path: str) -> Provider:
    """The provider for the filesystem a path lives on."""
    for provider in PROVIDERS.values():
        if mount.fstype in provider.fstypes:
            return provider()
    names = ", ".join(sorted(PROVIDERS))
    raise ConfigError(f"{path} is on {mount.fstype} ({mount.point}), not a filesystem dbpipe can "
                      f"snapshot ({names}): snapshot mode needs it on a btrfs subvolume")
