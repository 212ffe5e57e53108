"""The mount table, read-only bind mounts, and unmounting.

The kernel's own view (/proc/self/mountinfo) decides what is mounted where:
it names each mount's filesystem type and the directory of the filesystem
it shows (a bind mount of a subdirectory shows that subdirectory), which is
all a provider needs to tell which filesystem a path lives on.  Mounting
goes through util-linux' mount(8) and umount(8), argv lists, no shell.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ..errors import PermissionDenied, UnavailableError
from ..process import SHORT_TIMEOUT, find_tool, run

MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class Mount:
    mount_id: int
    root: str           # the directory of the filesystem this mount shows
    point: str          # where it is mounted
    fstype: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_table() -> list[Mount]:
    with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as handle:
        lines = handle.read().splitlines()
    table = []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        table.append(Mount(int(fields[0]), _unescape(fields[3]), _unescape(fields[4]),
                           tail[0], _unescape(tail[1])))
    return table


def _below(path: str, directory: str) -> bool:
    return directory == "/" or path == directory or path.startswith(directory.rstrip("/") + "/")


def mount_of(path: str, table: list[Mount] | None = None) -> Mount:
    """The mount a (real) path lives on: the last-mounted one with the longest
    mount point above it (later mounts hide earlier ones on the same point)."""
    path = os.path.realpath(path)
    best = None
    for mount in table if table is not None else mount_table():
        if _below(path, mount.point) and (best is None or len(mount.point) >= len(best.point)):
            best = mount
    if best is None:
        raise UnavailableError(f"no mount holds {path} ({MOUNTINFO} unreadable?)")
    return best


def mounts_below(path: str, table: list[Mount] | None = None) -> list[Mount]:
    """Mounts strictly below path: a snapshot of path's filesystem never contains them."""
    path = os.path.realpath(path)
    return [m for m in (table if table is not None else mount_table())
            if m.point != path and _below(m.point, path)]


def is_mounted(point: str) -> bool:
    return any(m.point == point for m in mount_table())


def bind_readonly(source: str, target: str) -> None:
    """Show source at target, read-only (mount(8) does the bind and the ro remount)."""
    _mount_command(["mount", "--bind", "-o", "ro", source, target], f"bind mount {target}")


def unmount(target: str) -> None:
    _mount_command(["umount", target], f"unmount {target}")


def _mount_command(argv: list[str], what: str) -> None:
    argv = [find_tool(argv[0], package_hint="util-linux"), *argv[1:]]
    result = run(argv, timeout=SHORT_TIMEOUT)
    if result.code != 0:
        line = result.last_error_line() or f"exit {result.code}"
        if os.geteuid() != 0 or "permission denied" in line.lower() or "must be superuser" in line:
            raise PermissionDenied(f"cannot {what}: {line} (snapshot mode runs as root)")
        raise UnavailableError(f"cannot {what}: {line}")
