"""The bpipe writer: land each restored piece as its own verified file.

Bareos gives every piece of a chain the same pseudo file name, so the name
on disk comes from the stream's own trailer (chain, sequence, level, LSN
range, job): any number of writer runs in one restore, or in several,
leave every piece separately, sorted in chain order.  The file appears only
after its length and SHA-256 were checked; a bad stream leaves nothing.
"""

from __future__ import annotations

import os

from ..errors import CantCreateError, DataError, DbpipeError
from ..files import publish, temporary_beside, write_received
from ..bareos import BareosJob
from ..log import log
from ..progress import human_bytes
from ..transfer import Pump
from .piece import Piece, StoredPiece, read_stored, stream_header

def landing_dir(into: str, where_arg: str | None, job: BareosJob) -> str:
    """--into, below the Bareos restore location when there is one (not /)."""
    where = job.restore_location(where_arg)
    return os.path.join(where, into.lstrip("/")) if where else into


def store(in_fd: int, directory: str) -> StoredPiece:
    """Read one piece from in_fd to its end and publish it under directory."""
    with Pump(in_fd).draining() as pump:
        header = pump.require_header("stream to store")
        if header != stream_header():
            raise DataError(f"not a mariabackup piece: a {header.engine} stream "
                            "(restore it with dbpipe-restore)")
        return _write(pump, directory)


def _write(pump: Pump, directory: str) -> StoredPiece:
    """The name on disk comes from the trailer, so it is known only at the end."""
    with temporary_beside(directory, ".incoming-") as (handle, temporary):
        trailer = write_received(pump, handle, f"in {directory}")
        os.fsync(handle.fileno())
        piece = Piece.from_trailer(trailer, "stdin")
        path = os.path.join(directory, piece.file_name())
        _publish(temporary, path, trailer.sha256)
    log.info("stored %s as %s (%s, sha256 %s)", piece.describe(), path, human_bytes(trailer.bytes),
             trailer.sha256)
    return read_stored(path)


def _publish(temporary: str, path: str, sha256: str) -> None:
    """Link the verified file into place; the same piece restored twice is fine."""
    try:
        publish(temporary, path, overwrite=False)
    except CantCreateError:
        if not os.path.lexists(path):
            raise
        if _sha_of_stored(path) != sha256:
            raise CantCreateError(f"{path} exists with different content; move it away first") from None
        log.info("%s was already there with the same content", path)


def _sha_of_stored(path: str) -> str:
    try:
        return read_stored(path).sha256
    except DbpipeError:
        return ""
