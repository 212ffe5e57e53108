"""The bpipe writer: land each restored piece as its own verified file.

Bareos gives every piece of a chain the same pseudo file name, so the name
on disk comes from the stream's own trailer (chain, sequence, level, LSN
range, job): any number of writer runs in one restore, or in several,
leave every piece separately, sorted in chain order.  The file appears only
after its length and SHA-256 were checked; a bad stream leaves nothing.
"""

from __future__ import annotations

from ..errors import DataError
from ..files import store_by_trailer
from ..log import log
from ..progress import human_bytes
from ..transfer import Pump
from .piece import KIND, Piece, StoredPiece, read_stored, stream_header


def store(in_fd: int, directory: str) -> StoredPiece:
    """Read one piece from in_fd to its end and publish it under directory."""
    with Pump(in_fd).draining() as pump:
        header = pump.require_header("stream to store")
        if header != stream_header():
            raise DataError(f"not a mariabackup piece: a {header.engine} stream "
                            "(restore it with dbpipe-restore)")
        path, trailer = store_by_trailer(pump, directory,
                                         lambda trailer: Piece.from_trailer(trailer, "stdin").file_name(), KIND)
    piece = Piece.from_trailer(trailer, path)
    log.info("stored %s as %s (%s, sha256 %s)", piece.describe(), path, human_bytes(trailer.bytes),
             trailer.sha256)
    return read_stored(path)
