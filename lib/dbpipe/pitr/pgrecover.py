"""Recover PostgreSQL to a point in time, beside the live server, then swap.

The live data directory is never the workspace: the base is extracted into
a NEW directory beside it (same file system, so the swap is a rename), the
segments the plan verified are staged for restore_command, and a trial
server on a private socket and port replays WAL up to the target
(recovery_target_time or recovery_target_xid, + promote; "latest": to the
end of the unbroken archive).  Only when its log says it stopped at the target and it accepts
writes is it stopped and swapped in; the old directory is kept aside.  A
failure or cancel up to the swap leaves the live server as it was; during
the swap it is renamed back and started again.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field

from ..errors import DataError, UnavailableError
from ..log import log
from ..process import CONTROL_TIMEOUT, QUICK_TIMEOUT, RECOVERY_TIMEOUT, Child, RunAs, run
from ..services import Service
from .swap import Closed, sibling, swap
from ..stream import write_all
from ..transfer import Pump
from .pgarchive import Plan
from .spool import Spool
from .targettime import show

BLOCK_BEGIN = "# dbpipe-pitr-restore: begin (removed when the restore completes)"
BLOCK_END = "# dbpipe-pitr-restore: end"
STOPPED = re.compile(r"recovery stopping (?:before|after) .*")
LAST_TX = re.compile(r"last completed transaction was at log time (.+)")


@dataclass(frozen=True)
class RecoveryRequest:
    datadir: str
    bindir: str
    service: Service | None        # None: leave the recovered server running beside
    timeout: float = RECOVERY_TIMEOUT
    drill: bool = False            # remove what was recovered once it is verified
    closed: Closed | None = None   # entered around the swap only (Nextcloud's restore cycle)


@dataclass
class Workspace:
    new: str
    wal: str
    run: str
    port: int
    config: dict = field(default_factory=dict)    # what isolate_config changed: path -> original

    @classmethod
    def beside(cls, datadir: str) -> "Workspace":
        base = sibling(datadir, "pitr")
        return cls(base, base + ".wal", base + ".run", _free_port())

    def remove_staging(self) -> None:
        for path in (self.wal, self.run):
            shutil.rmtree(path, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_bindir(datadir: str, given: str | None) -> str:
    """The server binaries of the data directory's major version."""
    if given:
        return given
    try:
        with open(os.path.join(datadir, "PG_VERSION")) as handle:
            version = handle.read().strip()
    except OSError as exc:
        raise DataError(f"{datadir} is not a PostgreSQL data directory: {exc.strerror}") from None
    path = f"/usr/lib/postgresql/{version}/bin"
    if not os.path.exists(os.path.join(path, "postgres")):
        raise UnavailableError(f"PostgreSQL {version} server binaries not found in {path}; use --pg-bindir")
    return path


def recover(plan: Plan, spool: Spool, request: RecoveryRequest) -> str:
    """Recover into a new directory; swap it in (or leave it beside). A summary line."""
    owner = RunAs.owner_of(request.datadir)
    work = Workspace.beside(request.datadir)
    log.info("recovering %s from the base backup of %s into %s", plan.target, plan.base.base.finished, work.new)
    try:
        prepare(plan, spool, work, owner)
        reached = trial(plan, work, request, owner)
    except BaseException:
        _stop(work, request, owner)
        work.remove_staging()
        failed = work.new + ".failed"
        with contextlib.suppress(OSError):
            os.rename(work.new, failed)
        raise
    if request.drill:
        _stop(work, request, owner)
        work.remove_staging()
        shutil.rmtree(work.new, ignore_errors=True)
        return drill_report(plan.newest, reached)
    if request.service is None:
        return (f"recovered to {plan.target} ({reached}); the server runs beside the live one: "
                f"data directory {work.new}, socket {work.run}, port {work.port}; stop it with "
                f"pg_ctl -D {work.new} stop")
    _stop(work, request, owner)
    _drop_block(work.new)
    restore_config(work.config)
    old = swap(request.service, request.datadir, work.new, _running, request.closed, str(plan.target))
    work.remove_staging()
    return f"recovered to {plan.target} ({reached}); live data directory replaced, the old one kept as {old}"


# --- building the new data directory ---------------------------------------------------

def prepare(plan: Plan, spool: Spool, work: Workspace, owner: RunAs | None) -> None:
    for path in (work.new, work.wal, work.run):
        os.mkdir(path, 0o700)
        if owner:
            os.chown(path, owner.uid, owner.gid)
    extract(plan, work.new, owner)
    for name in plan.segments:
        _stage(spool.path(name), os.path.join(work.wal, name), owner)
    work.config = isolate_config(work.new, owner)
    _write_owned(os.path.join(work.new, "recovery.signal"), "", owner)
    settings = {"restore_command": f'cp "{work.wal}/%f" "%p"', "recovery_target_action": "promote",
                "port": str(work.port), "listen_addresses": "", "unix_socket_directories": work.run,
                "archive_mode": "off"}
    if plan.target.xid is not None:
        settings["recovery_target_xid"] = str(plan.target.xid)      # inclusive: up to its commit
    elif not plan.target.latest:
        settings["recovery_target_time"] = plan.target.for_server()
    block = "\n".join([BLOCK_BEGIN, *(f"{k} = '{v}'" for k, v in settings.items()), BLOCK_END, ""])
    with open(os.path.join(work.new, "postgresql.auto.conf"), "a") as handle:
        handle.write("\n" + block)


def _stage(source: str, staged: str, owner: RunAs | None) -> None:
    """A hard link when the segment is already the server account's and on the
    same file system (no copy of gigabytes of WAL), else a copy it owns."""
    st = os.stat(source)
    if owner is None or (st.st_uid, st.st_gid) == (owner.uid, owner.gid):
        try:
            os.link(source, staged)
            return
        except OSError:
            pass
    shutil.copyfile(source, staged)
    if owner:
        os.chown(staged, owner.uid, owner.gid)


def extract(plan: Plan, destination: str, owner: RunAs | None) -> None:
    """tar -x the base's tar part, as the data directory's owner, while the
    whole stored stream is verified (a damaged base fails here)."""
    stored = plan.base
    start, end = stored.header_bytes, stored.header_bytes + stored.base.tar_bytes
    with open(stored.path, "rb", buffering=0) as handle, Child(
            ["tar", "-x", "-f", "-", "-C", destination], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, run_as=owner) as child:
        position = {"at": 0}

        def sink(data) -> None:
            at = position["at"]
            position["at"] = at + len(data)
            low, high = max(start - at, 0), min(end - at, len(data))
            if low < high:
                write_all(child.stdin_fd, data[low:high])

        pump = Pump(handle.fileno(), stored.path)
        pump.run(sink)
        child.close_stdin()
        code = child.wait()
    if code != 0 or pump.sink_error is not None:
        raise DataError(f"cannot extract {stored.path}: {child.failure(code)}")


CONFIG_PATHS = re.compile(r"^\s*(data_directory|hba_file|ident_file|external_pid_file|include_dir)\s*=", re.M)


def isolate_config(datadir: str, owner: RunAs | None) -> dict:
    """Make the recovered directory start on its own.  Debian keeps
    postgresql.conf and pg_hba.conf in /etc, so the base has none: the trial
    gets an empty postgresql.conf (our settings are in postgresql.auto.conf)
    and peer authentication on its private socket.  A postgresql.conf that
    names other paths (data_directory, hba_file, ...) would send the trial to
    the LIVE files: those lines are commented out for the trial.  Returns
    path -> original content (None: created), for restore_config."""
    changed: dict = {}
    conf, hba = os.path.join(datadir, "postgresql.conf"), os.path.join(datadir, "pg_hba.conf")
    if not os.path.exists(conf):
        changed[conf] = None
        _write_owned(conf, "# dbpipe-pitr-restore: the recovery server's own (removed again)\n", owner)
    else:
        original = _read(conf)
        if CONFIG_PATHS.search(original):
            changed[conf] = original
            _write_owned(conf, CONFIG_PATHS.sub(lambda m: "#dbpipe-pitr-restore# " + m.group(0), original), owner)
    if not os.path.exists(hba):
        changed[hba] = None
        _write_owned(hba, "local all all peer\n", owner)
    return changed


def restore_config(changed: dict) -> None:
    """Put back what isolate_config changed, before the directory goes live."""
    for path, original in changed.items():
        if original is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            st = os.stat(path)
            with open(path, "w") as handle:
                handle.write(original)
            os.chown(path, st.st_uid, st.st_gid)


def _write_owned(path: str, text: str, owner: RunAs | None) -> None:
    with open(path, "w") as handle:
        handle.write(text)
    if owner:
        os.chown(path, owner.uid, owner.gid)


def _drop_block(datadir: str) -> None:
    path = os.path.join(datadir, "postgresql.auto.conf")
    with open(path) as handle:
        text = handle.read()
    text = re.sub(r"\n?" + re.escape(BLOCK_BEGIN) + r".*?" + re.escape(BLOCK_END) + r"\n", "", text, flags=re.S)
    with open(path, "w") as handle:
        handle.write(text)


# --- the trial server --------------------------------------------------------------------

def _pg_ctl(request: RecoveryRequest, owner: RunAs | None, *args: str, timeout: float = CONTROL_TIMEOUT):
    return run([os.path.join(request.bindir, "pg_ctl"), *args], run_as=owner, timeout=timeout)


def trial(plan: Plan, work: Workspace, request: RecoveryRequest, owner: RunAs | None) -> str:
    """Start the recovery; wait until it promoted; what its log says it reached."""
    logfile = os.path.join(work.run, "recovery.log")
    started = _pg_ctl(request, owner, "-D", work.new, "-l", logfile, "-W", "start")
    if started.code != 0:
        raise UnavailableError(f"cannot start the recovery server: {started.last_error_line()}")
    deadline = time.monotonic() + request.timeout
    while time.monotonic() < deadline:
        text = _read(logfile)
        if "database system is ready to accept connections" in text and _promoted(work, request, owner):
            return _reached(plan, text)
        if not _running(work.new) and ("FATAL" in text or "PANIC" in text):
            line = [ln for ln in text.splitlines() if "FATAL" in ln or "PANIC" in ln][-1]
            raise DataError(f"recovery failed: {line.split(':  ', 1)[-1]} (log: {logfile})")
        time.sleep(0.3)
    raise UnavailableError(f"recovery did not finish within {request.timeout:g} s (log: {logfile})")


def _promoted(work: Workspace, request: RecoveryRequest, owner: RunAs | None) -> bool:
    name = owner.user_name() if owner else "postgres"
    result = run([os.path.join(request.bindir, "psql"), "-X", "-A", "-t", "-h", work.run, "-p", str(work.port),
                  "-U", name or "postgres", "-d", "postgres", "-c", "SELECT pg_is_in_recovery()"],
                 run_as=owner, timeout=QUICK_TIMEOUT)
    return result.code == 0 and result.stdout.strip() == "f"


def _reached(plan: Plan, text: str) -> str:
    stopped = STOPPED.findall(text)
    last = LAST_TX.findall(text)
    if not plan.target.latest and not stopped:
        raise DataError("the recovery server promoted without reaching the target (its log has no "
                        "'recovery stopping' line)")
    if plan.target.xid is not None and not re.match(rf"recovery stopping after commit of transaction "
                                                    rf"{plan.target.xid}\b", stopped[-1]):
        raise DataError(f"the recovery server stopped elsewhere than at {plan.target}: {stopped[-1]}")
    said = stopped[-1] if stopped else "end of the archive"
    return said + (f"; last transaction at {last[-1].strip()}" if last else "")


def _running(datadir: str) -> bool:
    return os.path.exists(os.path.join(datadir, "postmaster.pid"))


def _stop(work: Workspace, request: RecoveryRequest, owner: RunAs | None) -> None:
    if _running(work.new):
        with contextlib.suppress(Exception):
            _pg_ctl(request, owner, "-D", work.new, "-m", "fast", "-w", "stop")


def drill_report(newest, reached: str) -> str:
    """The drill's verdict: the real RPO, the newest second a restore gets back."""
    import datetime
    age = (datetime.datetime.now(datetime.timezone.utc) - newest).total_seconds()
    return (f"drill: newest recoverable time {show(newest)} ({age:.0f} s ago); recovery to it "
            f"succeeded in a throwaway directory, now removed ({reached})")


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as handle:
            return handle.read()
    except FileNotFoundError:
        return ""
