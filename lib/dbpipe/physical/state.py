"""The reader's memory of the chain: which backups succeeded, up to which LSN.

The state is one JSON file, replaced atomically (temp file, fsync, rename)
and only after a stream ended successfully, so a failed or cancelled backup
leaves the chain exactly as it was.  A lock file keeps two backups of the
same chain from running at once.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from .. import records, stamps
from ..errors import DataError
from ..files import exclusive_lock, fsync_directory, state_root
from ..log import log
from .piece import Piece


def chains_root() -> str:
    """Where chains live: below the one state root (files.state_root, which
    follows $DBPIPE_STATE_DIR), like every other record of dbpipe."""
    return os.path.join(state_root(), "mariabackup")


STATE_FILE = "chain.json"
LOCK_FILE = "lock"
FORMAT = 1


@dataclass(frozen=True)
class ServerIdentity:
    """What must stay the same for an incremental to build on an earlier backup."""

    hostname: str
    datadir: str
    port: int
    version: str
    instance_id: str = ""         # identity.Instance: "" in states of older versions
    redo_log_start: int = -1


@dataclass
class ChainState:
    chain_id: str
    server: ServerIdentity
    pieces: list[Piece] = field(default_factory=list)

    @property
    def full(self) -> Piece:
        return self.pieces[0]

    @property
    def last(self) -> Piece:
        return self.pieces[-1]

    def base_for(self, level: str) -> Piece:
        """Incremental: relative to the last successful backup; differential: to the full."""
        return self.last if level == "incremental" else self.full

    def as_dict(self) -> dict:
        return {"format": FORMAT, "chain_id": self.chain_id, "server": self.server.__dict__,
                "pieces": [piece.as_dict() for piece in self.pieces]}

    @classmethod
    def from_dict(cls, data: dict) -> "ChainState":
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown state format {data.get('format')!r}")
        pieces = [Piece.from_dict(item) for item in data["pieces"]]
        for piece in pieces:
            piece.check("state")
        if not pieces or pieces[0].level != "full" or pieces[0].chain_id != data["chain_id"]:
            raise ValueError("the chain does not start with its full backup")
        return cls(data["chain_id"], ServerIdentity(**data["server"]), pieces)


class StateDir:
    """The directory holding one chain's state and lock."""

    def __init__(self, path: str):
        self.path = path
        self.file = os.path.join(path, STATE_FILE)

    def load(self) -> tuple[ChainState | None, str]:
        """The state, or None and the reason why there is no usable one."""
        try:
            state = records.load(self.file, ChainState.from_dict,
                                 lambda exc: DataError(f"the chain state {self.file} is unusable ({exc})"))
        except DataError as exc:
            return None, str(exc)
        if state is None:
            return None, f"no chain state in {self.path} (no successful backup yet)"
        return state, ""

    def save(self, state: ChainState) -> None:
        """Replace the state atomically; a crash leaves the old or the new file."""
        records.save(self.file, state.as_dict())

    def retire(self, reason: str) -> str | None:
        """Move the state aside so that the next backup is a full one."""
        if not os.path.exists(self.file):
            return None
        kept = f"{self.file}.retired-{stamps.for_name()}"
        os.replace(self.file, kept)
        fsync_directory(self.path)
        log.info("chain state retired to %s (%s): the next backup will be a full one", kept, reason)
        return kept

    @contextlib.contextmanager
    def locked(self):
        """Hold the chain's lock; another holder means another backup is running."""
        with exclusive_lock(os.path.join(self.path, LOCK_FILE), "another backup of this chain is running"):
            yield self

