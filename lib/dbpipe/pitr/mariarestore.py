"""dbpipe-pitr-restore for MariaDB: the physical chain plus binary logs.

Plan first, from stored files only: the newest chain piece finished before
the target, and archived binary logs that reach past it.  Then prepare
that chain (in the pieces directory, never the live server), read the
binary log position the backup recorded, check that every log from there
is in the archive and intact, copy the prepared data into a NEW directory
beside the live one, start a trial server on a private socket (no
networking, no binary log), replay with mariadb-binlog --stop-datetime,
and only then swap it in (pitr.swap).  Binary log times have whole
seconds: --to 16:39:59 replays every event of that second, none after.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

from ..errors import DataError, NoInputError, UnavailableError
from ..log import log
from ..physical import prepare as physical_prepare
from ..physical.chain import load_pieces
from ..physical.tool import Tools
from ..process import (COMMAND_TIMEOUT, LONG_TIMEOUT, QUICK_TIMEOUT, RECOVERY_TIMEOUT, Child, RunAs, find_tool,
                       run, start_detached)
from ..services import Service
from .binlogs import number_of
from .spool import Spool
from .pgrecover import drill_report
from .swap import Closed, sibling, swap
from .targettime import RecoveryTarget, show

EVENT_TIME = re.compile(r"^#(\d{6})\s+(\d{1,2}:\d\d:\d\d)\s+server id", re.M)
BINLOG_INFO = ("mariadb_backup_binlog_info", "xtrabackup_binlog_info")


@dataclass(frozen=True)
class MariaRestore:
    binlog_dir: str
    pieces_dir: str
    datadir: str
    target: RecoveryTarget
    service: Service | None
    timeout: float = RECOVERY_TIMEOUT
    check_only: bool = False
    drill: bool = False
    closed: Closed | None = None    # entered around the swap only (Nextcloud's restore cycle)


def _finished(stored) -> datetime.datetime:
    stamp = stored.piece.finished or stored.piece.created
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def event_times(path: str) -> list[datetime.datetime]:
    result = run([find_tool("mariadb-binlog", "mysqlbinlog", package_hint="mariadb-client"),
                  "--no-defaults", path], timeout=LONG_TIMEOUT)
    if result.code != 0:
        raise DataError(f"cannot read binary log {path}: {result.last_error_line()}")
    return [datetime.datetime.strptime(f"{day} {clock}", "%y%m%d %H:%M:%S").astimezone()
            for day, clock in EVENT_TIME.findall(result.stdout)]


def _binlogs(spool: Spool) -> list[str]:
    return [name for name in spool.names() if number_of(name)]


def _newest_event(spool: Spool) -> datetime.datetime:
    names = _binlogs(spool)
    if not names:
        raise NoInputError(f"no archived binary logs in {spool.directory}")
    times = event_times(spool.path(names[-1]))
    return max(times) if times else datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def plan_sequence(request: MariaRestore, spool: Spool) -> tuple[int, str]:
    """The chain piece to prepare up to, and the range line; refuses early."""
    pieces = sorted(load_pieces(request.pieces_dir), key=lambda s: s.piece.sequence)
    newest = _newest_event(spool)
    oldest = _finished(pieces[0])
    available = f"available: {show(oldest)} .. {show(newest)}"
    if request.target.latest:
        return pieces[-1].piece.sequence, available
    whole_second = request.target.at.replace(microsecond=0)
    usable = [s for s in pieces if _finished(s) <= whole_second]
    if not usable:
        raise DataError(f"{request.target} is before the oldest physical backup; {available}")
    if whole_second >= newest:
        raise DataError(f"{request.target} is beyond what the archive covers; {available}")
    return usable[-1].piece.sequence, available


def binlog_position(prepared: str) -> tuple[str, int]:
    """Where in the binary logs the backup ends: mariabackup writes it beside the data."""
    raw = ""
    for name in BINLOG_INFO:
        with contextlib.suppress(FileNotFoundError):
            with open(os.path.join(prepared, name)) as handle:
                raw = handle.read()
            break
    if len(raw.split()) < 2:
        raise DataError("the physical backup recorded no binary log position: was log_bin on when it was taken?")
    name, position = raw.split()[:2]
    return name, int(position)


def needed_logs(spool: Spool, first: str) -> list[str]:
    """Every archived log from first on, each present and intact, no gap."""
    stem, number = number_of(first)
    names = [n for n in _binlogs(spool) if number_of(n)[0] == stem and number_of(n)[1] >= number]
    expected = [f"{stem}.{number + i:06d}" for i in range(len(names))]
    for want, have in zip(expected, names, strict=True):
        if want != have:
            raise DataError(f"binary log {want} is missing from {spool.directory} (the archive has {have} "
                            f"and later): cannot replay past it")
    if not names or names[0] != first:
        raise DataError(f"binary log {first}, where the backup ends, is not in {spool.directory}")
    for name in names:
        spool.verify(name)
    return names


def restore(request: MariaRestore) -> str:
    spool = Spool(request.binlog_dir)
    sequence, available = plan_sequence(request, spool)
    if request.check_only:
        return f"plan: chain up to piece #{sequence}, binary logs in {spool.directory}; {available}"
    tools = Tools.resolve()
    prepared = physical_prepare.prepare(request.pieces_dir, tools, force=True, until=sequence)
    prepared_dir = os.path.join(os.path.abspath(request.pieces_dir), physical_prepare.PREPARED)
    first, position = binlog_position(prepared_dir)
    logs = needed_logs(spool, first)
    log.info("%s; replaying %s:%d .. %s up to %s", prepared.describe(), first, position, logs[-1], request.target)
    owner = RunAs.owner_of(request.datadir)
    new = sibling(request.datadir, "pitr", claim=True)
    try:
        _build(tools, prepared_dir, new, owner)
        _trial_replay(request, spool, logs, position, new, owner)
    except BaseException:
        shutil.rmtree(new + ".run", ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rename(new, new + ".failed")
        raise
    if request.drill:
        for path in (new, new + ".run"):
            shutil.rmtree(path, ignore_errors=True)
        return drill_report(_newest_event(spool), f"binary logs {logs[0]} .. {logs[-1]} replayed")
    if request.service is None:
        sock = _serve_beside(new, owner, request.timeout)
        return (f"recovered to {request.target}; the server runs beside the live one: data directory {new}, "
                f"socket {sock}; stop it with mariadb-admin --socket={sock} shutdown")
    shutil.rmtree(new + ".run", ignore_errors=True)
    old = swap(request.service, request.datadir, new, lambda _: False, request.closed)
    return f"recovered to {request.target} (binary logs replayed up to it); live data directory replaced, " \
           f"the old one kept as {old}"


def _build(tools: Tools, prepared: str, new: str, owner: RunAs | None) -> None:
    result = run([tools.mariabackup, "--no-defaults", "--copy-back", f"--target-dir={prepared}",
                  f"--datadir={new}"], timeout=RECOVERY_TIMEOUT)
    if result.code != 0:
        raise UnavailableError(f"mariabackup --copy-back into {new} failed: {result.last_error_line()}")
    if owner:
        for directory, _, files in os.walk(new):
            os.chown(directory, owner.uid, owner.gid)
            for name in files:
                os.chown(os.path.join(directory, name), owner.uid, owner.gid)


def _server_argv(new: str, owner: RunAs | None) -> tuple[list[str], str]:
    """A server on the recovered directory: private socket, no networking, no binary log."""
    rundir = new + ".run"
    sock = os.path.join(rundir, "mysqld.sock")
    user = (owner.user_name() if owner else None) or "root"
    return [find_tool("mariadbd", "mysqld", package_hint="mariadb-server"), "--no-defaults",
            f"--datadir={new}", f"--socket={sock}", "--skip-networking", "--skip-log-bin",
            f"--pid-file={rundir}/mysqld.pid", f"--log-error={rundir}/error.log", f"--user={user}"], sock


def _trial_replay(request: MariaRestore, spool: Spool, logs: list[str], position: int, new: str,
                  owner: RunAs | None) -> None:
    rundir = new + ".run"
    os.mkdir(rundir, 0o700)
    if owner:
        os.chown(rundir, owner.uid, owner.gid)
    server, sock = _server_argv(new, owner)
    with Child(server, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as trial:
        _wait_answering(sock, trial.poll, rundir, request.timeout)
        _replay(request.target, [spool.path(n) for n in logs], position, sock)
        run([find_tool("mariadb-admin", "mysqladmin"), "--no-defaults", f"--socket={sock}", "-uroot",
             "shutdown"], timeout=COMMAND_TIMEOUT)
        trial.wait(COMMAND_TIMEOUT)


def _serve_beside(new: str, owner: RunAs | None, timeout: float) -> str:
    """Start the recovered server again, detached, for the admin to copy from."""
    server, sock = _server_argv(new, owner)
    pid = start_detached(server)
    _wait_answering(sock, lambda: None if os.path.exists(f"/proc/{pid}") else 1, new + ".run", timeout)
    return sock


def _wait_answering(sock: str, exited, rundir: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    ping = [find_tool("mariadb-admin", "mysqladmin"), "--no-defaults", f"--socket={sock}", "-uroot", "ping"]
    while time.monotonic() < deadline:
        if exited() is not None:
            raise UnavailableError(f"the recovery server did not start: see {rundir}/error.log")
        if run(ping, timeout=QUICK_TIMEOUT).code == 0:
            return
        time.sleep(0.3)
    raise UnavailableError(f"the recovery server did not answer within {timeout:g} s")


def _replay(target: RecoveryTarget, paths: list[str], position: int, sock: str) -> None:
    """mariadb-binlog | mariadb; --stop-datetime is local time, exclusive, whole seconds."""
    reader = [find_tool("mariadb-binlog", "mysqlbinlog"), "--no-defaults", f"--start-position={position}"]
    if not target.latest:
        stop = target.at.astimezone().replace(microsecond=0) + datetime.timedelta(seconds=1)
        reader.append(f"--stop-datetime={stop.strftime('%Y-%m-%d %H:%M:%S')}")
    loader = [find_tool("mariadb", "mysql"), "--no-defaults", f"--socket={sock}", "-uroot", "--binary-mode"]
    with Child(reader + paths, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as source, \
            Child(loader, stdin=source.stdout_fd, stdout=subprocess.DEVNULL) as sink:
        source.close_stdout()
        loaded, read = sink.wait(), source.wait()
    if read != 0:
        raise DataError(f"replaying the binary logs failed: {source.failure(read)}")
    if loaded != 0:
        raise DataError(f"replaying the binary logs failed: {sink.failure(loaded)}")
