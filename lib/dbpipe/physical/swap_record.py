"""The record a copy-back keeps beside the data directory while it swaps it.

A copy-back killed mid-way (SIGKILL, a crash) cannot put anything back, and
afterwards the directories alone do not say which is which: the killed run's
unfinished copy sits in the data directory's place, the real pre-restore data
in <datadir>.dbpipe-old-<t1>.  A rerun that simply moved "the data directory"
aside again would call the unfinished copy the previous data directory.  So,
as the Nextcloud hooks do, the swap writes a record before its first move -
which directory was moved where - marks it restored once the new server
answered, and removes it only after a success or a complete rollback.  The
next copy-back reads it first: a restored swap is finished, anything else is
rolled back by the record before the new swap begins.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

from .. import records
from ..errors import DataError
from ..files import exclusive_lock

SUFFIX = ".dbpipe-copy-back"
MOVING, RESTORED = "moving", "restored"


@dataclass(frozen=True)
class Swap:
    datadir: str
    kept: str | None              # where the previous data directory went (None: there was none)
    failed: str                   # where an unfinished copy goes on rollback
    prepared: str                 # what was being restored
    phase: str = MOVING


class SwapRecord:
    """The record file and its lock beside datadir.  A point-in-time restore's
    swap (pitr.swap) keeps its own kind of record the same way: suffix, what
    (for the messages) and kind (the dataclass) say which."""

    def __init__(self, datadir: str, suffix: str = SUFFIX, what: str = "copy-back", kind: type = Swap):
        self.path = datadir + suffix + ".json"
        self.lock_path = datadir + suffix + ".lock"
        self.datadir, self.what, self.kind = datadir, what, kind

    @contextlib.contextmanager
    def locked(self):
        with exclusive_lock(self.lock_path, f"another {self.what} into {self.datadir} is running"):
            yield self

    def load(self):
        return records.load(self.path, lambda data: self.kind(**data), lambda exc: DataError(
            f"the {self.what} record {self.path} is unreadable ({exc}): "
            "look at the directories beside it and remove it by hand"))

    def save(self, swap) -> None:
        records.save(self.path, asdict(swap))

    def clear(self) -> None:
        records.remove(self.path)
