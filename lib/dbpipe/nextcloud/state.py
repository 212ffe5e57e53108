"""What a hook changed, kept on disk until it is undone, and the lock that
keeps two hooks of the same installation from interleaving.

The before hook writes the record *before* it changes anything, so even a
hook killed with SIGKILL leaves enough behind for the next after hook to put
things back.  An existing record is never overwritten with a newer "previous"
state: it holds what the admin had before our first change.

A restore that has begun to replace data says so in the record (`unfinished`,
the command that finishes it) before the first change: from then on only
finishing the restore may end maintenance mode, whatever dies in between.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from .. import records
from ..errors import ConfigError
from ..files import exclusive_lock, state_root
from .installation import Installation

DEFAULT_STATE_DIR = state_root()
METHODS = ("maintenance", "service")


@dataclass
class HookState:
    root: str
    method: str                          # maintenance | service
    maintenance_before: bool = False     # method maintenance: the admin's setting before us
    services: list[str] = field(default_factory=list)  # method service: what we stopped, in order
    manager: str = ""                    # method service: the manager program that stopped them
    manager_style: str = ""              # systemctl | service
    hook: str = ""
    since: str = ""
    switched_on: float = 0.0             # epoch seconds when we switched maintenance on
    unfinished: str = ""                 # a restore changed data: the command that finishes it

    def describe(self) -> str:
        by = f"by {self.hook}" + (f" at {self.since}" if self.since else "")
        if self.unfinished:
            return f"a half-finished restore {by}; finish it with: {self.unfinished}"
        if self.method == "service":
            return f"stopped service(s) {', '.join(self.services) or 'none'} {by}"
        return f"maintenance mode (was {'on' if self.maintenance_before else 'off'} before) {by}"


class StateStore:
    """nextcloud-<key>.json and .lock in the state directory (0700, files 0600)."""

    def __init__(self, directory: str, installation: Installation):
        self.directory = directory
        self.root = installation.root
        base = os.path.join(directory, f"nextcloud-{installation.key()}")
        self.path, self.lock_path = base + ".json", base + ".lock"

    def locked(self):
        """Hold the installation's lock for the whole hook; held -> exit 75."""
        return exclusive_lock(self.lock_path, f"another dbpipe hook is working on {self.root}")

    def load(self) -> HookState | None:
        state = records.load(self.path, lambda data: HookState(**data), lambda exc: ConfigError(
            f"state file {self.path} is unreadable or corrupt ({exc}); check "
            f"maintenance mode and services by hand, then remove it"))
        if state is None:
            return None
        if state.method not in METHODS:
            raise ConfigError(f"state file {self.path} names unknown method {state.method!r}")
        return state

    def save(self, state: HookState) -> None:
        """Atomically replace the record (0600), synced before we act on it."""
        records.save(self.path, asdict(state), f"state directory {self.directory}")

    def clear(self) -> None:
        records.remove(self.path)
