"""copy-back: swap a prepared backup in for the server's data directory.

The old data directory is never deleted: it is renamed aside (same file
system, atomic) and the new one is built beside it.  If anything after that
fails - copy-back, ownership, a server that does not start or whose data
does not open, a cancel - the new directory is moved away, the old one is
put back and the service started again.  A copy-back killed on the way
cannot do that; the record it wrote before the first move (swap_record)
lets the next copy-back finish or roll it back before its own swap.  A data
directory that is a mount point cannot be renamed: refused before anything
is stopped.

Nextcloud, when asked for, goes through the hooks' restore cycle, which
the caller passes in (CopyBackRequest.closed, nextcloud.hooks.closed_for_restore):
the installation's lock, a record saved before anything changes, maintenance
mode on, and after the swap a new data fingerprint before the previous state
is put back.  A failure before the data directory was touched, or one whose
rollback brought the old directory back, puts the previous state back; any
other failure - or a copy-back killed on the way - leaves maintenance mode on
with a record saying so, for nextcloud-after-restore to finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from .. import stamps
from ..engines import LiveChange
from ..errors import Cancelled, DbpipeError, UnavailableError, UsageError
from ..files import move as _move
from ..kept import KeptCopy, directory_size, keep_newest
from ..log import log
from ..process import SERVER_START_TIMEOUT, Child
from ..services import Service
from ..snapshot.mounts import is_mounted
from ..target import Target
from .prepare import PREPARED, read_record
from .server_checks import best_effort, check_databases, wait_until_answering, wait_until_stopped
from .state import StateDir
from .swap_record import RESTORED, Swap, SwapRecord
from .tool import Tools, completed_ok

DEFAULT_OWNER = "mysql"
COMMAND = "dbpipe-mariabackup-restore"


@dataclass(frozen=True)
class CopyBackRequest:
    directory: str                # holds prepared/ and prepared.json
    datadir: str
    service: Service
    target: Target                # how to reach the restarted server
    tools: Tools
    start_timeout: float = SERVER_START_TIMEOUT
    # what is closed around the swap (Nextcloud's restore cycle), yielding the LiveChange it reports to
    closed: Callable[[], AbstractContextManager[LiveChange]] | None = None
    state_dir: str | None = None  # chain state to retire: the next backup must be full
    keep_old_copies: int | None = None      # keep only the newest N earlier data directories


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int
    mode: int


def copy_back(request: CopyBackRequest) -> str | None:
    """Returns where the old data directory was kept (None: there was none)."""
    request = dataclasses.replace(request, directory=os.path.abspath(request.directory))
    prepared = read_record(request.directory)
    datadir = _checked_datadir(request)
    record = SwapRecord(datadir)
    with record.locked():
        _recover(request, datadir, record)
        log.info("restoring %s into %s", prepared.describe(), datadir)
        with _closed(request) as live:
            kept = _swap(request, datadir, _owner(datadir), live, record)
    if request.state_dir:
        StateDir(request.state_dir).retire("the server was restored")
    keep_newest(_kept_directories(datadir), request.keep_old_copies,
                lambda copy: shutil.rmtree(copy.name), "earlier data directory")
    log.info("restore complete: %s; the previous data directory is kept in %s (remove it when "
             "satisfied)", prepared.describe(), kept or "(there was none)")
    return kept


def _checked_datadir(request: CopyBackRequest) -> str:
    datadir = os.path.realpath(request.datadir)
    prepared = os.path.realpath(os.path.join(request.directory, PREPARED))
    if datadir == "/" or not os.path.isdir(os.path.dirname(datadir)):
        raise UsageError(f"--datadir {request.datadir}: not a usable data directory location")
    if datadir.startswith(prepared + "/") or prepared.startswith(datadir + "/") or datadir == prepared:
        raise UsageError("--datadir must not overlap the prepared backup")
    if os.path.ismount(datadir) or is_mounted(datadir):   # a bind mount shares its st_dev
        raise UsageError(f"--datadir {datadir} is a mount point, which copy-back cannot move aside: "
                         f"put the data directory one level below it (datadir = {datadir}/data) "
                         "or copy back by hand; nothing was changed")
    return datadir


def _owner(datadir: str) -> Owner:
    """The new data directory gets the old one's owner and mode (else mysql's)."""
    try:
        st = os.stat(datadir)
        return Owner(st.st_uid, st.st_gid, st.st_mode & 0o7777)
    except FileNotFoundError:
        pass
    try:
        account = pwd.getpwnam(DEFAULT_OWNER)
        return Owner(account.pw_uid, account.pw_gid, 0o750)
    except KeyError:
        return Owner(os.getuid(), os.getgid(), 0o750)


def _swap(request: CopyBackRequest, datadir: str, owner: Owner, live: LiveChange,
          record: SwapRecord) -> str | None:
    live.begin()  # durably first: a copy-back killed from here on leaves a record saying so
    try:
        _stop(request.service, datadir)
    except BaseException:
        live.reverted()  # _stop started the server again; no file was touched
        raise
    stamp = stamps.for_name()
    kept = f"{datadir}.dbpipe-old-{stamp}" if os.path.lexists(datadir) else None
    swap = Swap(datadir, kept, f"{datadir}.dbpipe-failed-{stamp}", request.directory)
    try:
        record.save(swap)  # before the first move: a rerun after a kill goes by it
        if kept:
            _move(datadir, kept)
            log.info("old data directory moved aside to %s", kept)
        _build(request, datadir, owner)
        request.service.start()
        wait_until_answering(request.target, request.start_timeout)
        check_databases(request.target, os.path.join(request.directory, PREPARED))
        record.save(dataclasses.replace(swap, phase=RESTORED))
    except BaseException as exc:
        back, outcome = _roll_back(request, datadir, kept, stamp)
        if back:
            record.clear()
        if back and kept:
            live.reverted()
        if isinstance(exc, DbpipeError) and not isinstance(exc, Cancelled):
            raise DbpipeError(f"{exc}; {outcome}", exc.code) from None
        log.error("%s", outcome)
        raise
    record.clear()
    return kept


def _recover(request: CopyBackRequest, datadir: str, record: SwapRecord) -> None:
    """An earlier copy-back was killed: finish it if its server answered,
    else put its previous data directory back by the record, so that this
    run moves the right one aside (and calls it that)."""
    swap = record.load()
    if swap is None:
        return
    if swap.phase == RESTORED:
        log.warning("an interrupted copy-back into %s had completed (its server answered); the data "
                    "directory before it is kept in %s", datadir, swap.kept or "(there was none)")
        record.clear()
        return
    log.warning("an earlier copy-back into %s was interrupted (record %s): rolling it back first",
                datadir, record.path)
    _stop(request.service, datadir)
    if not (swap.kept and not os.path.lexists(swap.kept)):  # else: killed before the first move
        if os.path.lexists(datadir):
            _move(datadir, swap.failed)
        if swap.kept:
            _move(swap.kept, datadir)
    record.clear()
    log.warning("rolled back: the interrupted copy is in %s, the previous data directory is back in %s",
                swap.failed if os.path.lexists(swap.failed) else "(none was made)", datadir)
    if os.path.isdir(datadir):
        request.service.start()
        wait_until_answering(request.target, request.start_timeout)


def _stop(service: Service, datadir: str) -> None:
    """Stop the server and make sure it let go; if not, leave it running."""
    try:
        service.stop()
        if os.path.isdir(datadir):
            wait_until_stopped(datadir, service.manager.timeout)
    except BaseException:
        best_effort(f"starting {service.name} again", service.start)
        raise


def _build(request: CopyBackRequest, datadir: str, owner: Owner) -> None:
    os.mkdir(datadir, owner.mode)
    os.chmod(datadir, owner.mode)  # mkdir's mode is cut by the umask
    os.chown(datadir, owner.uid, owner.gid)
    prepared = os.path.join(request.directory, PREPARED)
    argv = request.tools.copy_back_argv(prepared, datadir, request.target.defaults_file)
    log.info("copying the prepared backup into %s", datadir)
    with Child(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as child:
        code = child.wait()
    if code != 0 or not completed_ok(child.stderr_lines):
        raise UnavailableError(f"copy-back failed: {child.failure(code)}")
    for root, dirs, files in os.walk(datadir):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), owner.uid, owner.gid)


def _roll_back(request: CopyBackRequest, datadir: str, kept: str | None,
               stamp: str) -> tuple[bool, str]:
    """Put the old data directory back and restart; whether that worked, and
    how it went."""
    log.error("restore failed; putting the previous data directory back")
    service = request.service
    if kept and not os.path.lexists(kept):  # failed before the old directory was moved aside
        back = best_effort(f"starting {service.name}", service.start)
        return back, f"the data directory was not touched; {service.name} " + (
            "runs again" if back else "did not come back")
    best_effort(f"stopping {service.name}", service.stop)
    failed = f"{datadir}.dbpipe-failed-{stamp}"
    if os.path.lexists(datadir) and not best_effort(
            f"moving the new data directory to {failed}", lambda: os.rename(datadir, failed)):
        return False, f"the new data directory could not be moved away; the previous one is in {kept}"
    if kept and not best_effort(f"moving {kept} back", lambda: os.rename(kept, datadir)):
        return False, f"the previous data directory could not be put back; it is in {kept}"
    if not best_effort(f"starting {service.name}", service.start) or not best_effort(
            "waiting for the server", lambda: wait_until_answering(request.target, request.start_timeout)):
        return False, (f"the previous data directory is back in {datadir}, but {service.name} "
                       f"did not come back")
    log.info("the previous data directory is back and %s answers again", service.name)
    return True, (f"the previous data directory is back in place and {service.name} runs again"
                  + (f" (the failed copy is in {failed})" if os.path.lexists(failed) else ""))


def _closed(request: CopyBackRequest) -> AbstractContextManager[LiveChange]:
    """The restore cycle around the swap; without one, just a LiveChange."""
    return request.closed() if request.closed else contextlib.nullcontext(LiveChange())


def _kept_directories(datadir: str) -> list[KeptCopy]:
    """<datadir>.dbpipe-old-<stamp> and .dbpipe-failed-<stamp> beside datadir."""
    parent, base = os.path.split(datadir)
    pattern = re.compile("^" + re.escape(base) + r"\.dbpipe-(?:old|failed)-" + stamps.NAME_PATTERN + "$")
    copies = []
    for name in os.listdir(parent):
        found = pattern.match(name)
        path = os.path.join(parent, name)
        if found and os.path.isdir(path) and not os.path.islink(path):
            copies.append(KeptCopy(path, directory_size(path), stamps.order_key(found.group(1))))
    return copies
