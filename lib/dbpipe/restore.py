"""dbpipe-restore: verify a stream from stdin and load it atomically, or store it as a file.

Where the restored data goes follows the Bareos restore location: with a
``where`` other than ``/`` (Bareos' default RestoreFiles job uses
/tmp/bareos-restores) the stream is written as a verified file below it and
the live database is not touched.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .engines import Engine, RestoreOptions, get_engine
from .errors import DataError, DbpipeError
from .files import atomic_write, write_received
from .bareos import BareosJob
from .kept import keep_newest
from .log import log
from .progress import human_bytes
from .process import no_return_scope, work_completed
from .provision import DEFAULT_FINISH, AccountMissing, Finish, ensure_account, instructions, kept_stream_path
from .safety import SafetyDumps
from .stream import Header, Trailer
from .target import Target
from .transfer import Pump



@dataclass(frozen=True)
class FileDestination:
    """Write the verified stream to a file instead of loading it.

    ``path`` may be relative to ``where``; without a name, the file is called
    dbpipe/<engine>-<database>.sql after the stream's header.
    """

    path: str | None
    overwrite: bool = False
    where: str = ""
    keep_existing: bool = False   # Bareos replace "never": an existing file stays, and that is no error

    def resolve(self, header: Header) -> str:
        name = self.path or f"dbpipe/{header.engine}-{os.path.basename(header.database) or 'all'}.sql"
        return os.path.join(self.where, name.lstrip("/")) if self.where else name


def bareos_destination(where_arg: str | None, job: BareosJob, file_name: str | None,
                       replace_arg: str | None = None) -> FileDestination | None:
    """A file below the Bareos restore location, or None: the live database."""
    where = job.restore_location(where_arg)
    never = not job.may_overwrite(replace_arg)
    return None if where is None else FileDestination(file_name, not never, where, keep_existing=never)


def choose_destination(to_file: str | None, overwrite: bool, job: BareosJob, where_arg: str | None,
                       file_name: str | None, replace_arg: str | None) -> tuple[FileDestination | None, bool]:
    """Where the stream goes: --to-file, else a file below a Bareos restore
    location other than /, else (None) the live database.  The flag: keep
    the live database when it exists (Bareos replace "never")."""
    if to_file:
        return FileDestination(to_file, overwrite=overwrite), False
    destination = bareos_destination(where_arg, job, file_name, replace_arg)
    return destination, destination is None and not job.may_overwrite(replace_arg)


def read_to_end(in_fd: int) -> None:
    """Read and discard stdin, for a failure before the stream was opened (a
    usage error): a bpipe writer that stops reading makes its feeder see
    EPIPE and Bareos report 'Broken pipe' instead of our error.  Not from a
    terminal: someone typing a wrong option would wait for an end of input."""
    if not os.isatty(in_fd):
        Pump(in_fd).drain()


def restore(target: Target, in_fd: int, options: RestoreOptions,
            destination: FileDestination | None = None, keep_existing: bool = False,
            finish: Finish = DEFAULT_FINISH, final: bool = False) -> Trailer | None:
    """Restore the stream on in_fd.  Whatever fails, stdin is read to its end.

    keep_existing (Bareos replace "never", restoring in place): a database
    that exists is left alone - the stream is still read and verified.
    finish: what the one line says when an empty server lacks the database
    and account, and nobody here may create them (provision.py).  final: the
    restore is all the program does, so a cancel after it is ignored."""
    started = time.monotonic()
    with no_return_scope():   # a cancel that comes too late is named after this line, as the last
        with Pump(in_fd).draining() as pump:
            pump.require_header("stream to restore")
            if destination is not None:
                trailer = write_file(pump, destination)
            elif keep_existing and _exists(target, pump.header()):
                trailer = pump.run(lambda data: None)
                log.warning("replace=never: %s exists and was left alone; the stream was verified, not loaded",
                            _live_target(target, pump.header()).describe())
            else:
                trailer = _restore_live(target, pump, options, finish)
        seconds = time.monotonic() - started
        if final:
            work_completed()
        log.info("restore complete: %s in %.1f s", human_bytes(pump.verifier.total_bytes), seconds)
    return trailer


def _live_target(target: Target, header: Header) -> Target:
    return target.merged(database=target.database or header.database)


def _exists(target: Target, header: Header) -> bool:
    """Whether the live database is there (an all-databases stream: the server's always are)."""
    return header.scope == "all" or get_engine(target.type).exists(_live_target(target, header))


def _restore_live(target: Target, pump: Pump, options: RestoreOptions,
                  finish: Finish = DEFAULT_FINISH) -> Trailer | None:
    header = pump.header()
    engine = get_engine(target.type)
    if header.engine != engine.name:
        raise DataError(f"this is a {header.engine} stream; the target is {engine.name}")
    if header.scope == "all":
        log.info("restoring all %s databases (cluster-wide, verified before loading)", engine.name)
        return engine.load_all(target, pump)
    target = _live_target(target, header)
    log.info("restoring %s from a dump of %r", target.describe(), header.database)
    try:
        ensure_account(engine, target)
    except AccountMissing as exc:
        raise instructions(exc, finish, target, _keep_for_later(pump, target, engine)) from None
    safety = SafetyDumps(target)
    half = safety.warn_if_pending()
    result = engine.restore(target, pump, options)
    if half is not None:
        safety.clear()
        log.info("the half-finished restore of %s is finished%s", target.describe(),
                 f"; its previous content stays in {half.previous}" if half.previous else "")
    log.info("restore mode: %s%s", result.mode, f"; replaced data kept in {result.kept}" if result.kept else "")
    list_kept_copies(engine, target, options)
    return None


def _keep_for_later(pump: Pump, target: Target, engine: Engine) -> str | None:
    """The verified stream in the private state directory, so the restore
    can be finished once the administrator created the account; None when
    it cannot be kept (then the restore is run again)."""
    path = kept_stream_path(target, engine)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_file(pump, FileDestination(path, overwrite=True))
    except (DbpipeError, OSError) as exc:
        if isinstance(exc, DataError):
            raise
        log.warning("cannot keep the verified stream in %s: %s", path, exc)
        return None
    return path


def put_back(target: Target, options: RestoreOptions) -> None:
    """Load back what a killed --mode replace restore dropped (safety.py)."""
    engine = get_engine(target.type)
    with no_return_scope():
        previous = engine.put_back(target, options)
    log.info("put back the previous content of %s%s", target.describe(),
             f" from {previous} (kept)" if previous else ": it was empty")
    list_kept_copies(engine, target, options)


def list_kept_copies(engine: Engine, target: Target, options: RestoreOptions) -> None:
    """Every copy earlier restores kept, with its size, bounded by
    --keep-old-copies.  The restore is done: a failure here is only logged."""
    try:
        keep_newest(engine.kept_copies(target, options), options.keep_old_copies,
                    lambda copy: engine.remove_kept_copy(target, copy), "copy of replaced data")
    except (DbpipeError, OSError) as exc:
        log.warning("cannot list or remove the kept copies of %s: %s", target.describe(), exc)


def write_file(pump: Pump, destination: FileDestination) -> Trailer:
    """Store the verified stream as a 0600 file, atomically, never half-written."""
    path = destination.resolve(pump.header())
    if destination.keep_existing and os.path.lexists(path):
        trailer = pump.run(lambda data: None)
        log.warning("replace=never: kept the existing %s; the stream was verified, not written", path)
        return trailer
    with atomic_write(path, destination.overwrite) as handle:
        trailer = write_received(pump, handle, path)
    log.info("verified stream written to %s (%s, sha256 %s)", path, human_bytes(trailer.bytes),
             trailer.sha256)
    return trailer

