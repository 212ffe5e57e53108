"""btrfs: one read-only subvolume snapshot per subvolume (btrfs-progs).

A btrfs snapshot covers exactly one subvolume, is atomic and costs no data
copy; it must be created on the same filesystem, so ours go to
<mount point>/.dbpipe-snapshots/<installation key>/ of the mount that holds
the subvolume (mode 0700: the snapshot keeps the files' permissions, but
nobody but root may walk into yesterday's state).  A subvolume's root is the
directory with inode 256 (BTRFS_FIRST_FREE_OBJECTID); a subvolume nested
inside another shows up in the outer one's snapshot as an empty directory,
which is why nested() exists.
"""

from __future__ import annotations

import os
import re

from ..errors import CantCreateError, ConfigError, DbpipeError, PermissionDenied, UnavailableError
from ..process import COMMAND_TIMEOUT, find_tool, run
from .mounts import Mount
from .provider import Provider, SnapshotInfo, Volume

SUBVOLUME_ROOT_INODE = 256


class BtrfsProvider(Provider):
    name = "btrfs"
    fstypes = ("btrfs",)
    kind = "btrfs subvolume"
    listing = "'btrfs subvolume list'"
    home_name = ".dbpipe-snapshots"

    def volume(self, path: str, mount: Mount, key: str) -> Volume:
        root = subvolume_root(os.path.realpath(path), mount)
        info = self.info(root)
        uuid = info.uuid if info else ""
        return Volume(self.name, root, uuid, self.home(mount, key))

    def nested(self, volume: Volume, mount: Mount) -> list[str]:
        """`btrfs subvolume list -o` names the subvolumes directly below this
        one, relative to the filesystem's top level; mountinfo's root of the
        mount turns that into a path we can see."""
        result = _btrfs("subvolume", "list", "-o", volume.root)
        paths = []
        for line in result.splitlines():
            found = re.search(r" path (.+)$", line)
            if not found:
                continue
            in_fs = "/" + found.group(1).removeprefix("<FS_TREE>/")
            base = mount.root.rstrip("/")
            if in_fs == base or in_fs.startswith(base + "/"):
                paths.append(os.path.join(mount.point, in_fs[len(base):].lstrip("/")))
        return paths

    def flush(self, volume: Volume) -> None:
        _btrfs("filesystem", "sync", volume.root)

    def create(self, volume: Volume, destination: str) -> None:
        _btrfs("subvolume", "snapshot", "-r", volume.root, destination,
               what=f"snapshot of {volume.root}")

    def info(self, path: str) -> SnapshotInfo | None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if not os.path.isdir(path) or os.path.islink(path) or st.st_ino != SUBVOLUME_ROOT_INODE:
            return None
        shown = _btrfs("subvolume", "show", path)
        fields = dict(re.findall(r"^\s*([A-Za-z ]+):\s*(.*)$", shown, re.MULTILINE))
        value = lambda key: "" if fields.get(key, "-").strip() == "-" else fields[key].strip()  # noqa: E731
        return SnapshotInfo(value("UUID"), value("Parent UUID"), "readonly" in fields.get("Flags", ""))

    def delete(self, path: str) -> None:
        _btrfs("subvolume", "delete", path, what=f"delete snapshot {path}")


def subvolume_root(path: str, mount: Mount) -> str:
    """Walk up to the directory with inode 256 on the same device.

    Every subvolume has a device number of its own, so leaving the device
    means leaving the subvolume; reaching the mount point without finding
    inode 256 means the mount shows only a part of the subvolume, and its
    root - which a snapshot needs - is out of reach."""
    try:
        st = os.stat(path)
        while True:
            if st.st_ino == SUBVOLUME_ROOT_INODE:
                return path
            parent = os.path.dirname(path)
            if path == mount.point or parent == path:
                break
            parent_st = os.stat(parent)
            if parent_st.st_dev != st.st_dev:
                break
            path, st = parent, parent_st
    except OSError as exc:
        raise UnavailableError(f"cannot stat {exc.filename}: {exc.strerror}") from None
    raise ConfigError(f"the btrfs subvolume holding {path} is not visible at {mount.point} "
                      f"(the mount shows only part of it): cannot snapshot it")


def _btrfs(*args: str, what: str = "") -> str:
    argv = [find_tool("btrfs", package_hint="btrfs-progs"), *args]
    result = run(argv, timeout=COMMAND_TIMEOUT)
    if result.code != 0:
        raise _failure(what or f"btrfs {args[0]} {args[1]}", result.last_error_line() or f"exit {result.code}")
    return result.stdout


def _failure(what: str, line: str) -> DbpipeError:
    """One line that says which of the usual causes it was."""
    line = line.removeprefix("ERROR: ")
    lowered = line.lower()
    if "no space left" in lowered or "quota exceeded" in lowered:
        return CantCreateError(f"{what}: no space left on the filesystem ({line})")
    if "not permitted" in lowered or "permission denied" in lowered:
        return PermissionDenied(f"{what}: permission denied ({line})")
    if "read-only file system" in lowered:
        return CantCreateError(f"{what}: the filesystem is read-only ({line})")
    return UnavailableError(f"{what}: {line}")
