"""A Nextcloud installation on disk, and the account PHP must run as.

Nextcloud's console refuses to run unless the caller owns config/config.php,
and running it as root would leave root-owned files the web server cannot
write.  So every PHP child runs as that owner: root drops to it, anyone else
must already be it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass

from ..errors import ConfigError, NoInputError, PermissionDenied
from ..process import RunAs

DEFAULT_PHP = "php"


@dataclass(frozen=True)
class Installation:
    root: str          # real path of the Nextcloud directory (holding occ and config/)
    php: str           # the PHP CLI, the same the web server uses
    owner_uid: int     # owner of config/config.php
    owner_gid: int

    @property
    def config_dir(self) -> str:
        return os.path.join(self.root, "config")

    @property
    def config_file(self) -> str:
        return os.path.join(self.config_dir, "config.php")

    @property
    def occ_path(self) -> str:
        return os.path.join(self.root, "occ")

    def key(self) -> str:
        """A short stable name for per-installation state and lock files."""
        return hashlib.sha256(self.root.encode()).hexdigest()[:16]

    def run_as(self) -> RunAs | None:
        """Whom PHP runs as; None means: as ourselves (we are the owner)."""
        if self.owner_uid == 0:
            raise ConfigError(f"{self.config_file} is owned by root; occ never runs as root: "
                              f"chown it to the web server user (e.g. www-data)")
        if os.geteuid() == 0:
            return RunAs(self.owner_uid, self.owner_gid)  # with or without a passwd entry
        if os.geteuid() != self.owner_uid:
            raise PermissionDenied(f"PHP must run as the owner of {self.config_file} "
                                   f"(uid {self.owner_uid}): run this as root or as that user")
        return None


def open_installation(directory: str, php: str | None = None) -> Installation:
    """The installation in directory; missing -> 66, no usable config.php -> 78."""
    if not os.path.isdir(directory):
        raise NoInputError(f"Nextcloud installation {directory} does not exist")
    root = os.path.realpath(directory)
    config = os.path.join(root, "config", "config.php")
    try:
        st = os.stat(config)
    except FileNotFoundError:
        raise ConfigError(f"{config} does not exist: {directory} is not a Nextcloud "
                          f"installation") from None
    except OSError as exc:
        raise ConfigError(f"cannot reach {config}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{config} is not a file")
    return Installation(root, php or DEFAULT_PHP, st.st_uid, st.st_gid)


def php_environment() -> dict:
    """NC_* variables from our environment, for PHP children only.

    Nextcloud's Config::getValue() prefers NC_<key> over the files (Docker,
    NixOS); occ must see the same values the web server sees.  These were
    put there by the admin; nothing of ours is added.
    """
    return {key: value for key, value in os.environ.items() if key.startswith("NC_")}
