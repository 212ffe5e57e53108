"""Read-only filesystem snapshots, so a backup reads a fixed moment while the
application runs on.

provider (the interface: volume, nested, flush, create, info, delete, and
where its snapshots live) is the only thing that knows a filesystem; btrfs
is the one provider shipped, because it is the one tested for real (loop
devices).  LVM and ZFS cannot be tested on the machines dbpipe is tested on,
so they are not shipped; each would be one more module with one Provider
subclass and one register() line below (the tests plug in a plain-directory
provider that way).  view builds the predictable paths Bareos reads and
takes them down again; record is the durable list of everything created;
mounts reads the mount table and binds.  Nothing outside the providers
names a filesystem.
"""

from __future__ import annotations

from ..errors import ConfigError
from .btrfs import BtrfsProvider
from .mounts import Mount
from .provider import Provider

# where the views live: /run is emptied at boot, like the mount table itself
DEFAULT_ROOT = "/run/dbpipe/snapshot"
__all__ = ["DEFAULT_ROOT", "PROVIDERS", "provider_for", "provider_named", "register"]

PROVIDERS: dict[str, type[Provider]] = {}


def register(provider: type[Provider]) -> type[Provider]:
    PROVIDERS[provider.name] = provider
    return provider


register(BtrfsProvider)


def provider_for(mount: Mount, path: str) -> Provider:
    """The provider for the filesystem a path lives on."""
    for provider in PROVIDERS.values():
        if mount.fstype in provider.fstypes:
            return provider()
    names = ", ".join(sorted(PROVIDERS))
    kinds = " or ".join(provider.kind for provider in PROVIDERS.values())
    raise ConfigError(f"{path} is on {mount.fstype} ({mount.point}), not a filesystem dbpipe can "
                      f"snapshot ({names}): snapshot mode needs it on a {kinds}")


def provider_named(name: str) -> Provider:
    """The provider a record names (it took the snapshot)."""
    return PROVIDERS[name]()


def providers() -> list[Provider]:
    return [provider() for provider in PROVIDERS.values()]


def snapshot_homes(mount_point: str) -> list[str]:
    """Where any provider keeps our snapshots of a filesystem mounted at mount_point."""
    return [provider.snapshots_below(mount_point) for provider in providers()]


def listings() -> str:
    """How an admin lists the snapshots by hand, for messages."""
    return " or ".join(provider.listing for provider in PROVIDERS.values())
