"""A real btrfs for the snapshot tests: a sparse image on a loop device
(mount -o loop), removed again afterwards.  Where root or btrfs-progs are
missing the tests skip naming the package - and fail in CI (CI=true), which
installs them (testkit/prerequisites.py); a kernel without btrfs or a machine
without loop devices skips everywhere, by design."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .servers import BARE_PATH
from .prerequisites import missing, missing_tools, packages_for

IMAGE_SIZE = "384M"
TOOLS = ("mkfs.btrfs", "btrfs", "losetup", "mount", "umount")


def problem() -> tuple[str, str | None] | None:
    """None if a btrfs can be made here, else (reason, remedy or None)."""
    if os.geteuid() != 0:
        return "snapshot mode needs root (btrfs snapshots, bind mounts)", "run the tests as root"
    absent = missing_tools(TOOLS, BARE_PATH)
    if absent:
        return (f"{', '.join(absent)} missing",
                f"install {' '.join(packages_for(absent))} (tools/system-deps test)")
    with open("/proc/filesystems") as handle:
        if "btrfs" not in handle.read().split():
            return "btrfs is not in /proc/filesystems (no btrfs in this kernel)", None
    return None


def why_not() -> str | None:
    """The one-line reason this machine cannot make a btrfs, or None."""
    found = problem()
    return None if found is None else (f"{found[0]}: {found[1]}" if found[1] else found[0])


def loop_or_skip(size: str | None = None):
    """A fresh btrfs on a loop device for a fixture to yield, removed after;
    the test is skipped (in CI: fails where a package is missing), saying
    why, where this machine cannot make one."""
    found = problem()
    if found:
        missing(*found)
    try:
        loop = LoopBtrfs(**({"size": size} if size else {}))
    except RuntimeError as exc:
        missing(f"cannot mount a btrfs on a loop device here: {exc}")
    yield loop
    loop.remove()


class LoopBtrfs:
    """mkfs.btrfs on a sparse image, mounted through a loop device."""

    def __init__(self, size: str = IMAGE_SIZE, base: str = "/var/tmp"):
        self.base = Path(tempfile.mkdtemp(prefix="dbpipe-btrfs-", dir=base))
        os.chmod(self.base, 0o755)
        self.image, self.mount = self.base / "fs.img", self.base / "mnt"
        self.mounted = False
        try:
            subprocess.run(["truncate", "-s", size, str(self.image)], check=True)
            _run("mkfs.btrfs", "-q", str(self.image))
            self.mount.mkdir()
            _run("mount", "-o", "loop", str(self.image), str(self.mount))
            self.mounted = True
            os.chmod(self.mount, 0o755)
        except BaseException:
            self.remove()
            raise

    def subvolume(self, path: Path) -> Path:
        _run("btrfs", "subvolume", "create", str(path))
        return path

    def remove(self) -> None:
        if self.mounted:
            _run("umount", str(self.mount))     # -o loop: the loop device goes with it
            self.mounted = False
        shutil.rmtree(self.base, ignore_errors=True)


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, env={"PATH": BARE_PATH})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")


def subvolumes(below: Path) -> list[str]:
    """Subvolume roots (inode 256) below a directory, as paths."""
    found = []
    for directory, dirs, _files in os.walk(below):
        for name in dirs:
            path = os.path.join(directory, name)
            if os.lstat(path).st_ino == 256:
                found.append(path)
    return sorted(found)


def mounts_below(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return [p for p in points if p.startswith(str(path).rstrip("/") + "/")]
