"""Which pieces make up the restore, in which order, and whether they may.

Everything here reads only the pieces' trailers, so a broken chain is
refused before anything is extracted, prepared or touched.  The restore
target is the newest piece (or --until); its parent links lead back to the
full backup.  Every link must be present, each from_lsn must equal its
parent's to_lsn, and every piece must come from the same chain and server
version.  Pieces off that path (incrementals a later differential
supersedes) are reported and left alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import DataError, NoInputError
from ..log import log
from .piece import SUFFIX, StoredPiece, read_stored


@dataclass(frozen=True)
class Chain:
    pieces: list[StoredPiece]     # full first, then in the order they must be applied
    unused: list[StoredPiece]

    @property
    def last(self):
        return self.pieces[-1].piece

    def listing(self) -> str:
        """Every piece, marked use/skip, and the point in time a restore reaches."""
        used = {id(stored) for stored in self.pieces}
        lines = [f"{'use ' if id(stored) in used else 'skip'} {os.path.basename(stored.path)}"
                 for stored in sorted(self.pieces + self.unused, key=lambda s: s.piece.sequence)]
        last = self.last
        return "\n".join(lines + [f"point in time: {last.finished or last.created} (LSN {last.to_lsn})"])


def load_pieces(directory: str) -> list[StoredPiece]:
    """Every piece file in directory (the writer's temporary files start with '.')."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        raise NoInputError(f"{directory} does not exist") from None
    pieces = [read_stored(os.path.join(directory, name)) for name in names
              if name.endswith(SUFFIX) and not name.startswith(".")]
    if not pieces:
        raise NoInputError(f"no mariabackup pieces (*{SUFFIX}) in {directory}")
    return pieces


def select_chain(pieces: list[StoredPiece], directory: str, until: int | None = None) -> Chain:
    chains = sorted({stored.piece.chain_id for stored in pieces})
    if len(chains) > 1:
        raise DataError(f"{directory} holds pieces of {len(chains)} different backup chains "
                        f"({', '.join(chains)}): pieces from different servers or full backups "
                        "cannot be combined; keep only one chain's pieces there")
    by_sequence = _unique_sequences(pieces)
    if until is not None and until not in by_sequence:
        raise DataError(_unreachable(until, by_sequence, directory))
    path = _path_to(by_sequence[until if until is not None else max(by_sequence)], by_sequence, directory)
    _check_versions(path)
    used = {stored.piece.sequence for stored in path}
    unused = [stored for seq, stored in sorted(by_sequence.items()) if seq not in used]
    for stored in unused:
        why = "after --until" if until is not None and stored.piece.sequence > until else \
            "superseded by a differential backup"
        log.info("not needed: %s (%s)", os.path.basename(stored.path), why)
    return Chain(path, unused)


def _unreachable(until: int, by_sequence: dict[int, StoredPiece], directory: str) -> str:
    """--until names a point the stored pieces do not reach: never an older one instead."""
    stored = ", ".join(f"#{seq}" for seq in sorted(by_sequence))
    jobs = {s.piece.parent_job for s in by_sequence.values() if s.piece.parent_sequence == until}
    job = f" (Bareos job {', '.join(sorted(j for j in jobs if j))})" if any(jobs) else ""
    return (f"--until {until}: backup #{until}{job} is missing from {directory}, which holds "
            f"{stored}; restore that backup's stream there too, or choose a stored one")


def _unique_sequences(pieces: list[StoredPiece]) -> dict[int, StoredPiece]:
    by_sequence: dict[int, StoredPiece] = {}
    for stored in pieces:
        other = by_sequence.setdefault(stored.piece.sequence, stored)
        if other.piece.piece_id != stored.piece.piece_id:
            raise DataError(f"two different pieces claim sequence {stored.piece.sequence}: "
                            f"{other.path} and {stored.path}")
    return by_sequence


def _path_to(newest: StoredPiece, by_sequence: dict[int, StoredPiece], directory: str) -> list[StoredPiece]:
    """From the newest piece back to the full one, then reversed."""
    path = [newest]
    while path[-1].piece.level != "full":
        child = path[-1].piece
        parent = by_sequence.get(child.parent_sequence)
        if parent is None or parent.piece.piece_id != child.parent_id or len(path) > len(by_sequence):
            job = f", Bareos job {child.parent_job}" if child.parent_job else ""
            raise DataError(f"broken chain: {child.describe()} builds on backup "
                            f"#{child.parent_sequence}{job}, which is missing from {directory}; "
                            "restore that job's stream there too")
        if child.from_lsn != parent.piece.to_lsn:
            raise DataError(f"broken chain: {child.describe()} starts at LSN {child.from_lsn}, "
                            f"but {parent.piece.describe()} ends at LSN {parent.piece.to_lsn}")
        path.append(parent)
    if path[-1].piece.from_lsn != 0:
        raise DataError(f"{path[-1].path}: a full backup must start at LSN 0")
    return path[::-1]


def _check_versions(path: list[StoredPiece]) -> None:
    full = path[0].piece
    for stored in path[1:]:
        if stored.piece.server_version != full.server_version:
            raise DataError(f"server version mismatch: {full.describe()} is from "
                            f"{full.server_version}, {stored.piece.describe()} from "
                            f"{stored.piece.server_version}")
