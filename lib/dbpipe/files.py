"""Files that appear all at once or not at all.

Dumps, restored streams, state records and exported items are written to a
0600 temporary file beside their final name (same filesystem), synced, and
only then renamed into place - or linked, where an existing file must never be
replaced.  A failure or a cancel removes the temporary file; readers never see
half a file.  A kill cannot remove it: its name carries our pid, and the next
write of the same kind in that directory removes it (leftovers.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

from .errors import CantCreateError, DbpipeError, IOFailure, NoInputError, TempFailure
from .leftovers import owned_pattern, owner_tag, sweep
from .log import log
from .stream import write_all

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~5 ms to import; annotations are never evaluated
    from .process import RunAs
    from .stream import Trailer
    from .transfer import Pump

STATE_ROOT_ENV = "DBPIPE_STATE_DIR"
DEFAULT_STATE_ROOT = "/var/lib/dbpipe"


def state_root() -> str:
    """Where dbpipe keeps state: /var/lib/dbpipe, or $DBPIPE_STATE_DIR (e.g. set
    for bareos-fd in a systemd drop-in, or by the tests)."""
    return os.environ.get(STATE_ROOT_ENV) or DEFAULT_STATE_ROOT


def open_input(path: str):
    """An unbuffered binary handle on the file at path, or on stdin for "-".

    stdin is duplicated, so closing the handle leaves sys.stdin alone.  A
    missing or unreadable file is bad input (exit 66), said in one line."""
    if path == "-":
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    try:
        return open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise NoInputError(f"{path} does not exist") from None
    except OSError as exc:
        raise NoInputError(f"cannot open {path}: {exc.strerror}") from None


@contextlib.contextmanager
def temporary_beside(directory: str, prefix: str, mode: int = 0o600, owner: RunAs | None = None,
                     side_suffixes: tuple[str, ...] = ()) -> Iterator[tuple[object, str]]:
    """(binary handle, path) of a new file in directory - the directory of its
    final name, so that publishing it is one atomic rename.  It is removed on
    exit unless the caller moved it away, with the side files a program made
    beside it (SQLite's -wal, say); a killed run's leftovers go at the next
    run (leftovers.sweep)."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        sweep(directory, owned_pattern(prefix), "unfinished file", side_suffixes)
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=prefix + owner_tag())
    except OSError as exc:
        raise CantCreateError(f"cannot create a file in {directory}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w+b", buffering=0) as handle:
            os.fchmod(fd, mode)
            if owner:
                os.fchown(fd, owner.uid, owner.gid)
            yield handle, temporary
    finally:
        for leftover in [temporary] + [temporary + suffix for suffix in side_suffixes]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)


@contextlib.contextmanager
def atomic_write(path: str, overwrite: bool = True) -> Iterator[object]:
    """A binary handle whose content becomes `path` when the block succeeds.

    overwrite=False never replaces an existing file, not even one that
    appeared while we were writing."""
    if not overwrite and os.path.exists(path):
        raise CantCreateError(f"{path} exists; use --force to overwrite it")
    directory, name = os.path.split(os.path.abspath(path))
    with temporary_beside(directory, f".{name}.") as (handle, temporary):
        try:
            yield handle
            os.fsync(handle.fileno())
        except OSError as exc:
            raise CantCreateError(f"cannot write {path}: {exc.strerror}") from None
        publish(temporary, path, overwrite)


def write_received(pump: Pump, handle, what: str, with_trailer: bool = True) -> Trailer:
    """Write the stream on pump to handle as received and return the verified
    trailer.

    with_trailer keeps the trailer in the file, so dbpipe-verify or a later
    restore can check it again; a spool fed to a client leaves it out.  The
    whole input is read even when a write fails (disk full): the failure is
    IOFailure (exit 74) naming `what`, and a bad stream is the pump's
    DataError - either way the caller's temporary file is dropped."""
    trailer = pump.run(lambda data: write_all(handle.fileno(), data))
    if pump.sink_error is not None:
        raise IOFailure(f"cannot write {what}: {pump.sink_error.strerror}")
    if with_trailer:
        write_all(handle.fileno(), pump.verifier.trailer_bytes)
    return trailer


def store_by_trailer(pump: Pump, directory: str, name_of: Callable[[Trailer], str],
                     kind: str) -> tuple[str, Trailer]:
    """Write the stream on pump into directory, durably, under the name its
    trailer gives - known only at the end.  The same stream stored twice (a
    restore run again) is fine; another one under that name is refused."""
    from .stream import read_ends

    with temporary_beside(directory, ".incoming-") as (handle, temporary):
        trailer = write_received(pump, handle, f"in {directory}")
        os.fsync(handle.fileno())
        path = os.path.join(directory, name_of(trailer))
        try:
            publish(temporary, path, overwrite=False)
        except CantCreateError:
            if not os.path.lexists(path):
                raise
            try:
                same = read_ends(path, pump.header(), kind)[1].sha256 == trailer.sha256
            except DbpipeError:
                same = False
            if not same:
                raise CantCreateError(f"{path} exists with different content; move it away first") from None
            log.info("%s was already there with the same content", path)
    return path, trailer


def publish(temporary: str, path: str, overwrite: bool) -> None:
    """Move a finished file into place and make the new name durable."""
    try:
        if overwrite:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    except FileExistsError:
        raise CantCreateError(f"{path} exists; use --force to overwrite it") from None
    except OSError as exc:
        raise CantCreateError(f"cannot create {path}: {exc.strerror}") from None
    fsync_directory(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def exclusive_lock(path: str, busy: str):
    """Hold an flock on path (created 0600, directory 0700) for the block.

    Held by another process: TempFailure (exit 75) with the message busy - the
    caller can simply try again later.  The kernel drops the lock when we die,
    so a killed job never leaves a stale lock behind."""
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise CantCreateError(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TempFailure(f"{busy} (lock {path} held); try again later") from None
        yield
    finally:
        os.close(fd)


def sync_if_file(fd: int) -> None:
    """fsync an output that may be a file or a pipe: pipes and terminals
    cannot be synced and need not be."""
    try:
        os.fsync(fd)
    except OSError:
        pass


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move(source: str, destination: str) -> None:
    """Rename durably, never onto something (a crash must not undo a move a
    record relies on: a data directory swapped aside)."""
    if os.path.lexists(destination):
        raise CantCreateError(f"cannot move {source} to {destination}: it exists")
    try:
        os.rename(source, destination)
    except OSError as exc:
        raise CantCreateError(f"cannot move {source} to {destination}: {exc.strerror}") from None
    fsync_directory(os.path.dirname(destination))
