"""Replace mode, for accounts that may not create databases: the stream is
spooled and verified first, a safety dump of the current content is taken
(recorded before anything is dropped: safety.py), then the database is
emptied and reloaded in place; a failed load puts that content back."""

from __future__ import annotations

import os
import re

from ...errors import CantCreateError, DbpipeError, NoInputError
from ...log import log
from ...process import Child, point_of_no_return
from ...safety import HalfRestored, SafetyDumps
from ...target import Target
from ...transfer import Pump
from ..base import RestoreOptions, RestoreResult, spooled
from .definers import require_recreatable
from .sql import create_database, database_exists, drop_everything

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .engine import MysqlEngine


def replace(engine: MysqlEngine, conn, target: Target, pump: Pump, options: RestoreOptions,
            reason: str) -> RestoreResult:
    """Verify a spooled copy, keep a safety dump (recorded before anything
    is dropped: safety.py), then drop and reload in place."""
    log.info("restore mode: replace (%s); nothing changes until the stream is verified", reason)
    safety = SafetyDumps(target)
    with spooled(pump, options.temp_dir) as (spool, _):
        record = safety.pending()    # an earlier run's: its safety dump holds the content to go back to
        made_now = record is None
        if record is None:
            previous = ""
            if database_exists(conn, target.database):
                require_recreatable(conn, target.database)
                previous = _safety_dump(engine, target, safety)
            else:
                create_database(conn, target.database, like=None)
            record = safety.record(previous)
        options.live.begin()
        drop_everything(conn, target.database)
        try:
            engine.load_file(target, spool, target.database)
        except DbpipeError as exc:
            _roll_back(engine, conn, target, record, safety, options, exc, made_now)
        point_of_no_return(f"after {target.database} was loaded")
        safety.clear()
    if record.previous and made_now and not options.keep_old:
        os.unlink(record.previous)
        return RestoreResult("replace (verified spool, then drop and reload)", "")
    return RestoreResult("replace (verified spool, then drop and reload)", record.previous)


def _roll_back(engine: MysqlEngine, conn, target, record: HalfRestored, safety: SafetyDumps, options,
               error: DbpipeError, made_now: bool):
    """Put the previous content back; the error keeps its exit code (a
    cancel stays a cancel).  If that fails too, the record stays."""
    drop_everything(conn, target.database)
    if not record.previous:
        safety.clear()
        options.live.reverted()
        raise DbpipeError(f"{error}; the database was empty before and is empty again", error.code) from None
    try:
        engine.load_file(target, record.previous, target.database)
    except DbpipeError as second:
        raise DbpipeError(f"{error}; putting the previous content back also failed ({second}); "
                          f"it is saved in {record.previous}", error.code) from None
    safety.clear()
    options.live.reverted()
    if made_now:
        os.unlink(record.previous)
    raise DbpipeError(f"{error}; the previous content was put back", error.code) from None


def put_back(engine: MysqlEngine, target: Target, options: RestoreOptions) -> str:
    """Load what a killed replace-mode restore recorded back into the database."""
    safety = SafetyDumps(target)
    record = safety.pending()
    if record is None:
        raise NoInputError(f"no half-finished --mode replace restore of {target.describe()} is "
                           f"recorded in {safety.directory}: nothing to put back")
    with engine.connect(target) as conn:
        options.live.begin()
        drop_everything(conn, target.database)
        if record.previous:
            engine.load_file(target, record.previous, target.database)
    safety.clear()
    return record.previous


def _safety_dump(engine: MysqlEngine, target: Target, safety: SafetyDumps) -> str:
    """The current content, into the state directory; a full disk says where."""
    with safety.new_dump() as (handle, path), engine.dump_command(target, "database") as command, Child(
            command.argv, label=f"{os.path.basename(command.argv[0])} (safety dump)", stdout=handle,
            pass_fds=command.pass_fds) as child:
        code = child.wait()
        if code != 0:
            written = re.search(r"errno (\d+) on write", child.stderr_text(), re.IGNORECASE)
            if written:
                raise CantCreateError(f"cannot write the safety dump of {target.database} to "
                                      f"{safety.directory}: {os.strerror(int(written.group(1)))}; "
                                      "nothing was changed")
            raise engine.dump_failure(child)
    log.info("safety dump of the current content: %s", path)
    return path
