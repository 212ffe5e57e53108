"""Measuring commands: wall time, CPU time and peak RSS, the way Bareos runs them.

Every measured command runs with the bare environment a Bareos file daemon
gives its children (PATH only, cwd /), in its own session so an interrupted
benchmark can kill exactly what it started.  CPU time and peak RSS come from
os.wait4(): the rusage of a process includes the children it waited for, so
the CPU of `dbpipe-dump` counts its dump tool too - just as the bare pipeline
counts `mariadb-dump` plus `cat`.

Peak RSS is VmHWM (the peak of a process' own memory since its exec), never
ru_maxrss: that is the maximum over a process and its waited-for children and
it even starts at the forking Python's size.  dbpipe commands run under
peak_rss.py, which executes the script in the same interpreter process and
records its VmHWM at exit (exact); the bare tools' VmHWM is sampled every
RSS_INTERVAL seconds while they run (their memory is flat after start-up).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"
PEAK_RSS = Path(__file__).resolve().parent / "peak_rss.py"
BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# what bin/* runs with under Bareos: '#!/usr/bin/env python3' with the bare PATH
SYSTEM_PYTHON = "/usr/bin/python3"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20
RSS_INTERVAL = 0.02
SERVER_LAG = 0.2

_running: set[int] = set()


class BenchError(RuntimeError):
    """A measured command failed: the benchmark cannot go on with this pair."""


def bare_env(**extra: str) -> dict:
    """The environment bareos-fd gives bpipe programs (plus what a test needs)."""
    return {"PATH": BARE_PATH, "LANG": "C.UTF-8", **extra}


@dataclass(frozen=True)
class Sample:
    """One run of one side of a comparison."""

    wall: float          # seconds, first start to last exit
    cpu: float           # user+system seconds of the measured processes and their children
    rss: int             # bytes: peak RSS of the process of interest only
    server_cpu: float    # seconds the database server spent meanwhile
    busy: float = 0.0    # CPU seconds the whole machine spent meanwhile (all processes)
    own_cpu: float = 0.0  # dbpipe side: user+system seconds of the dbpipe process alone

    @property
    def others(self) -> float:
        """CPU seconds of processes that are neither measured nor the server:
        what other jobs on the machine took while this run ran."""
        return max(0.0, self.busy - self.cpu - self.server_cpu)


@dataclass
class Series:
    """Repeated samples of one side; figures are medians (min for reference)."""

    label: str
    samples: list[Sample] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    def minimum(self, attr: str) -> float:
        return min(getattr(s, attr) for s in self.samples)

    def maximum(self, attr: str) -> float:
        return max(getattr(s, attr) for s in self.samples)


@dataclass(frozen=True)
class Command:
    """One process of a pipeline.  dbpipe=True runs a bin/ script under peak_rss.py."""

    argv: list[str]
    env: dict = field(default_factory=bare_env)
    dbpipe: bool = False


def dbpipe_command(name: str, *args: str, env: dict | None = None) -> Command:
    return Command([str(BIN / name), *args], env or bare_env(), dbpipe=True)


def run_pipeline(commands: list[Command], *, stdin: str | None = None, stdout: str = os.devnull,
                 server_cpu: Callable[[], float] = lambda: 0.0, log_dir: str | None = None,
                 rss_of: int = 0) -> Sample:
    """Run commands connected by pipes (stdin from a file, stdout to a file) and measure.

    rss_of picks the process whose peak RSS is reported.  Raises BenchError when
    any process exits non-zero, with the end of its stderr.
    """
    with tempfile.TemporaryDirectory(dir=log_dir, prefix="run-") as scratch:
        started_server = server_cpu()
        started_busy = machine_busy()
        started = time.monotonic()
        procs, stderr_paths, rss_files = _start(commands, stdin, stdout, scratch)
        with RssWatcher([p.pid for p, rss in zip(procs, rss_files, strict=False) if not rss]) as watcher:
            statuses = [_wait(proc) for proc in procs]
        wall = time.monotonic() - started
        busy = machine_busy() - started_busy
        time.sleep(SERVER_LAG)  # let the server's backend for this client end and be counted
        spent_server = server_cpu() - started_server
        for command, (status, _), path in zip(commands, statuses, stderr_paths, strict=False):
            if status != 0:
                raise BenchError(f"{' '.join(command.argv)[:200]} exited {status}: {_tail(path)}")
        cpu = sum(usage.ru_utime + usage.ru_stime for _, usage in statuses)
        rss, own_cpu = (_read_peak_rss(rss_files[rss_of]) if rss_files[rss_of]
                        else (watcher.peaks.get(procs[rss_of].pid, 0), 0.0))
    return Sample(wall, cpu, rss, spent_server, busy, own_cpu)


def _start(commands, stdin, stdout, scratch):
    procs, stderr_paths, rss_files = [], [], []
    previous = open(stdin or os.devnull, "rb")
    try:
        for index, command in enumerate(commands):
            last = index == len(commands) - 1
            out = open(stdout, "wb") if last else subprocess.PIPE
            argv, rss_file = list(command.argv), None
            if command.dbpipe:
                rss_file = os.path.join(scratch, f"rss-{index}")
                argv = [SYSTEM_PYTHON, str(PEAK_RSS), rss_file, *argv]
            stderr_path = os.path.join(scratch, f"stderr-{index}")
            with open(stderr_path, "wb") as err:
                proc = subprocess.Popen(argv, stdin=previous, stdout=out, stderr=err, cwd="/",
                                        env=command.env, start_new_session=True)
            _running.add(proc.pid)
            previous.close()
            if last:
                out.close()
            else:
                previous = proc.stdout
            procs.append(proc)
            stderr_paths.append(stderr_path)
            rss_files.append(rss_file)
    except BaseException:
        previous.close()
        for proc in procs:
            kill(proc.pid)
        raise
    return procs, stderr_paths, rss_files


def _wait(proc: subprocess.Popen):
    """wait4 the process: exit status and rusage (its waited-for children included)."""
    _, status, usage = os.wait4(proc.pid, 0)
    _running.discard(proc.pid)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


class RssWatcher:
    """Samples VmHWM of running processes until the block ends (bytes per pid)."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while True:
            for pid in self.pids:
                peak = vm_hwm(pid)
                if peak:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), peak)
            if self._stop.wait(RSS_INTERVAL):
                return


def vm_hwm(pid: int) -> int:
    """Peak RSS of pid's own memory since its exec, in bytes (0: gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    _running.discard(pid)


def kill_running() -> None:
    """Kill whatever measured command is still running (interrupted benchmark)."""
    for pid in list(_running):
        kill(pid)


def _read_peak_rss(path: str) -> tuple[int, float]:
    """(peak RSS in bytes, own CPU seconds) as peak_rss.py wrote them."""
    with open(path) as handle:
        kib, cpu = handle.read().split()
    return int(kib) * 1024, float(cpu)


def _tail(path: str, lines: int = 3) -> str:
    with open(path, "rb") as handle:
        text = handle.read()[-4000:].decode("utf-8", "replace")
    return " | ".join(line for line in text.splitlines()[-lines:] if line.strip())


# --- the database server's own CPU ----------------------------------------------------

def process_cpu(pid: int, with_children: bool = True) -> float:
    """utime+stime (+ cutime+cstime of reaped children) of pid, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def tree_cpu(pid: int) -> float:
    """CPU of a server process, its reaped children and its live children
    (PostgreSQL backends are children of the postmaster)."""
    total = process_cpu(pid)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _parent(entry.name) == pid:
            total += process_cpu(int(entry.name))
    return total


def _parent(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return -1


def settle(cpu: Callable[[], float], idle_share: float = 0.05, window: float = 1.0,
           limit: float = 120.0) -> float:
    """Wait until the server is idle (background flushing, purge, autovacuum
    after a load) so a run does not pay for the previous one; returns seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = cpu()
        time.sleep(window)
        if cpu() - before <= idle_share * window:
            break
    return time.monotonic() - started


def machine_busy() -> float:
    """CPU seconds all processors have spent on anything but idling, since boot
    (/proc/stat: user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def progress(message: str) -> None:
    print(f"run-bench: {message}", file=sys.stderr, flush=True)
