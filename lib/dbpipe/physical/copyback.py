"""copy-back: swap a prepared backup in for the server's data directory.

The old data directory is never deleted: it is renamed aside (same file
system, atomic) and the new one is built beside it.  If anything after that
fails - copy-back, ownership, a server that does not start or whose data
does not open, a cancel - the new directory is moved away, the old one is
put back and the service started again.  Nextcloud's maintenance mode, when
asked for, is on for the duration and back to its previous state afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import subprocess
import time
from dataclasses import dataclass

from ..errors import Cancelled, DbpipeError, UnavailableError, UsageError
from ..log import log
from ..process import Child
from ..target import Target
from .prepare import PREPARED, read_record
from .service import (Service, best_effort, check_databases, wait_until_answering,
                      wait_until_stopped)
from .state import StateDir
from .tool import Tools, completed_ok

DEFAULT_OWNER = "mysql"


@dataclass(frozen=True)
class CopyBackRequest:
    directory: str                # holds prepared/ and prepared.json
    datadir: str
    service: Service
    target: Target                # how to reach the restarted server
    tools: Tools
    start_timeout: float = 300
    nextcloud: str | None = None
    php: str | None = None
    settle: float = 10.0          # seconds for running Nextcloud requests after maintenance on
    state_dir: str | None = None  # chain state to retire: the next backup must be full


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
    log.info("restoring %s into %s", prepared.describe(), datadir)
    with _maintenance(request):
        kept = _swap(request, datadir, _owner(datadir))
    if request.state_dir:
        StateDir(request.state_dir).retire("the server was restored", _stamp())
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


def _swap(request: CopyBackRequest, datadir: str, owner: Owner) -> str | None:
    _stop(request.service, datadir)
    stamp = _stamp()
    kept = f"{datadir}.dbpipe-old-{stamp}" if os.path.lexists(datadir) else None
    try:
        if kept:
            os.rename(datadir, kept)
            log.info("old data directory moved aside to %s", kept)
        _build(request, datadir, owner)
        request.service.start()
        wait_until_answering(request.target, request.start_timeout)
        check_databases(request.target, os.path.join(request.directory, PREPARED))
    except BaseException as exc:
        outcome = _roll_back(request, datadir, kept, stamp)
        if isinstance(exc, DbpipeError) and not isinstance(exc, Cancelled):
            raise DbpipeError(f"{exc}; {outcome}", exc.code) from None
        log.error("%s", outcome)
        raise
    return kept


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


def _roll_back(request: CopyBackRequest, datadir: str, kept: str | None, stamp: str) -> str:
    """Put the old data directory back and restart; say how that went."""
    log.error("restore failed; putting the previous data directory back")
    service = request.service
    best_effort(f"stopping {service.name}", service.stop)
    failed = f"{datadir}.dbpipe-failed-{stamp}"
    if os.path.lexists(datadir) and not best_effort(
            f"moving the new data directory to {failed}", lambda: os.rename(datadir, failed)):
        return f"the new data directory could not be moved away; the previous one is in {kept}"
    if kept and not best_effort(f"moving {kept} back", lambda: os.rename(kept, datadir)):
        return f"the previous data directory could not be put back; it is in {kept}"
    if not best_effort(f"starting {service.name}", service.start) or not best_effort(
            "waiting for the server", lambda: wait_until_answering(request.target, request.start_timeout)):
        return f"the previous data directory is back in {datadir}, but {service.name} did not come back"
    log.info("the previous data directory is back and %s answers again", service.name)
    return (f"the previous data directory is back in place and {service.name} runs again"
            + (f" (the failed copy is in {failed})" if os.path.lexists(failed) else ""))


@contextlib.contextmanager
def _maintenance(request: CopyBackRequest):
    """Nextcloud maintenance on for the swap, then back to what it was."""
    if not request.nextcloud:
        yield
        return
    from ..nextcloud.installation import open_installation
    from ..nextcloud.maintenance import Maintenance
    from ..nextcloud.occ import Occ
    from ..nextcloud.report import Report
    switch = Maintenance(Occ(open_installation(request.nextcloud, request.php)), Report(),
                         settle=request.settle)
    was_on = switch.status().maintenance
    if not was_on:
        switch.switch_on()
    try:
        yield
    except BaseException:
        if not was_on:
            best_effort("switching Nextcloud maintenance mode off", switch.switch_off)
        raise
    if not was_on:
        switch.switch_off()


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")
