"""Small JSON records that must survive whatever happens to the process.

Every record dbpipe keeps - a hook's changes, a snapshot backup's mounts, a
chain's state, a prepared result, a replace-mode restore, a copy-back's
swap - is written *before* the change it describes is made, so a SIGKILL or
a reboot leaves enough behind for the next run.  Hence one way to write
them (0600 from its creation, in a 0700 directory, synced and renamed into
place: a crash leaves the old or the new record, never half of one), one
way to read them (a damaged record is a clear one-line error that says what
to check, never a traceback) and one way to remove them (durably).
"""

from __future__ import annotations

import contextlib
import os

from .errors import CantCreateError
from .files import atomic_write, fsync_directory

TYPE_CHECKING = False
if TYPE_CHECKING:  # every dump imports this (safety.py): no typing, no json until a record is there
    from collections.abc import Callable

    from .errors import DbpipeError

# what a damaged record raises while it is read and turned into its dataclass
DAMAGED = (OSError, ValueError, KeyError, TypeError)


def save(path: str, data: dict, directory_name: str = "") -> None:
    """Replace the record at path atomically (0600), synced before we act on it.

    directory_name names the directory in the error when it cannot be made
    (default: its path)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise CantCreateError(f"cannot create {directory_name or directory}: {exc.strerror}") from None
    import json

    with atomic_write(path) as handle:
        handle.write(json.dumps(data, indent=1).encode() + b"\n")


def load(path: str, build: Callable[[dict], object], damaged: Callable[[Exception], DbpipeError]):
    """The record at path built by build(data), None when there is none.

    A record that cannot be read, parsed or built raises damaged(exc): the
    caller's one line saying what to check by hand."""
    try:
        with open(path, encoding="utf-8") as handle:
            import json

            return build(json.load(handle))
    except FileNotFoundError:
        return None
    except DAMAGED as exc:
        raise damaged(exc) from None


def remove(path: str) -> None:
    """Remove the record, durably; a record that is not there is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        fsync_directory(os.path.dirname(os.path.abspath(path)))
