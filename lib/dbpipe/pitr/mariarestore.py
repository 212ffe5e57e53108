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
A position target FILE:POS replays every event that begins before POS in
FILE (--stop-position on the last log): POS must be an event boundary of an
archived log after the backup, and the replayed stream must end exactly
there - the last event fed to the server ends at POS.
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
from ..stream import write_all
from ..transfer import chunks
from .binlogs import number_of
from .spool import Spool
from .pgrecover import drill_report
from .swap import Closed, sibling, swap
from .targettime import RecoveryTarget, show

EVENT = re.compile(rb"^#(\d{6})\s+(\d{1,2}:\d\d:\d\d)\s+server id \d+\s+end_log_pos (\d+)", re.M)
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


@dataclass(frozen=True)
class Event:
    end: int                      # end_log_pos: where the next event begins
    at: datetime.datetime


def _event(day: bytes, clock: bytes, end: bytes) -> Event:
    return Event(int(end), datetime.datetime.strptime(f"{day.decode()} {clock.decode()}",
                                                      "%y%m%d %H:%M:%S").astimezone())


def events(path: str) -> list[Event]:
    """The events of a binary log, as mariadb-binlog's header lines show them."""
    result = run([find_tool("mariadb-binlog", "mysqlbinlog", package_hint="mariadb-client"),
                  "--no-defaults", path], timeout=LONG_TIMEOUT)
    if result.code != 0:
        raise DataError(f"cannot read binary log {path}: {result.last_error_line()}")
    return [_event(*found) for found in EVENT.findall(result.stdout.encode())]


def event_times(path: str) -> list[datetime.datetime]:
    return [event.at for event in events(path)]


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
    if request.target.binlog:
        return _plan_position(request.target, spool, pieces, oldest)
    if request.target.latest:
        return pieces[-1].piece.sequence, available
    whole_second = request.target.at.replace(microsecond=0)
    usable = [s for s in pieces if _finished(s) <= whole_second]
    if not usable:
        raise DataError(f"{request.target} is before the oldest physical backup; {available}")
    if whole_second >= newest:
        raise DataError(f"{request.target} is beyond what the archive covers; {available}")
    return usable[-1].piece.sequence, available


def _plan_position(target: RecoveryTarget, spool: Spool, pieces: list, oldest: datetime.datetime) -> tuple[int, str]:
    """A position must be an event boundary of an archived log; the chain is
    prepared up to the newest piece finished in a second before the first
    event not replayed, so the backup ends before the position."""
    name, position = target.binlog
    names = _binlogs(spool)
    last_events = events(spool.path(names[-1]))
    available = (f"available: {names[0]} .. {names[-1]}:{last_events[-1].end if last_events else 4}, "
                 f"backups from {show(oldest)}")
    if name not in names:
        where = "beyond" if number_of(name) > number_of(names[-1]) else "outside"
        raise DataError(f"{target} is {where} what the archive covers ({name} is not in it); {available}")
    logged = last_events if name == names[-1] else events(spool.path(name))
    ends = [event.end for event in logged]
    if position not in ends:
        if position > ends[-1]:
            raise DataError(f"{target} is beyond what the archive covers; {available}")
        raise DataError(f"{target} is not where an event of {name} ends (its last events end at "
                        f"{', '.join(map(str, ends[-3:]))}; mariadb-binlog shows them as end_log_pos)")
    following = [event.at for event in logged if event.end > position]
    if not following and name != names[-1]:
        following = event_times(spool.path(names[names.index(name) + 1]))[:1]
    usable = [s for s in pieces if not following or _finished(s) < following[0].replace(microsecond=0)]
    if not usable:
        raise DataError(f"{target} is before the oldest physical backup; {available}")
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
    logs = _up_to_target(request.target, needed_logs(spool, first), first, position)
    log.info("%s; replaying %s:%d .. %s up to %s", prepared.describe(), first, position, logs[-1], request.target)
    owner = RunAs.owner_of(request.datadir)
    new = sibling(request.datadir, "pitr", claim=True)
    try:
        _build(tools, prepared_dir, new, owner)
        reached = _trial_replay(request, spool, logs, position, new, owner)
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
        return (f"recovered to {request.target} ({reached}); the server runs beside the live one: data "
                f"directory {new}, socket {sock}; stop it with mariadb-admin --socket={sock} shutdown")
    shutil.rmtree(new + ".run", ignore_errors=True)
    old = swap(request.service, request.datadir, new, lambda _: False, request.closed, str(request.target))
    return f"recovered to {request.target} ({reached}); live data directory replaced, the old one kept as {old}"


def _up_to_target(target: RecoveryTarget, logs: list[str], first: str, position: int) -> list[str]:
    """A position target: the logs up to its own (--stop-position applies to
    the last one), which must not lie before the backup's end."""
    if not target.binlog:
        return logs
    name, stop = target.binlog
    if name not in logs or (name == first and stop < position):
        raise DataError(f"{target} is before the end of the physical backup ({first}:{position}); "
                        f"choose a later position or restore the older chain")
    return logs[:logs.index(name) + 1]


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
    """A server on the recovered directory: private socket, no networking, no
    binary log, and no log flush per replayed transaction - the replay is
    repeated from the archive if this server dies, and a clean shutdown
    writes everything before the directory goes live (the flush per commit
    more than doubled the restore time of an hour of writes)."""
    rundir = new + ".run"
    sock = os.path.join(rundir, "mysqld.sock")
    user = (owner.user_name() if owner else None) or "root"
    return [find_tool("mariadbd", "mysqld", package_hint="mariadb-server"), "--no-defaults",
            f"--datadir={new}", f"--socket={sock}", "--skip-networking", "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=0",
            f"--pid-file={rundir}/mysqld.pid", f"--log-error={rundir}/error.log", f"--user={user}"], sock


def _trial_replay(request: MariaRestore, spool: Spool, logs: list[str], position: int, new: str,
                  owner: RunAs | None) -> str:
    """Replay on a trial server; what the replayed stream reached."""
    rundir = new + ".run"
    os.mkdir(rundir, 0o700)
    if owner:
        os.chown(rundir, owner.uid, owner.gid)
    server, sock = _server_argv(new, owner)
    with Child(server, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as trial:
        _wait_answering(sock, trial.poll, rundir, request.timeout)
        last = _replay(request.target, [spool.path(n) for n in logs], position, sock)
        run([find_tool("mariadb-admin", "mysqladmin"), "--no-defaults", f"--socket={sock}", "-uroot",
             "shutdown"], timeout=COMMAND_TIMEOUT)
        try:
            code = trial.wait(COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
    if code != 0:   # only a clean shutdown has written every replayed transaction (no flush per commit)
        how = f"still running after {COMMAND_TIMEOUT:g} s" if code is None else f"exit {code}"
        raise UnavailableError(f"the recovered trial server did not shut down cleanly ({how}); nothing changed")
    return _verified(request.target, logs, last)


def _verified(target: RecoveryTarget, logs: list[str], last: Event | None) -> str:
    """The last event fed to the server must end exactly at a position
    target, and lie within a time target's second."""
    if last is None:
        return f"nothing to replay after the backup in {logs[0]}"
    if target.binlog:
        reached = f"last event replayed ends at {logs[-1]}:{last.end}, {show(last.at)}"
        if last.end != target.binlog[1]:
            raise DataError(f"the replay did not stop at {target}: its {reached}")
        return reached
    reached = f"last event replayed at {show(last.at)}, end_log_pos {last.end}"
    if target.at and last.at > target.at.replace(microsecond=0):
        raise DataError(f"the replay went past {target}: its {reached}")
    return reached


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


def _replay(target: RecoveryTarget, paths: list[str], position: int, sock: str) -> Event | None:
    """mariadb-binlog | mariadb, watching the stream for the last event fed to
    the server.  --stop-datetime is local time, exclusive, whole seconds;
    --stop-position applies to the last log."""
    reader = [find_tool("mariadb-binlog", "mysqlbinlog"), "--no-defaults", f"--start-position={position}"]
    if target.binlog:
        reader.append(f"--stop-position={target.binlog[1]}")
    elif not target.latest:
        stop = target.at.astimezone().replace(microsecond=0) + datetime.timedelta(seconds=1)
        reader.append(f"--stop-datetime={stop.strftime('%Y-%m-%d %H:%M:%S')}")
    loader = [find_tool("mariadb", "mysql"), "--no-defaults", f"--socket={sock}", "-uroot", "--binary-mode"]
    watch = LastEvent()
    with Child(reader + paths, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) as source, \
            Child(loader, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as sink:
        with contextlib.suppress(BrokenPipeError):
            for chunk in chunks(source.stdout_fd, "mariadb-binlog"):
                watch.feed(chunk)
                write_all(sink.stdin_fd, chunk)
        sink.close_stdin()
        loaded, read = sink.wait(), source.wait()
    if read != 0:
        raise DataError(f"replaying the binary logs failed: {source.failure(read)}")
    if loaded != 0:
        raise DataError(f"replaying the binary logs failed: {sink.failure(loaded)}")
    return watch.last


class LastEvent:
    """The last event header line in mariadb-binlog's output (lines may be
    split across reads: the unfinished last line waits for the next)."""

    def __init__(self):
        self.last: Event | None = None
        self._tail = b""

    def feed(self, chunk) -> None:
        text = self._tail + bytes(chunk)
        cut = text.rfind(b"\n") + 1
        found = EVENT.findall(text, 0, cut)
        if found:
            self.last = _event(*found[-1])
        self._tail = text[cut:][-4096:]
