"""What a killed run leaves behind.

Temporary things - private directories, files being written beside their
final name, SQLite's new database file - carry their owner in their name:
`<prefix><pid>.<tag>.<random>`, where tag identifies that process instance
(a hash of the boot id and the process's start time, so a recycled pid is
not mistaken for the owner).  Whoever creates one first removes those whose
owner is gone, and says so: a crash leaves garbage only until the next run,
and never silently.  A live owner's entries are never touched.  (MariaDB
staging databases cannot carry a pid - the server may be elsewhere - so they
are held by a named lock instead: engines/mysql/sides.py.)  What a restore
keeps on purpose is kept.py's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil

from .log import log

_OWNER = r"(\d+)\.([0-9a-f]{8})\."
_RANDOM = r"[a-z0-9_]+"
# the private directories of credentials.private_directory: dbpipe-[kind-]<owner><random>
TEMPORARY_DIRECTORY = re.compile(rf"^dbpipe-(?:[a-z]+-)?{_OWNER}{_RANDOM}$")
_swept: set[tuple[str, str]] = set()


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _tag(pid: int) -> str | None:
    """The instance tag of a running process (None: no such process, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == b"Z":
        return None
    return hashlib.sha256(f"{_boot_id()}:{fields[19].decode()}".encode()).hexdigest()[:8]


def owner_tag() -> str:
    """This process, as it goes into a name: '<pid>.<tag>.'."""
    pid = os.getpid()
    return f"{pid}.{_tag(pid)}."


def owner_gone(pid: int, tag: str) -> bool:
    return _tag(pid) != tag


def owned_pattern(prefix: str) -> re.Pattern:
    """Names prefix + owner tag + random part, as tempfile makes them."""
    return re.compile(rf"^{re.escape(prefix)}{_OWNER}{_RANDOM}$")


def sweep(directory: str, pattern: re.Pattern, what: str,
          side_suffixes: tuple[str, ...] = ()) -> list[str]:
    """Remove the entries of directory matching pattern whose owner is gone
    (with their side files, e.g. SQLite's -wal); once per process and place."""
    key = (os.path.realpath(directory), pattern.pattern)
    if key in _swept:
        return []
    _swept.add(key)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        found = pattern.match(name)
        if found is None or not owner_gone(int(found.group(1)), found.group(2)):
            continue
        path = os.path.join(directory, name)
        if _remove(path, side_suffixes):
            log.warning("removed %s %s, left by dbpipe process %s, which is gone", what, path,
                        found.group(1))
            removed.append(path)
    return removed


def _remove(path: str, side_suffixes: tuple[str, ...]) -> bool:
    try:
        st = os.lstat(path)
        if os.geteuid() not in (0, st.st_uid):
            return False  # not ours to remove
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        for suffix in side_suffixes:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + suffix)
        return True
    except OSError as exc:
        log.warning("cannot remove leftover %s: %s", path, exc.strerror)
        return False
