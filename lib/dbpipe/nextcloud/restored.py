"""Which files a restore job put back, and whose they are.

Bareos gives a restored file its owner, mode and mtime from the backup, but
nobody can set a ctime: every file and directory the job wrote has a ctime at
or after the job's start mark (JobLog.begin, stamped by the same kernel
clock).  So the client finds the restore's files on disk by itself.  The
alternatives need the director: bconsole and the catalog live on the director
host, a restore job's selection is not in the catalog (`list files` knows only
backups), and the bootstrap names volume positions, not paths.

A file a user changed while the job ran (or within the kernel's timestamp
tick, a few ms, before its start) counts as well; for files:scan that costs
a scan of that user, nothing more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

# below data/<user>/: what files:scan looks at (cache/ and uploads/ change on their own)
USER_TREES = ("files", "files_trashbin", "files_versions")


def changed_since(top: str, since_ns: int) -> Iterator[str]:
    """Every path below top (top itself not) whose ctime is since_ns or later;
    symbolic links are not followed."""
    try:
        entries = list(os.scandir(top))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if info.st_ctime_ns >= since_ns:
            yield entry.path
        if entry.is_dir(follow_symlinks=False):
            yield from changed_since(entry.path, since_ns)


def restored_since(path: str, since_ns: int) -> bool:
    """Whether the file at path came back (or changed) at since_ns or later."""
    try:
        return os.stat(path).st_ctime_ns >= since_ns
    except FileNotFoundError:
        return False


def any_restored(top: str, since_ns: int) -> bool:
    return next(changed_since(top, since_ns), None) is not None


def restored_by_user(data_dir: str, since_ns: int) -> dict[str, int]:
    """user -> number of their restored paths (files, trash, versions); users
    are the directories of the data directory that hold files/."""
    found = {}
    try:
        entries = sorted(os.scandir(data_dir), key=lambda entry: entry.name)
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or not os.path.isdir(os.path.join(entry.path, "files")):
            continue
        count = sum(1 for tree in USER_TREES for _ in changed_since(os.path.join(entry.path, tree), since_ns))
        if count:
            found[entry.name] = count
    return found
