"""The restore drill on the director host (dbpipe-drill, run by the Admin job
drill-nextcloud): the newest database stream, restored by a drill job, and
its verdict carried into the Admin job.

Cancelling.  What Bareos 25.1 does on `cancel jobid=N` of an Admin job
(dird/job.cc CancelJob): it marks the job A and, as an Admin job holds no
connection to a file or storage daemon, cancels nothing else - no signal
reaches the Before script still running (lib/runscript.cc starts it with
OpenBpipe, no timer), so a drill would go on waiting for its restore job,
which runs to its end.  What CancelJob does do is run the job's After
scripts with RunsOnFailure at once, from the console that cancelled
(lib/runscript.cc RunScripts: a job marked A counts as failed; they run once
per job, not again when it ends).  So drill-nextcloud has an After script,
`dbpipe-drill --stop %i`, that sends SIGTERM to the drill of that Admin job
(found by its `--job %i`); the drill then cancels its restore job through
bconsole, waits until it has ended and says so in the Admin job's log.  A
drill that is stopped otherwise (SIGTERM, SIGINT, SIGHUP) does the same.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass

from .bareos import Bconsole, JobOutcome
from .errors import Cancelled, DataError
from .process import CONTROL_TIMEOUT, alive, cancel_deferred, running_commands

PROGRAM = "dbpipe-drill"
PSEUDO_FILE = "/NEXTCLOUD/database.sql"
STARTING = 2.0      # seconds from the director's fork to the drill's exec, with room to spare


@dataclass(frozen=True)
class Drill:
    """What to drill: the client, its FileSets with their stream's path, the
    drill job, where that job's After script expects a restored dump file."""

    client: str
    sources: dict[str, str]
    restore_job: str
    drill_file: str
    timeout: float


def run(console: Bconsole, drill: Drill) -> None:
    """Start the drill job for the newest stream, wait for it and print its
    verdict; DataError unless it ended T with `verdict:   intact`."""
    found = console.newest_stream(drill.client, drill.sources)
    # a dump file is a plain file: it goes where a pseudo file's writer would put it
    regexwhere = None if found.path == PSEUDO_FILE else f"!^{found.path}$!{drill.drill_file}!"
    with cancel_deferred():     # a cancel meanwhile acts once the JobId is known
        job_id = console.restore(drill.client, found, drill.restore_job, regexwhere)
        print(f"drill: {drill.restore_job} JobId {job_id} restores {found.path} of backup JobId {found.job_id} "
              f"(FileSet {found.fileset})", flush=True)
    try:
        outcome = console.wait(job_id, drill.timeout)
    except Cancelled as cancelled:
        ended = _cancel(console, job_id)
        print(f"drill: cancelled ({signal.Signals(cancelled.signum).name}): {drill.restore_job} JobId {job_id} "
              f"cancelled, ended {ended.status}", flush=True)
        raise
    summary = f"drill: JobId {job_id} ended {outcome.status}: {outcome.verdict}"
    print(summary, flush=True)
    if not outcome.ok or not re.match(r"verdict:\s+intact\b", outcome.verdict):
        raise DataError(summary)


def _cancel(console: Bconsole, job_id: int) -> JobOutcome:
    """Cancel the drill job and wait until it has ended (a restore being
    written winds down first)."""
    console.cancel(job_id)
    return console.wait(job_id, CONTROL_TIMEOUT)


def stop(admin_job: str, timeout: float = CONTROL_TIMEOUT, grace: float = STARTING) -> None:
    """The After script of a cancelled drill-nextcloud: SIGTERM to the drill
    of that Admin job, then wait until it has cancelled its restore job and
    ended.  Nothing to stop (the drill ended, or failed) is no error."""
    pids = _drills_of(admin_job, grace)
    for pid in pids:
        print(f"drill: Admin job {admin_job} cancelled: stopping {PROGRAM} (pid {pid}), "
              "which cancels its restore job", flush=True)
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            print(f"drill: {PROGRAM} of Admin job {admin_job} still runs after {timeout:g} s", flush=True)
            return
        time.sleep(0.2)


def _drills_of(admin_job: str, grace: float) -> list[int]:
    """The drill's pid, looked for a little while: a cancel right after the
    job started may come while the director has forked the drill but not
    yet exec'd it (its argv is still the director's)."""
    deadline = time.monotonic() + grace
    while not (pids := running_commands(lambda argv: _is_drill_of(argv, admin_job))):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return pids


def _is_drill_of(argv: list[str], admin_job: str) -> bool:
    """argv of the drill (not a --stop) that drill-nextcloud's job admin_job runs."""
    if PROGRAM not in (os.path.basename(arg) for arg in argv[:2]) or "--stop" in argv:
        return False
    return f"--job={admin_job}" in argv or ("--job", admin_job) in zip(argv, argv[1:], strict=False)
