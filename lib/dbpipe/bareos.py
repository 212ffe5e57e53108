"""What dbpipe knows about Bareos, in one place.

- The job environment bareos-fd 25+ gives bpipe programs (BareosJobId, ...).
  RunScript commands get none of it; they are passed %i instead.
- How a failed bpipe program shows up: the job log says only
  "Error closing stream for pseudo file /X: 268435533", which is
  0x10000000 | exit code (here 77).
- A Restore job cannot be scheduled, and a Console RunScript may not run
  `restore` ("Can't use restore command in a runscript"): the restore drill's
  Admin job runs a command on the director that asks bconsole (Bconsole).
- Cancelling an Admin job signals nothing to its running RunScript command:
  the director marks the job A and runs its After scripts at once (drill.py).
- How Bareos turns its strings into a program's argv (split_argv) and a
  bpipe plugin string into reader and writer (BpipePlugin).
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

from .errors import DataError, NoInputError, UnavailableError
from .files import state_root
from .process import CONTROL_TIMEOUT, RECOVERY_TIMEOUT

BPIPE_EXIT_FLAG = 0x10000000
LEVEL_CODES = {"F": "full", "I": "incremental", "D": "differential"}     # $BareosJobLevel
LEVELS = tuple(LEVEL_CODES.values())
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
        return LEVEL_CODES.get(self.level)

    def restore_location(self, where_arg: str | None) -> str | None:
        """Where a restore wants the data; None means in place (the live database).

        From $BareosWhere (Bareos 26+) or a --where=%w argument (Bareos up to 25
        substitutes %w in the writer string; where=/ arrives empty).  A literal
        %w means nobody substituted it: in place, as outside Bareos."""
        where = self.where if self.where is not None else _substituted(where_arg)
        return where if where and where.strip("/") else None

    def landing_dir(self, into: str, where_arg: str | None) -> str:
        """A writer's --into directory, below the restore location when there
        is one (not /): a restore elsewhere must not touch the live copy."""
        where = self.restore_location(where_arg)
        return os.path.join(where, into.lstrip("/")) if where else into

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


def is_job_id(value: str | None) -> bool:
    """A Bareos JobId is digits only; anything else (an unsubstituted %i, a
    path) names no job and, as a file name, could point anywhere."""
    return bool(value) and value.isdigit()


def split_argv(command: str) -> list[str]:
    """argv as bareos-fd builds it for a bpipe program or a RunScript (its
    BuildArgcArgv, no shell): split at spaces, repeated blanks collapse, a
    quote counts only at the start of an argument ('a b' is one), a quote
    inside a word stays literal; a tab separates nothing, only a leading one
    is skipped."""
    argv, i = [], 0
    while i < len(command):
        while i < len(command) and command[i] in " \t":
            i += 1
        if i >= len(command):
            break
        quote = command[i] if command[i] in "'\"" else ""
        start = i + 1 if quote else i
        end = command.find(quote or " ", start)
        end = len(command) if end < 0 else end
        argv.append(command[start:end])
        i = end + 1 if quote else end
    return argv


@dataclass(frozen=True)
class BpipePlugin:
    """A bpipe plugin string: Bareos splits it at every ':' and has no escape
    for the keyword syntax, so file=, reader= and writer= hold no ':'."""

    file: str
    reader: str
    writer: str

    @classmethod
    def parse(cls, plugin: str) -> "BpipePlugin":
        fields = plugin.split(":")
        keys = [field.split("=", 1)[0] for field in fields[1:]]
        if fields[0] != "bpipe" or sorted(keys) != ["file", "reader", "writer"]:
            raise ValueError(f"plugin string needs bpipe:file=...:reader=...:writer=... and no "
                             f"other ':' (Bareos splits at every ':'): {plugin}")
        return cls(**dict(field.split("=", 1) for field in fields[1:]))


def plugin_strings(config: str) -> list[str]:
    """Each `Plugin = "a" "b" ...` of a resource file, its strings joined as
    Bareos joins consecutive strings."""
    found = re.findall(r'Plugin\s*=\s*((?:"[^"]*"\s*)+)', config)
    return ["".join(re.findall(r'"([^"]*)"', value)) for value in found]


def _substituted(value: str | None) -> str | None:
    """None for an argument Bareos did not substitute (%w, %r still in it)."""
    return None if value is None or "%w" in value or value == "%r" else value


def exit_code_of(status: int) -> int | None:
    """The program's exit code in a bpipe 'Error closing stream' status, if it is one."""
    return status - BPIPE_EXIT_FLAG if BPIPE_EXIT_FLAG <= status < BPIPE_EXIT_FLAG + 256 else None


@dataclass(frozen=True)
class DrillSource:
    """A backed-up database stream the drill can restore: which backup job,
    of which FileSet, under which path."""

    job_id: int
    fileset: str
    path: str


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended, from the catalog, and the line of its log that says why."""

    job_id: int
    status: str
    errors: int
    verdict: str

    @property
    def ok(self) -> bool:
        return self.status == "T" and self.errors == 0


NAME = re.compile(r"^[A-Za-z0-9_.:/ -]+$")    # Bareos resource names and our paths: no quotes


@dataclass(frozen=True)
class Bconsole:
    """bconsole on the director host, for what a RunScript Console may not do:
    start a restore, wait for it, and read its outcome from the catalog."""

    program: str
    config: str
    timeout: float = CONTROL_TIMEOUT

    def _run(self, commands: str, timeout: float | None = None):
        from .process import run
        result = run([self.program, "-c", self.config], input=f"{commands}\nquit\n",
                     timeout=timeout or self.timeout)
        if result.code != 0:
            raise UnavailableError(f"bconsole -c {self.config} failed: {result.last_error_line()}")
        return result

    def query(self, sql: str) -> list[dict]:
        """Rows of a catalog query (.sql in JSON mode); values must not hold quotes."""
        out = self._run(f'.api json\n.sql query="{sql}"').stdout
        for answer in _json_objects(out):
            result = answer.get("result")
            if isinstance(result, dict) and "query" in result:
                return result["query"]
            if "error" in answer:
                raise UnavailableError(f"bconsole: {answer['error'].get('message', answer['error'])}")
        raise UnavailableError(f"bconsole answered no catalog rows: {_last_said(out)}")

    def newest_stream(self, client: str, sources: dict[str, str]) -> DrillSource:
        """The newest successful backup of client holding one of the streams
        (FileSet name -> path): the drill follows the method in use."""
        for value in (client, *sources, *sources.values()):
            if not NAME.match(value):
                raise UnavailableError(f"not a Bareos name or path the drill can use: {value!r}")
        quoted = lambda values: ", ".join(f"'{v}'" for v in values)  # noqa: E731
        rows = self.query(
            "SELECT j.jobid AS jobid, f.fileset AS fileset, p.path || fl.name AS path FROM job j "
            "JOIN client c ON c.clientid = j.clientid JOIN fileset f ON f.filesetid = j.filesetid "
            "JOIN file fl ON fl.jobid = j.jobid JOIN path p ON p.pathid = fl.pathid "
            f"WHERE c.name = '{client}' AND j.type = 'B' AND j.jobstatus IN ('T', 'W') "
            f"AND f.fileset IN ({quoted(sources)}) AND p.path || fl.name IN ({quoted(set(sources.values()))}) "
            "ORDER BY j.jobtdate DESC, j.jobid DESC LIMIT 1")
        found = [row for row in rows if sources.get(row["fileset"]) == row["path"]]
        if not found:
            raise NoInputError(f"no successful backup of client {client} holds a database stream "
                               f"({', '.join(f'{k}: {v}' for k, v in sources.items())})")
        return DrillSource(int(found[0]["jobid"]), found[0]["fileset"], found[0]["path"])

    def restore(self, client: str, source: DrillSource, restore_job: str, regexwhere: str | None = None) -> int:
        """Start restore_job for source's file of source's backup job; its JobId."""
        where = f" regexwhere={regexwhere}" if regexwhere else ""
        command = (f"restore client={client} jobid={source.job_id} restorejob={restore_job}{where} "
                   f"file={source.path} done yes")
        out = self._run(command).stdout
        queued = re.search(r"Job queued\. JobId=(\d+)", out)
        if not queued:
            raise UnavailableError(f"bconsole started no {restore_job} job for {source.path}: {_last_said(out)}")
        return int(queued.group(1))

    def cancel(self, job_id: int) -> None:
        """Cancel a job (queued or running); one that has ended is left as it is."""
        self._run(f"cancel jobid={int(job_id)} yes")

    def wait(self, job_id: int, timeout: float) -> JobOutcome:
        """Until the job has ended; its status from the catalog and the line of its
        log that says why (a `verdict:` line of dbpipe-verify, else the last error)."""
        self._run(f"wait jobid={job_id}", timeout=timeout)
        rows = self.query(f"SELECT jobstatus, joberrors FROM job WHERE jobid = {int(job_id)}")
        if not rows:
            raise UnavailableError(f"the catalog has no job {job_id}")
        log = self._run(f"list joblog jobid={int(job_id)}").stdout
        return JobOutcome(job_id, rows[0]["jobstatus"], int(rows[0]["joberrors"] or 0), _verdict(log))


def _json_objects(text: str):
    """The JSON answers in bconsole's output (API mode 2 pretty-prints them
    between the echoed commands)."""
    import json
    decoder, pos = json.JSONDecoder(), 0
    while (start := text.find("{", pos)) >= 0:
        try:
            value, pos = decoder.raw_decode(text, start)
        except ValueError:
            pos = start + 1
            continue
        if isinstance(value, dict):
            yield value


def _verdict(log: str) -> str:
    lines = [re.sub(r"^.*?JobId \d+: (Client(Before|After)Job: )?", "", line).strip() for line in log.splitlines()]
    verdicts = [line for line in lines if re.search(r"\bverdict: ", line)]
    errors = [line for line in lines if re.search(r"error|fatal|denied|failed", line, re.I)]
    return (verdicts or errors or ["(no verdict in the job log)"])[-1]


def _last_said(out: str) -> str:
    said = [line.strip() for line in out.splitlines()
            if re.search(r"error|no database record|not found|unknown|denied|no files", line, re.I)]
    return said[-1] if said else "(nothing)"


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

    def wait(self, job_id: int, timeout: float = RECOVERY_TIMEOUT) -> CatalogJob:
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
        if not is_job_id(job_id):
            raise ValueError(f"not a Bareos JobId: {job_id!r}")
        self.job_id = job_id
        self.directory = directory or os.path.join(state_root(), "joblog")
        self.path = os.path.join(self.directory, f"{job_id}.log")
        self.status_path = os.path.join(self.directory, f"{job_id}.status")
        self.begin_path = os.path.join(self.directory, f"{job_id}.begin")

    def append(self, line: str, path: str | None = None) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        fd = os.open(path or self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8", "replace"))
        finally:
            os.close(fd)

    def begin(self) -> None:
        """Mark the job's start (a restore job's Before script, `dbpipe-joblog
        --begin %i`).  The mark's ctime comes from the same kernel clock that
        stamps every file the job then writes, and no restore can set a ctime:
        so the files a restore put back can be told on disk (nextcloud.restored)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.begin_path)
        os.close(os.open(self.begin_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    def begun_ns(self) -> int | None:
        """The ctime of the job's start mark in ns; None without a mark."""
        try:
            return os.stat(self.begin_path).st_ctime_ns
        except FileNotFoundError:
            return None

    def started(self, program: str) -> None:
        self.append(f"{program} {os.getpid()} started", self.status_path)

    def ended(self, program: str, code: int) -> None:
        self.append(f"{program} {os.getpid()} exit {code}", self.status_path)

    def outcomes(self, program: str) -> list[str]:
        """How each run of program in this job ended: 'exit 0', 'exit 65: <its last
        line>', or 'did not finish' (killed before it could say); [] if it never ran."""
        runs: dict[str, str | None] = {}
        try:
            status, said = _read_lines(self.status_path), _read_lines(self.path)
        except OSError as exc:
            raise DataError(f"cannot read the record of Bareos job {self.job_id} in {self.directory}: "
                            f"{exc.strerror}") from None
        for words in (line.split() for line in status):
            if len(words) >= 3 and words[0] == program:
                runs[words[1]] = words[3] if words[2] == "exit" and len(words) > 3 else None
        said = [line for line in said if line.startswith(f"{program}: ")]
        reason = f": {said[-1][len(program) + 2:]}" if said else ""
        return [("did not finish" if code is None else f"exit {code}" + (reason if code != "0" else ""))
                for code in runs.values()]

    def take(self) -> list[str]:
        """The record's lines; the record is gone afterwards.  A record that
        cannot be read gives one line saying so: what prints it runs in the
        job's After script, where a traceback would end up in the job log."""
        try:
            lines = _read_lines(self.path)
        except OSError as exc:
            return [f"dbpipe-joblog: cannot read the record of job {self.job_id} "
                    f"({self.path}): {exc.strerror}"]
        for path in (self.path, self.status_path, self.begin_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return lines

    def prune(self, now: float | None = None) -> None:
        """Remove records of jobs that never printed theirs (e.g. no RunScript)."""
        cutoff = (now or time.time()) - JOBLOG_MAX_AGE
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                if entry.name.endswith((".log", ".status", ".begin")) and entry.stat().st_mtime < cutoff:
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
