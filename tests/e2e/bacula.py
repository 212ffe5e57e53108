"""Private Bacula 9.6 daemons (director with an sqlite catalog, storage daemon
with a File device, file daemon with the bpipe plugin) on 127.0.0.1, driven
with bconsole.

Bareos is not packaged for Debian 12; Bacula is, and has the same bpipe plugin.
Everything lives in one temp dir; the daemons run in the foreground and are
stopped by their own pids.  /etc/bacula and the system services are never used.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..helpers import BARE_PATH
from ..servers import free_port

SBIN = "/usr/sbin"
DAEMONS = ("bacula-sd", "bacula-fd", "bacula-dir")
CATALOG_SCHEMA = "/usr/share/dbconfig-common/data/bacula-director-sqlite3/install/sqlite3"
PLUGIN_DIR = "/usr/lib/bacula"
DIRECTOR, CLIENT, STORAGE_DAEMON = "dbpipe-e2e-dir", "dbpipe-e2e-fd", "dbpipe-e2e-sd"
POOL, STORAGE, MESSAGES = "E2E", "E2EFile", "E2EStandard"


def missing() -> str | None:
    """Why Bacula cannot run here, or None."""
    for name in (*DAEMONS, "bconsole"):
        if not os.access(os.path.join(SBIN, name), os.X_OK):
            return (f"{SBIN}/{name} is missing (install bacula-director-sqlite3, bacula-sd, "
                    "bacula-fd, bacula-console)")
    if not os.path.exists(os.path.join(PLUGIN_DIR, "bpipe-fd.so")):
        return f"{PLUGIN_DIR}/bpipe-fd.so is missing (install bacula-fd)"
    if not os.path.exists(CATALOG_SCHEMA):
        return f"{CATALOG_SCHEMA} is missing (install bacula-director-sqlite3)"
    if os.getuid() != 0:
        return "the file daemon must run as root, as bareos-fd does"
    return None


@dataclass
class JobResult:
    """What the catalog and the job log say about one finished job."""

    job_id: int
    status: str
    errors: int
    log: str
    files: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "T" and self.errors == 0

    def __repr__(self):
        return f"job {self.job_id}: JobStatus={self.status} JobErrors={self.errors}\n{self.log}"

    __str__ = __repr__


@dataclass
class Bacula:
    """One private set of daemons.  Jobs and FileSets are written with configure()."""

    workdir: Path
    env: dict
    ports: dict = field(default_factory=lambda: {"dir": free_port(), "fd": free_port(), "sd": free_port()})
    passwords: dict = field(default_factory=lambda: {k: secrets.token_hex(12) for k in ("dir", "fd", "sd")})
    procs: dict = field(default_factory=dict)
    resources: list[str] = field(default_factory=list)

    # --- configuration -------------------------------------------------------------
    def path(self, *parts) -> Path:
        return self.workdir.joinpath(*parts)

    def add_resource(self, text: str) -> None:
        """A Job or FileSet for the director (Bacula syntax)."""
        self.resources.append(text)

    def write_configs(self) -> None:
        for sub in ("dir", "sd", "fd", "volumes"):
            self.path(sub).mkdir(mode=0o700, exist_ok=True)
        self.path("query.sql").write_text("")
        self.path("bacula-dir.conf").write_text(self._director_conf())
        self.path("bacula-sd.conf").write_text(self._storage_conf())
        self.path("bacula-fd.conf").write_text(self._client_conf())
        self.path("bconsole.conf").write_text(
            f'Director {{\n  Name = {DIRECTOR}\n  DIRport = {self.ports["dir"]}\n'
            f'  Address = 127.0.0.1\n  Password = "{self.passwords["dir"]}"\n}}\n')

    def _director_conf(self) -> str:
        work, p = self.path("dir"), self.ports
        return f"""\
Director {{
  Name = {DIRECTOR}
  DIRport = {p["dir"]}
  DirAddress = 127.0.0.1
  QueryFile = "{self.path("query.sql")}"
  WorkingDirectory = "{work}"
  PidDirectory = "{work}"
  Maximum Concurrent Jobs = 10
  Password = "{self.passwords["dir"]}"
  Messages = {MESSAGES}
}}
Catalog {{
  Name = E2ECatalog
  dbname = "bacula"; dbuser = ""; dbpassword = ""
}}
Client {{
  Name = {CLIENT}
  Address = 127.0.0.1
  FDPort = {p["fd"]}
  Catalog = E2ECatalog
  Password = "{self.passwords["fd"]}"
  AutoPrune = no
  Maximum Concurrent Jobs = 10
}}
Storage {{
  Name = {STORAGE}
  Address = 127.0.0.1
  SDPort = {p["sd"]}
  Password = "{self.passwords["sd"]}"
  Device = E2EDevice
  Media Type = File
  Maximum Concurrent Jobs = 10
}}
Pool {{
  Name = {POOL}
  Pool Type = Backup
  AutoPrune = no
  Recycle = no
  Label Format = "vol-"
  Maximum Volume Jobs = 1
}}
# the director refuses to start without a Job; tests add theirs with add_resource()
FileSet {{
  Name = E2EPlaceholder
  Include {{
    File = "{self.path("query.sql")}"
  }}
}}
Job {{
  Name = e2e-placeholder
  Type = Backup
  Client = {CLIENT}
  FileSet = E2EPlaceholder
  Storage = {STORAGE}
  Pool = {POOL}
  Messages = {MESSAGES}
}}
Messages {{
  Name = {MESSAGES}
  console = all, !skipped, !saved
  catalog = all, !skipped, !saved
  append = "{work}/messages.log" = all, !skipped, !saved
}}
""" + "\n".join(self.resources)

    def _storage_conf(self) -> str:
        work = self.path("sd")
        return f"""\
Storage {{
  Name = {STORAGE_DAEMON}
  SDPort = {self.ports["sd"]}
  SDAddress = 127.0.0.1
  WorkingDirectory = "{work}"
  Pid Directory = "{work}"
  Maximum Concurrent Jobs = 5
}}
Director {{
  Name = {DIRECTOR}
  Password = "{self.passwords["sd"]}"
}}
# BlockChecksum = no: a corrupted volume reaches the bpipe writer, which must
# refuse it itself (Bareos' block checksums can be off, too).
Device {{
  Name = E2EDevice
  Media Type = File
  Archive Device = "{self.path("volumes")}"
  LabelMedia = yes
  Random Access = yes
  AutomaticMount = yes
  RemovableMedia = no
  AlwaysOpen = no
  BlockChecksum = no
}}
Messages {{
  Name = Standard
  director = {DIRECTOR} = all
}}
"""

    def _client_conf(self) -> str:
        work = self.path("fd")
        return f"""\
FileDaemon {{
  Name = {CLIENT}
  FDport = {self.ports["fd"]}
  FDAddress = 127.0.0.1
  WorkingDirectory = "{work}"
  Pid Directory = "{work}"
  Plugin Directory = "{PLUGIN_DIR}"
  Maximum Concurrent Jobs = 5
}}
Director {{
  Name = {DIRECTOR}
  Password = "{self.passwords["fd"]}"
}}
Messages {{
  Name = Standard
  director = {DIRECTOR} = all, !skipped, !restored
}}
"""

    # --- lifecycle -------------------------------------------------------------------
    def create_catalog(self) -> None:
        schema = Path(CATALOG_SCHEMA).read_text().replace("PRAGMA synchronous = NORMAL;", "")
        db = sqlite3.connect(self.path("dir", "bacula.db"))
        try:
            db.executescript(f"PRAGMA synchronous = OFF; BEGIN; {schema} COMMIT;")
        finally:
            db.close()

    def test_configs(self) -> None:
        for daemon, conf in (("bacula-dir", "bacula-dir.conf"), ("bacula-sd", "bacula-sd.conf"),
                             ("bacula-fd", "bacula-fd.conf")):
            result = subprocess.run([f"{SBIN}/{daemon}", "-t", "-c", str(self.path(conf))],
                                    capture_output=True, text=True, env={"PATH": BARE_PATH})
            if result.returncode != 0:
                raise RuntimeError(f"{daemon} -t: {result.stdout}{result.stderr}")

    def start(self) -> None:
        self.write_configs()
        self.create_catalog()
        self.test_configs()
        for daemon in DAEMONS:
            short = daemon.split("-")[1]
            env = self.env if daemon == "bacula-fd" else {"PATH": BARE_PATH}
            with open(self.path(f"{short}.out"), "wb") as out:
                self.procs[daemon] = subprocess.Popen(
                    [f"{SBIN}/{daemon}", "-f", "-c", str(self.path(f"bacula-{short}.conf"))],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                    cwd=str(self.path(short)), start_new_session=True)
        self._wait_until_answering()

    def _wait_until_answering(self, timeout: float = 30) -> None:
        """Ports first (bconsole sleeps 5 s after a refused connection), then the director."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for daemon, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{daemon} exited {proc.returncode}: {self.daemon_output()}")
            if not all(_listening(port) for port in self.ports.values()):
                time.sleep(0.1)
                continue
            out = self.console("status client", timeout=10, check=False)
            if "Daemon started" in out or "Running Jobs" in out:
                return
            time.sleep(0.3)
        raise RuntimeError(f"Bacula did not answer within {timeout} s: {self.daemon_output()}")

    def daemon_output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted(self.workdir.glob("*.out")))

    def reload(self) -> None:
        """Re-read the director config after add_resource()."""
        self.path("bacula-dir.conf").write_text(self._director_conf())
        self.test_configs()
        out = self.console("reload")
        if "rror" in out:
            raise RuntimeError(f"reload failed: {out}")

    def stop(self) -> None:
        """Each daemon by its pid; then whatever it left in its own process
        group (a reader or writer that never ended)."""
        for daemon in reversed(DAEMONS):
            proc = self.procs.pop(daemon, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    # --- bconsole ----------------------------------------------------------------------
    def console(self, commands: str, timeout: float = 120, check: bool = True) -> str:
        result = subprocess.run([f"{SBIN}/bconsole", "-n", "-c", str(self.path("bconsole.conf"))],
                                input=commands + "\nquit\n", capture_output=True, text=True,
                                timeout=timeout, env={"PATH": BARE_PATH})
        if check and result.returncode != 0:
            raise RuntimeError(f"bconsole failed: {result.stdout}{result.stderr}")
        return result.stdout + result.stderr

    def run_job(self, command: str, timeout: float = 180) -> JobResult:
        """Run one 'run ...' or 'restore ...' command to its end."""
        out = self.console(f"{command} yes")
        match = re.search(r"JobId[= ](\d+)", out)
        if not match:
            raise RuntimeError(f"no job started by {command!r}: {out}")
        job_id = int(match.group(1))
        try:
            self.console(f"wait jobid={job_id}", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.console(f"cancel jobid={job_id} yes", check=False)
            raise RuntimeError(f"job {job_id} did not end within {timeout} s: {self.job(job_id)}") from None
        return self.job(job_id)

    def backup(self, job: str) -> JobResult:
        return self.run_job(f"run job={job} level=Full")

    def restore(self, backup_id: int, restore_job: str, where: str = "/",
                replace: str = "always", file: str | None = None) -> JobResult:
        """Restore everything of a backup job, or one file of it."""
        selection = f'file="{file}" done' if file else "all done"
        return self.run_job(f"restore jobid={backup_id} client={CLIENT} restorejob={restore_job} "
                            f'where="{where}" replace={replace} {selection}')

    def query(self, sql: str, *args) -> list[tuple]:
        """Read the catalog directly (bconsole's tables are hard to parse)."""
        db = sqlite3.connect(self.path("dir", "bacula.db"))
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def job(self, job_id: int) -> JobResult:
        status, errors, files = self.query(
            "SELECT JobStatus, JobErrors, JobFiles FROM Job WHERE JobId = ?", job_id)[0]
        log = "".join(row[0] for row in self.query(
            "SELECT LogText FROM Log WHERE JobId = ? ORDER BY LogId", job_id))
        return JobResult(job_id, status, errors, log, files)

    def files(self, job_id: int) -> list[str]:
        """Every path the catalog holds for a backup job."""
        rows = self.query("SELECT Path.Path || Filename.Name FROM File JOIN Path USING (PathId) "
                          "JOIN Filename USING (FilenameId) WHERE File.JobId = ?", job_id)
        return sorted(row[0] for row in rows)

    def volumes(self, job_id: int) -> list[Path]:
        rows = self.query("SELECT DISTINCT Media.VolumeName FROM JobMedia JOIN Media USING (MediaId) "
                          "WHERE JobMedia.JobId = ?", job_id)
        return [self.path("volumes", row[0]) for row in rows]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_bacula(env: dict) -> Bacula:
    workdir = Path(tempfile.mkdtemp(prefix="dbpipe-e2e-bacula-"))
    bacula = Bacula(workdir, env)
    try:
        bacula.start()
    except BaseException:
        bacula.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return bacula
