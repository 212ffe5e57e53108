"""dbpipe-mariabackup: stream one full, incremental or differential backup.

The stream is a dbpipe stream: header line, mariabackup's xbstream, trailer
with length, SHA-256 and the piece's place in the chain.  The chain state
advances only after the trailer is out, so a failed or cancelled backup
never breaks the chain; the next incremental simply builds on the same base.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass

from .. import stamps
from ..credentials import private_directory
from ..engines.mysql import MysqlEngine
from ..errors import DataError, NoInputError
from ..files import sync_if_file
from ..bareos import BareosJob, is_job_id
from ..log import log
from ..progress import Progress, human_bytes
from ..process import Child
from ..safety import refuse_dump
from ..stream import StreamWriter
from ..target import Target
from ..transfer import copy_dump
from . import identity
from .piece import Piece, stream_header
from .state import ChainState, StateDir
from .tool import CHECKPOINTS, INFO, ServerFacts, Tools, completed_ok, read_info, server_facts

@dataclass(frozen=True)
class BackupRequest:
    level: str | None             # from --level; None: from Bareos, else full
    state_dir: str
    tools: Tools
    strict: bool = False          # refuse instead of falling back to a full backup
    options: tuple = ()           # extra mariabackup options (e.g. --parallel=4)
    temp_dir: str | None = None
    job: BareosJob = BareosJob()


def requested_level(level: str | None, job: BareosJob) -> str:
    """--level wins; then Bareos' job level; a plain shell run means full."""
    if level:
        return level
    if job.level_name:
        return job.level_name
    if job.level:
        log.warning("Bareos job level %r has no physical equivalent: taking a full backup", job.level)
    else:
        log.info("no level given (--level or $BareosJobLevel): taking a full backup")
    return "full"


def chain_problem(state: ChainState, facts: ServerFacts) -> str:
    """Why the recorded chain cannot be continued on this server ('' if it can)."""
    old, new = state.server, facts.identity
    if (old.hostname, old.datadir, old.port) != (new.hostname, new.datadir, new.port):
        return (f"the chain belongs to another server ({old.hostname} {old.datadir} port {old.port}, "
                f"this is {new.hostname} {new.datadir} port {new.port})")
    if old.version != new.version:
        return f"the server version changed since the full backup ({old.version} -> {new.version})"
    other = identity.difference(identity.Instance(old.instance_id, old.redo_log_start),
                                identity.Instance(new.instance_id, new.redo_log_start))
    if other:
        return other
    if 0 <= facts.lsn < state.last.to_lsn:
        return (f"the server's log sequence number {facts.lsn} is behind the chain's "
                f"{state.last.to_lsn} (restored or re-initialised server)")
    return ""


def decide(level: str, state: ChainState | None, reason: str, facts: ServerFacts,
           strict: bool) -> tuple[str, Piece | None]:
    """The level actually taken and the piece it is relative to."""
    if level == "full":
        return "full", None
    problem = reason if state is None else chain_problem(state, facts)
    if not problem:
        return level, state.base_for(level)
    if strict:
        raise NoInputError(f"no usable base for {_a(level)} backup: {problem} (--strict)")
    log.warning("%s: taking a full backup instead of %s one", problem, _a(level))
    return "full", None


def _a(level: str) -> str:
    return ("an " if level[0] in "aeiou" else "a ") + level


def backup(target: Target, out_fd: int, request: BackupRequest) -> Piece:
    """Write one backup of the chain to out_fd; return its piece once recorded."""
    refuse_dump(target, "all")     # no half-restored database goes into a backup (safety.py)
    state_dir = StateDir(request.state_dir)
    with state_dir.locked():
        facts = server_facts(target)
        state, reason = state_dir.load()
        level, base = decide(requested_level(request.level, request.job), state, reason,
                             facts, request.strict)
        piece = _stream(target, out_fd, request, facts, level, base,
                        state.last if state and base else None)
        state_dir.save(_advanced(state, piece, facts))
    log.info("chain state updated: %s is now the last backup of chain %s",
             piece.describe(), piece.chain_id)
    return piece


def _stream(target: Target, out_fd: int, request: BackupRequest, facts: ServerFacts,
            level: str, base: Piece | None, last: Piece | None) -> Piece:
    since = f" relative to {base.describe()}" if base else ""
    log.info("%s backup of %s (%s, LSN %s)%s", level, facts.identity.datadir,
             facts.identity.version, facts.lsn, since)
    started, created = time.monotonic(), stamps.record()
    with private_directory(request.temp_dir, prefix="dbpipe-mb-") as work:
        lsndir = os.path.join(work, "lsn")
        with request.tools.backup_command(target, os.path.join(work, "target"), lsndir,
                                          base.to_lsn if base else None, request.options) as command, \
                Child(command.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                      pass_fds=command.pass_fds, cwd=work) as child:
            writer = StreamWriter(out_fd, stream_header())
            copied = copy_dump(child.stdout_fd, writer, Progress("backup"))
            code = child.wait()
        if code != 0:
            raise MysqlEngine().classify(child.failure(code), child.stderr_text())
        if not completed_ok(child.stderr_lines) or copied.count == 0:
            raise DataError(f"{child.label} exited 0 but did not report 'completed OK!'")
        piece = _piece(level, base, last, lsndir, facts, created, copied.count, request.job)
        writer.finish(facts.identity.version, created, piece.trailer_extra())
    sync_if_file(out_fd)
    seconds = time.monotonic() - started
    log.info("backup complete: %s %s in %.1f s (%s/s)", piece.describe(),
             human_bytes(copied.count), seconds, human_bytes(copied.count / max(seconds, 1e-6)))
    return piece


def _piece(level: str, base: Piece | None, last: Piece | None, lsndir: str,
           facts: ServerFacts, created: str, count: int, job: BareosJob) -> Piece:
    """The new piece, after checking that mariabackup did what was asked."""
    checkpoints, info = read_info(lsndir, CHECKPOINTS), read_info(lsndir, INFO)
    try:
        from_lsn, to_lsn = int(checkpoints["from_lsn"]), int(checkpoints["to_lsn"])
    except (KeyError, ValueError):
        raise DataError(f"mariabackup left no usable {' or '.join(CHECKPOINTS)}") from None
    expected = base.to_lsn if base else 0
    if from_lsn != expected or to_lsn < from_lsn:
        raise DataError(f"mariabackup backed up LSN {from_lsn}..{to_lsn}, expected a start at {expected}")
    chain_id = base.chain_id if base else new_chain_id()
    return Piece(
        level=level, chain_id=chain_id, piece_id=secrets.token_hex(8),
        sequence=last.sequence + 1 if last else 0, from_lsn=from_lsn, to_lsn=to_lsn,
        server_version=facts.identity.version, created=created, finished=stamps.record(),
        parent_id=base.piece_id if base else "", parent_sequence=base.sequence if base else -1,
        parent_job=base.job_id if base else "", job_id=job.job_id if is_job_id(job.job_id) else "",
        hostname=socket.gethostname(), tool_version=info.get("tool_version", ""),
        xbstream_bytes=count)


def _advanced(state: ChainState | None, piece: Piece, facts: ServerFacts) -> ChainState:
    if piece.level == "full":
        return ChainState(piece.chain_id, facts.identity, [piece])
    return ChainState(state.chain_id, state.server, [*state.pieces, piece])


def new_chain_id() -> str:
    """Starts with the full backup's time, so chains sort chronologically."""
    return f"{stamps.for_name()}-{secrets.token_hex(4)}"


def forget_job(state_dir: str, job_id: str) -> bool:
    """Take a failed Bareos job's backup back out of the chain.

    The reader records a piece as soon as its stream ended well, but the job
    can still fail afterwards (storage daemon error, cancel during the
    rest of the job).  Run on failure with the job's id, this makes the next
    incremental build on the backup before it again.  Returns whether
    anything changed.
    """
    directory = StateDir(state_dir)
    with directory.locked():
        state, _ = directory.load()
        if state is None or not job_id or state.last.job_id != job_id:
            log.info("job %s is not the last backup of the chain: nothing to forget", job_id)
            return False
        if len(state.pieces) == 1:
            directory.retire(f"its full backup, job {job_id}, failed")
        else:
            forgotten = state.pieces.pop()
            directory.save(state)
            log.info("forgot %s of failed job %s: the next incremental builds on %s",
                     forgotten.describe(), job_id, state.last.describe())
        return True
