"""What dbpipe knows about Bareos, in one place.

- The job environment bareos-fd 25+ gives bpipe programs (BareosJobId, ...).
  RunScript commands get none of it; they are passed %i instead.
- How a failed bpipe program shows up: the job log says only
  "Error closing stream for pseudo file /X: 268435533", which is
  0x10000000 | exit code (here 77).
- A Restore job cannot be scheduled, and a Console RunScript may not run
  `restore` ("Can't use restore command in a runscript"): the restore drill's
  Admin job runs a command on the director that asks bconsole (Bconsole).
- The job-log channel.  bareos-fd throws a bpipe reader's stderr away, but
  every line a client RunScript prints reaches the job log.  So each dbpipe
  program running inside a job appends its log lines to a per-job record
  (JobLog), and the shipped jobs end with a RunScript, `dbpipe-joblog %i`,
  that prints the record into the job log and removes it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass

from .errors import UnavailableError
from .files import state_root

BPIPE_EXIT_FLAG = 0x10000000
LEVELS = {"F": "full", "I": "incremental", "D": "differential"}
JOBLOG_MAX_AGE = 30 * 86400     # records of jobs whose RunScript never ran


@dataclass(frozen=True)
class BareosJob:
    """The job context bareos-fd (25 and newer) exports to bpipe programs."""

    job_id: str = ""
    level: str = ""
    job_type: str = ""
    where: str | None = None
    replace: str | None = None

    @classmethod
    def from_environ(cls, environ=os.environ) -> "BareosJob":
        return cls(
            job_id=environ.get("BareosJobId", "").strip(),
            level=environ.get("BareosJobLevel", "").strip(),
            job_type=environ.get("BareosJobType", "").strip(),
            where=environ.get("BareosWhere"),
            replace=environ.get("BareosReplace"),
        )

    @property
    def level_name(self) -> str | None:
        """full, incremental or differential; None for other levels and outside a job."""
        return LEVELS.get(self.level)

    def restore_location(self, where_arg: str | None) -> str | None:
        """Where a restore wants the data; None means in place (the live database).

        From $BareosWhere (Bareos 26+) or a --where=%w argument (Bareos up to 25
        substitutes %w in the writer string; where=/ arrives empty).  A literal
        %w means nobody substituted it: in place, as outside Bareos."""
        where = self.where if self.where is not None else _substituted(where_arg)
        return where if where and where.strip("/") else None

    def may_overwrite(self, replace_arg: str | None) -> bool:
        """The replace code (a/w/o/n: always, ifnewer, ifolder, never) from
        $BareosReplace or a --replace=%r argument; default always."""
        replace = self.replace if self.replace is not None else _substituted(replace_arg)
        return (replace or "a").strip() in ("a", "w", "o")

    def label(self) -> str:
        parts = [f"job {self.job_id}"] if self.job_id else []
        parts += [f"level {self.level}"] if self.level else []
        parts += [f"type {self.job_type}"] if self.job_type else []
        return "Bareos " + ", ".join(parts) if parts else ""


def _substituted(value: str | None) -> str | None:
    """None for an argument Bareos did not substitute (%w, %r still in it)."""
    return None if value is None or "%w" in value or value == "%r" else value


def exit_code_of(status: int) -> int | None:
    """The program's exit code in a bpipe 'Error closing stream' status, if it is one."""
    return status - BPIPE_EXIT_FLAG if BPIPE_EXIT_FLAG <= status < BPIPE_EXIT_FLAG + 256 else None


@dataclass(frozen=True)
class Bconsole:
    """bconsole on the director host, for what a RunScript Console may not do."""

    program: str
    config: str
    timeout: float = 120.0

    def restore_newest(self, client: str, fileset: str, restore_job: str, path: str) -> int:
        """Start restore_job for the newest backed-up version of path; its JobId."""
        from .process import run
        command = (f"restore client={client} fileset={fileset} restorejob={restore_job} "
                   f"file={path} current done yes\nquit\n")
        result = run([self.program, "-c", self.config], input=command, timeout=self.timeout)
        queued = re.search(r"Job queued\. JobId=(\d+)", result.stdout)
        if result.code != 0 or not queued:
            said = [line.strip() for line in result.stdout.splitlines() + result.stderr.splitlines()
                    if re.search(r"error|no database record|not found|unknown|denied", line, re.I)]
            raise UnavailableError(f"bconsole started no {restore_job} job for {path}: "
                                   f"{said[-1] if said else f'exit {result.code}'}")
        return int(queued.group(1))


@dataclass(frozen=True)
class CatalogJob:
    """A finished job as `llist jobs` reports it (times as the director prints them)."""

    job_id: int
    name: str
    status: str
    level: str
    start: str
    end: str


class Catalog(Bconsole):
    """What point-in-time recovery asks the catalog, through bconsole's JSON
    mode (`.api 2`): a spool file leaves the spool only once a successful job
    holds it, and a restore fetches what the chosen jobs hold."""

    def api(self, command: str) -> dict:
        import json
        from .process import run
        result = run([self.program, "-c", self.config], input=f".api 2\n{command}\nquit\n",
                     timeout=self.timeout)
        answers = []   # [.api 2, our command, quit]
        for start in (m.start() for m in re.finditer(r'\{\s*"jsonrpc"', result.stdout)):
            with contextlib.suppress(ValueError):
                answers.append(json.JSONDecoder().raw_decode(result.stdout[start:])[0])
        if len(answers) >= 2:
            if "error" in answers[1]:
                raise UnavailableError(f"bconsole {command.split()[0]}: {answers[1]['error']}")
            return answers[1].get("result") or {}
        raise UnavailableError(f"bconsole gave no answer to {command.split()[0]!r} (exit {result.code}): "
                               f"{(result.stderr or result.stdout).strip()[-200:]}")

    def jobs(self, name: str, status: str = "T") -> list[CatalogJob]:
        rows = self.api(f"llist jobs job={name} jobstatus={status}").get("jobs", [])
        return sorted((CatalogJob(int(r["jobid"]), r.get("name", name), r.get("jobstatus", ""),
                                  r.get("level", ""), r.get("starttime", ""),
                                  r.get("realendtime") or r.get("endtime") or "")
                       for r in rows), key=lambda job: job.job_id)

    def job(self, job_id: int) -> CatalogJob:
        rows = self.api(f"llist jobid={int(job_id)}").get("jobs", [])
        if not rows:
            raise UnavailableError(f"the catalog has no job {job_id}")
        r = rows[0]
        return CatalogJob(int(r["jobid"]), r.get("name", ""), r.get("jobstatus", ""), r.get("level", ""),
                          r.get("starttime", ""), r.get("realendtime") or r.get("endtime") or "")

    def files(self, job_id: int) -> list[str]:
        rows = self.api(f"list files jobid={int(job_id)}").get("filenames", [])
        return [row["filename"] for row in rows]

    def restore_jobs(self, job_ids: list[int], client: str, restore_job: str, where: str) -> int:
        """Start restore_job for every file of these jobs below where; its JobId."""
        from .process import run
        ids = ",".join(str(i) for i in job_ids)
        command = (f"restore client={client} restorejob={restore_job} where={where} jobid={ids} "
                   f"all done yes\nquit\n")
        result = run([self.program, "-c", self.config], input=command, timeout=self.timeout)
        queued = re.search(r"Job queued\. JobId=(\d+)", result.stdout)
        if result.code != 0 or not queued:
            raise UnavailableError(f"bconsole started no {restore_job} job for jobs {ids}: "
                                   f"{result.last_error_line() or f'exit {result.code}'}")
        return int(queued.group(1))

    def wait(self, job_id: int, timeout: float = 3600) -> CatalogJob:
        from .process import run
        run([self.program, "-c", self.config], input=f"wait jobid={int(job_id)}\nquit\n", timeout=timeout)
        return self.job(job_id)


class JobLog:
    """The per-job record that `dbpipe-joblog %i` prints into the job log, and
    how each dbpipe program of the job ended.

    The outcome matters beyond the log: bareos-fd decides RunsOnSuccess on its
    own job status, which a failing bpipe writer does not always spoil, so a
    restore job's After script asks here whether the writer really succeeded."""

    def __init__(self, job_id: str, directory: str | None = None):
        if not job_id.isdigit():
            raise ValueError(f"not a Bareos JobId: {job_id!r}")
        self.job_id = job_id
        self.directory = directory or os.path.join(state_root(), "joblog")
        self.path = os.path.join(self.directory, f"{job_id}.log")
        self.status_path = os.path.join(self.directory, f"{job_id}.status")

    def append(self, line: str, path: str | None = None) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(path or self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8", "replace"))
        finally:
            os.close(fd)

    def started(self, program: str) -> None:
        self.append(f"{program} {os.getpid()} started", self.status_path)

    def ended(self, program: str, code: int) -> None:
        self.append(f"{program} {os.getpid()} exit {code}", self.status_path)

    def outcomes(self, program: str) -> list[str]:
        """How each run of program in this job ended: 'exit 0', 'exit 65: <its last
        line>', or 'did not finish' (killed before it could say); [] if it never ran."""
        runs: dict[str, str | None] = {}
        for words in (line.split() for line in _read_lines(self.status_path)):
            if len(words) >= 3 and words[0] == program:
                runs[words[1]] = words[3] if words[2] == "exit" and len(words) > 3 else None
        said = [line for line in _read_lines(self.path) if line.startswith(f"{program}: ")]
        reason = f": {said[-1][len(program) + 2:]}" if said else ""
        return [("did not finish" if code is None else f"exit {code}" + (reason if code != "0" else ""))
                for code in runs.values()]

    def take(self) -> list[str]:
        """The record's lines; the record is gone afterwards."""
        lines = _read_lines(self.path)
        for path in (self.path, self.status_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return lines

    def prune(self, now: float | None = None) -> None:
        """Remove records of jobs that never printed theirs (e.g. no RunScript)."""
        cutoff = (now or time.time()) - JOBLOG_MAX_AGE
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                if entry.name.endswith((".log", ".status")) and entry.stat().st_mtime < cutoff:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().splitlines()
    except FileNotFoundError:
        return []


class JobLogHandler(logging.Handler):
    """Copies log lines into the job's record; never fails the program."""

    def __init__(self, record: JobLog, program: str):
        super().__init__(logging.INFO)
        self.record, self.program = record, program

    def emit(self, record: logging.LogRecord) -> None:
        try:   # the message only: a traceback stays in syslog
            self.record.append(f"{self.program}: {record.getMessage()}")
        except OSError:
            pass
