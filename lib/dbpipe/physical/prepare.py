"""Extract, verify and prepare a chain into DIR/prepared.

Every piece is read in full and checked against its trailer first, so a
damaged one is named before anything is extracted or replaced.  Each piece
is extracted into its own fresh directory while its SHA-256 is checked
again, the full backup is prepared, and each incremental/differential is
applied exactly once (mariabackup cannot apply one twice).  Everything
happens in a scratch directory; DIR/prepared and its record DIR/prepared.json
appear (or replace an earlier result) only when all of it succeeded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

from .. import records
from ..credentials import private_directory
from ..errors import CantCreateError, DataError, NoInputError, UnavailableError
from ..leftovers import owned_pattern
from ..log import log
from ..progress import Progress
from ..process import Child
from ..stream import write_all
from ..transfer import Pump
from .chain import Chain, load_pieces, select_chain
from .piece import StoredPiece
from .tool import Tools, completed_ok

PREPARED = "prepared"
RECORD = "prepared.json"


@dataclass(frozen=True)
class Prepared:
    """What DIR/prepared holds: the record copy-back checks before anything else."""

    chain_id: str
    pieces: list[str]
    point_in_time: str            # when the last applied backup completed (UTC)
    to_lsn: int
    server_version: str
    last_job: str

    @classmethod
    def of(cls, chain: Chain) -> "Prepared":
        last = chain.last
        return cls(last.chain_id, [os.path.basename(s.path) for s in chain.pieces],
                   last.finished or last.created, last.to_lsn, last.server_version, last.job_id)

    def describe(self) -> str:
        job = f", Bareos job {self.last_job}" if self.last_job else ""
        return (f"data as of {self.point_in_time} (LSN {self.to_lsn}{job}), "
                f"{len(self.pieces)} piece(s) of chain {self.chain_id}, server {self.server_version}")


def prepare(directory: str, tools: Tools, force: bool = False, until: int | None = None,
            options: tuple = ()) -> Prepared:
    directory = os.path.abspath(directory)  # the tools run from /
    chain = select_chain(load_pieces(directory), directory, until)
    result = Prepared.of(chain)
    log.info("restoring %s", " + ".join(s.piece.describe() for s in chain.pieces))
    output, record = os.path.join(directory, PREPARED), os.path.join(directory, RECORD)
    if not force and (os.path.lexists(output) or os.path.lexists(record)):
        raise CantCreateError(f"{output} already exists; use --force to prepare again")
    verify_pieces(chain)
    with private_directory(directory, ".preparing-", f"scratch directory in {directory}",
                           (owned_pattern(".preparing-"), "unfinished prepare directory")) as work:
        base = _apply_all(chain, work, tools, options)
        _replace_previous(base, output, record, work)
        records.save(record, asdict(result))
    log.info("prepared %s: %s", output, result.describe())
    return result


def read_record(directory: str) -> Prepared:
    path = os.path.join(directory, RECORD)
    if not os.path.isdir(os.path.join(directory, PREPARED)) or not os.path.exists(path):
        raise DataError(f"{directory} holds no completely prepared backup: run prepare first")
    prepared = records.load(path, lambda data: Prepared(**data),
                            lambda exc: DataError(f"{path} is unreadable ({exc}): run prepare --force"))
    if prepared is None:  # gone since we looked
        raise DataError(f"{directory} holds no completely prepared backup: run prepare first")
    return prepared


def verify_pieces(chain: Chain) -> None:
    """Every piece's whole payload against its trailer, before anything is
    extracted or an earlier result replaced; a damaged one is named."""
    for stored in chain.pieces:
        try:
            with open(stored.path, "rb", buffering=0) as handle:
                Pump(handle.fileno(), stored.path, Progress("verify")).run(lambda data: None)
        except OSError as exc:
            raise DataError(f"cannot read {stored.path}: {exc.strerror}") from None
        except (DataError, NoInputError) as exc:
            raise DataError(f"damaged piece {os.path.basename(stored.path)} "
                            f"({stored.piece.describe()}): {exc}") from None
    log.info("verified %d piece(s): length and SHA-256 match their trailers", len(chain.pieces))


def _replace_previous(base: str, output: str, record: str, work: str) -> None:
    """The new result takes the earlier one's place only now that it is
    complete; the earlier one goes into the scratch directory, which is
    removed.  Without its record no half-replaced result is ever used."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record)
    if os.path.lexists(output):
        os.rename(output, os.path.join(work, "previous"))
        log.info("replacing the earlier result in %s", output)
    os.rename(base, output)


def _apply_all(chain: Chain, work: str, tools: Tools, options: tuple) -> str:
    base = os.path.join(work, "base")
    last_index = len(chain.pieces) - 1
    extract(chain.pieces[0], base, tools)
    _run(tools.prepare_argv(base, None, last_index == 0) + list(options),
         f"preparing {chain.pieces[0].piece.describe()}")
    for index, stored in enumerate(chain.pieces[1:], start=1):
        delta = os.path.join(work, f"delta-{stored.piece.sequence}")
        extract(stored, delta, tools)
        _run(tools.prepare_argv(base, delta, index == last_index) + list(options),
             f"applying {stored.piece.describe()}")
        shutil.rmtree(delta, ignore_errors=True)
    return base


def extract(stored: StoredPiece, destination: str, tools: Tools) -> None:
    """mbstream -x the piece's xbstream part while verifying the whole file."""
    os.makedirs(destination, mode=0o700)
    with open(stored.path, "rb", buffering=0) as handle, Child(
            tools.extract_argv(destination), stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL) as child:
        pump = Pump(handle.fileno(), stored.path)
        pump.run(_payload_sink(child.stdin_fd, stored))
        child.close_stdin()
        code = child.wait()
    if code != 0 or pump.sink_error is not None:
        raise DataError(f"cannot extract {stored.path}: {child.failure(code)}")


def _payload_sink(fd: int, stored: StoredPiece):
    """Forward only the xbstream: skip the dbpipe header line and the newline
    the framing may add before the trailer."""
    position = {"at": 0}
    start, end = stored.header_bytes, stored.header_bytes + stored.piece.xbstream_bytes

    def sink(data) -> None:
        at = position["at"]
        position["at"] = at + len(data)
        low, high = max(start - at, 0), min(end - at, len(data))
        if low < high:
            write_all(fd, data[low:high])

    return sink


def _run(argv: list[str], what: str) -> None:
    log.info("%s", what)
    with Child(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as child:
        code = child.wait()
    if code != 0 or not completed_ok(child.stderr_lines):
        raise UnavailableError(f"{what} failed: {child.failure(code)}")

