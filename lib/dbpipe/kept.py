"""What a restore keeps on purpose: the replaced database, the old data
directory.  These copies are listed after each restore with their size, and
`keep_newest` bounds them when asked to; no leftover sweep (leftovers.py)
ever touches them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from .log import log
from .progress import human_bytes


def directory_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


@dataclass(frozen=True)
class KeptCopy:
    """A copy a restore kept on purpose: where it is, how big, and a stamp
    that sorts oldest first."""

    name: str
    size: int
    stamp: str


def keep_newest(copies: list[KeptCopy], keep: int | None, remove: Callable[[KeptCopy], None],
                what: str) -> list[KeptCopy]:
    """List the kept copies (oldest first) with their size; with keep, remove
    all but the newest keep of them first."""
    copies = sorted(copies, key=lambda copy: (copy.stamp, copy.name))
    if keep is not None and len(copies) > keep:
        excess, copies = copies[:len(copies) - keep], copies[len(copies) - keep:]
        for copy in excess:
            remove(copy)
            log.info("removed %s %s (%s): --keep-old-copies %d", what, copy.name,
                     human_bytes(copy.size), keep)
    for copy in copies:
        log.info("kept %s: %s (%s)", what, copy.name, human_bytes(copy.size))
    if copies and keep is None:
        log.info("in all %d kept, %s (--keep-old-copies N keeps only the newest N)", len(copies),
                 human_bytes(sum(copy.size for copy in copies)))
    return copies
