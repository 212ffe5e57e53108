"""One backup of a chain ("piece"): its metadata, how it travels in a dbpipe
trailer, and the file name the writer gives it.

The trailer is written after mariabackup finished, so it can carry what is
only known then (the LSN range).  Parent links, not LSNs alone, give the
order: an incremental taken while nothing changed has from_lsn == to_lsn, and
MyISAM/Aria files still differ between such pieces.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from ..bareos import LEVELS
from ..errors import DataError
from ..stream import Header, Trailer, read_ends

ENGINE = "mariabackup"
SUFFIX = ".dbpipe"
KIND = "mariabackup piece"            # what the stream is, in messages
CHAIN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6,32}$")
PIECE_ID = re.compile(r"^[0-9a-f]{8,64}$")
JOB_ID = re.compile(r"^[0-9]{0,20}$")


def stream_header() -> Header:
    return Header(ENGINE, "all", "")


@dataclass(frozen=True)
class Piece:
    """Where one backup sits in its chain and what it contains."""

    level: str
    chain_id: str
    piece_id: str
    sequence: int
    from_lsn: int
    to_lsn: int
    server_version: str
    created: str                  # UTC, when the backup started
    finished: str = ""            # UTC, when mariabackup completed: the data's point in time
    parent_id: str = ""           # "" for a full backup
    parent_sequence: int = -1
    parent_job: str = ""
    job_id: str = ""              # Bareos JobId, when run by Bareos
    hostname: str = ""
    tool_version: str = ""
    xbstream_bytes: int = 0       # payload length, to cut the framing off on extraction

    # --- trailer ---------------------------------------------------------------
    EXTRA = {  # attribute -> trailer key
        "level": "level", "chain_id": "chain-id", "piece_id": "piece-id", "sequence": "sequence",
        "from_lsn": "from-lsn", "to_lsn": "to-lsn", "finished": "finished",
        "parent_id": "parent-id", "parent_sequence": "parent-sequence", "parent_job": "parent-job",
        "job_id": "bareos-job-id", "hostname": "hostname", "tool_version": "tool-version",
        "xbstream_bytes": "xbstream-bytes",
    }

    def trailer_extra(self) -> dict:
        return {key: str(getattr(self, attr)) for attr, key in self.EXTRA.items()}

    @classmethod
    def from_trailer(cls, trailer: Trailer, origin: str) -> "Piece":
        if trailer.engine != ENGINE:
            raise DataError(f"{origin}: a {trailer.engine} stream, not a mariabackup piece")
        values = {}
        try:
            for attr, key in cls.EXTRA.items():
                kind = cls.__dataclass_fields__[attr].type
                raw = trailer.extra.get(key, "")
                values[attr] = int(raw) if kind == "int" else raw
        except ValueError:
            raise DataError(f"{origin}: malformed mariabackup metadata in the trailer") from None
        piece = cls(server_version=trailer.server_version, created=trailer.created, **values)
        piece.check(origin)
        return piece

    def check(self, origin: str) -> None:
        """Values that end up in file names and chain logic must be well-formed."""
        problems = [
            self.level not in LEVELS and "level",
            not CHAIN_ID.match(self.chain_id) and "chain-id",
            not PIECE_ID.match(self.piece_id) and "piece-id",
            self.parent_id and not PIECE_ID.match(self.parent_id) and "parent-id",
            (self.level == "full") != (not self.parent_id) and "parent-id",
            not JOB_ID.match(self.job_id) and "bareos-job-id",
            not JOB_ID.match(self.parent_job) and "parent-job",
            min(self.sequence, self.from_lsn, self.to_lsn, self.xbstream_bytes) < 0 and "numbers",
        ]
        bad = [p for p in problems if p]
        if bad:
            raise DataError(f"{origin}: malformed mariabackup metadata ({', '.join(bad)})")

    # --- names and state ---------------------------------------------------------
    def file_name(self) -> str:
        """Sorts by chain (its start time) and position; says what it is at a glance."""
        job = f"-job{self.job_id}" if self.job_id else ""
        return (f"mb-{self.chain_id}-{self.sequence:04d}-{self.level}"
                f"-lsn{self.from_lsn}-{self.to_lsn}{job}{SUFFIX}")

    def describe(self) -> str:
        job = f", Bareos job {self.job_id}" if self.job_id else ""
        return f"#{self.sequence} {self.level} (LSN {self.from_lsn}..{self.to_lsn}{job})"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Piece":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


@dataclass(frozen=True)
class StoredPiece:
    """A piece file on disk and what its trailer says."""

    path: str
    piece: Piece
    header_bytes: int             # length of the dbpipe header line before the xbstream
    sha256: str                   # of the payload, as the trailer says


def read_stored(path: str) -> StoredPiece:
    """Header and trailer of a stored piece, without reading the payload.

    The payload's SHA-256 is checked later, while it is extracted.
    """
    header_bytes, trailer = read_ends(path, stream_header(), KIND)
    return StoredPiece(path, Piece.from_trailer(trailer, path), header_bytes, trailer.sha256)
