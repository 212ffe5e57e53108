"""Real Bareos daemons for the tests: director, storage daemon and file daemon
(with bpipe) on 127.0.0.1, a private PostgreSQL catalog, driven with bconsole.

The Bareos comes from tools/bareos-testbed-build: $BAREOS_PREFIX, an installed
Bareos (bareos-dir on PATH), or one built once from the source tarball into a
cache outside the work tree.  Everything else lives in one temp dir: config
directories, volumes, working directories.  The daemons run in the foreground
and are stopped by their own pids; /etc/bareos and system services are never
used.

dbpipe is installed on each host of the bed from the Debian package `make
deb` builds (testkit/package.py): unpacked into that host's own root
directory, never into this machine's /usr.  The director loads the resources
the package put in the director host's usr/share/dbpipe/bareos-config, the
file daemon the Nextcloud host's, with only path prefixes and the Nextcloud
directory substituted (ShippedConfig): /usr/bin/ becomes the Nextcloud host's
root/usr/bin/.  Each other host (the director, for the commands it runs
itself; a replacement host's file daemon) runs in a mount namespace of its own
in which its root is bind-mounted over that path, as every real host has its
own /usr: the commands a daemon runs are the package's under its own root
(they find their library relative to themselves).  The resources
they refer to (Client bareos-fd, Storage File, Pools, Messages Standard,
Schedule WeeklyCycle) are defined here the way a fresh Bareos installation
defines them.  The fd's Client resource is the shipped myself.conf plus the
test bed's port, address and working directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .paths import ROOT
from .servers import BARE_PATH, Server, free_port, local_postgres

BUILD = ROOT / "tools" / "bareos-testbed-build"
DAEMONS = ("bareos-sd", "bareos-fd", "bareos-dir")
CATALOG_DB = "bareos"
RESOURCES = Path("usr/share/dbpipe/bareos-config")     # below a host's root, as the package installs them
UNSHARE = shutil.which("unshare", path=BARE_PATH) or "/usr/bin/unshare"
MOUNT = shutil.which("mount", path=BARE_PATH) or "/usr/bin/mount"


def on_host(argv: list[str], own: Path | None, named: Path | None) -> list[str]:
    """argv run on a host whose root is `own` while the loaded resources name
    `named`: in a private mount namespace with own bind-mounted over named
    (gone with the namespace's last process; nothing mounted outside it)."""
    if own is None or named is None or own == named:
        return argv
    return [UNSHARE, "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
            f'{MOUNT} --bind "$1" "$2" && shift 2 && exec "$@"', "sh", str(own), str(named), *argv]


def find_prefix() -> str:
    """The Bareos to test with; builds it once when there is none (minutes)."""
    result = subprocess.run([str(BUILD)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"no Bareos for the real-Bareos tests: {result.stderr.strip()}")
    return result.stdout.strip().splitlines()[-1]


@dataclass
class JobResult:
    """What the catalog and the job log say about one finished job."""

    job_id: int
    status: str
    errors: int
    log: str
    files: int = 0
    level: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "T" and self.errors == 0

    def __str__(self):
        return f"job {self.job_id}: JobStatus={self.status} JobErrors={self.errors}\n{self.log}"

    __repr__ = __str__


@dataclass
class ShippedConfig:
    """The package's bareos-config as an admin installs it, with paths mapped
    for the test bed; sources: the root of the host each daemon's resources
    come from (bareos-dir: the director's, bareos-fd: the file daemon's)."""

    paths: dict[str, str]
    sources: dict[str, Path]

    def mapped(self, text: str) -> str:
        for old in sorted(self.paths, key=len, reverse=True):
            text = text.replace(old, self.paths[old])
        return text

    def files(self, daemon: str) -> dict[str, str]:
        """relative path below <daemon>.d -> mapped content."""
        base = self.sources[daemon] / RESOURCES / f"{daemon}.d"
        return {str(p.relative_to(base)): self.mapped(p.read_text())
                for p in sorted(base.rglob("*.conf"))}

    def on_host(self, root: Path) -> ShippedConfig:
        """The same mapping, the file daemon's resources from another host's package."""
        return ShippedConfig(self.paths, {**self.sources, "bareos-fd": root})


# messages/Standard.conf as the bareos-filedaemon package installs it
STOCK_MESSAGES = 'Messages {\n  Name = Standard\n  Director = bareos-dir = all, !skipped, !restored\n}\n'


@dataclass
class FileDaemon:
    """Another host's file daemon (the replacement host of a disaster
    recovery): its own name, port, password, config tree, working directory,
    environment (state directory) and root (dbpipe installed from the package:
    testbed.on_host), nothing shared with the first one.
    Its bareos-fd.d is what docs/disaster-recovery.md has the admin write:
    the shipped myself.conf with the host's name, the director's password;
    the director gets a Client resource naming it."""

    name: str
    workdir: Path
    env: dict
    root: Path | None = None      # None: the commands the resources name are its own
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    proc: subprocess.Popen | None = None

    def conf(self) -> Path:
        return self.workdir / "etc"

    def client_resource(self) -> str:
        """The director's side: bareos-dir.d/client/<name>.conf."""
        return (f'Client {{\n  Name = {self.name}\n  Address = 127.0.0.1\n  FD Port = {self.port}\n'
                f'  Password = "{self.password}"\n  Catalog = MyCatalog\n}}\n')

    def resources(self, shipped: ShippedConfig) -> dict[str, str]:
        """The host's side: bareos-fd.d below its own config directory."""
        own = shipped.on_host(self.root) if self.root else shipped
        myself = own.files("bareos-fd")["client/myself.conf"].replace("Name = bareos-fd", f"Name = {self.name}")
        added = (f'  FD Port = {self.port}\n  FD Address = 127.0.0.1\n'
                 f'  Working Directory = "{self.workdir / "work"}"\n')
        return {
            "client/myself.conf": re.sub(r"(Client \{\n)", r"\1" + added.replace("\\", "\\\\"), myself, count=1),
            "director/bareos-dir.conf": f'Director {{\n  Name = bareos-dir\n  Password = "{self.password}"\n}}\n',
            "messages/Standard.conf": STOCK_MESSAGES}


@dataclass
class Bareos:
    prefix: Path
    workdir: Path
    fd_env: dict
    root: Path | None = None           # the Nextcloud host's root: /usr/bin/ of the loaded resources is below it
    director_root: Path | None = None  # the director host's root (dbpipe for the drill)
    catalog: Server | None = None
    ports: dict = field(default_factory=lambda: {k: free_port() for k in ("dir", "fd", "sd")})
    passwords: dict = field(default_factory=lambda: {k: secrets.token_hex(16) for k in ("dir", "fd", "sd")})
    procs: dict = field(default_factory=dict)
    clients: list = field(default_factory=list)

    # --- paths ----------------------------------------------------------------------
    def sbin(self, name: str) -> str:
        return str(self.prefix / "sbin" / name)

    def conf(self, daemon: str) -> Path:
        return self.workdir / "etc" / daemon

    @property
    def plugin_dir(self) -> str:
        for candidate in ("lib/bareos/plugins", "lib64/bareos/plugins", "lib/x86_64-linux-gnu/bareos/plugins"):
            if (self.prefix / candidate / "bpipe-fd.so").exists():
                return str(self.prefix / candidate)
        raise RuntimeError(f"no bpipe-fd.so below {self.prefix}")

    @property
    def volume_dir(self) -> Path:
        return self.workdir / "volumes"

    # --- configuration --------------------------------------------------------------
    def write_configs(self, shipped: ShippedConfig) -> None:
        for daemon, resources in (("bareos-dir", self._director()), ("bareos-sd", self._storage()),
                                  ("bareos-fd", self._client())):
            directory = self.conf("") / f"{daemon}.d"
            shutil.rmtree(directory, ignore_errors=True)
            for rel, text in resources.items():
                _write(directory / rel, text)
        self.write_shipped(shipped)
        _write(self.conf("") / "bconsole.conf",
               f'Director {{\n  Name = bareos-dir\n  Address = 127.0.0.1\n  DIRport = {self.ports["dir"]}\n'
               f'  Password = "{self.passwords["dir"]}"\n}}\n')

    def shipped(self, state: Path, nextcloud: Path, dumps: Path) -> ShippedConfig:
        """The package's resources (director's and Nextcloud host's roots) with
        the install paths and a Nextcloud directory mapped."""
        return ShippedConfig({
            "/usr/bin/": f"{self.root}/usr/bin/", "/var/lib/dbpipe": str(state),
            "/var/lib/bareos": str(self.workdir / "dir"), "/usr/lib/bareos/plugins": self.plugin_dir,
            "/etc/bareos": str(self.conf("")), "/var/backups/dbpipe": str(dumps),
            "/var/www/nextcloud": str(nextcloud),
            # the PITR drills' live data directories: a test points these links at its server's
            "/var/lib/postgresql/15/main": str(state.parent / "pg-main"),
            "/var/lib/mysql": str(state.parent / "mariadb-main")},
            {"bareos-dir": self.director_root or self.root, "bareos-fd": self.root})

    def add_resource(self, rel: str, text: str) -> None:
        """A resource of the caller's own (e.g. a benchmark job), below bareos-dir.d."""
        _write(self.conf("") / "bareos-dir.d" / rel, text)

    def write_shipped(self, shipped: ShippedConfig) -> None:
        """The shipped resources; the fd's Client gets the test bed's port and paths."""
        for daemon in ("bareos-dir", "bareos-fd"):
            for rel, text in shipped.files(daemon).items():
                _write(self.conf("") / f"{daemon}.d" / rel, self.as_loaded(daemon, rel, text))

    def as_loaded(self, daemon: str, rel: str, text: str) -> str:
        """A resource of the package (paths mapped) as the bed loads it: the fd's
        Client gets the bed's port and paths, and nothing starts unless a test starts it."""
        if daemon == "bareos-fd" and rel == "client/myself.conf":
            text = self._with_testbed_client(text)
        if rel.startswith("schedule/"):
            text = re.sub(r"(?m)^\s*Run\s*=.*\n", "", text)
        return text

    def _with_testbed_client(self, text: str) -> str:
        work = self.workdir / "fd"
        added = (f'  FD Port = {self.ports["fd"]}\n  FD Address = 127.0.0.1\n'
                 f'  Working Directory = "{work}"\n')
        return re.sub(r"(Client \{\n)", r"\1" + added.replace("\\", "\\\\"), text, count=1)

    def _director(self) -> dict[str, str]:
        work, p, pw = self.workdir / "dir", self.ports, self.passwords
        query = next(self.prefix.glob("lib*/bareos/scripts/query.sql"), None)
        c = self.catalog
        pools = "".join(
            f'Pool {{\n  Name = {name}\n  Pool Type = Backup\n  Recycle = yes\n  AutoPrune = yes\n'
            f'  Label Format = "{name}-"\n  Maximum Volume Bytes = 2G\n  Maximum Volumes = 100\n}}\n'
            for name in ("Full", "Differential", "Incremental", "Scratch"))
        return {
            "director/bareos-dir.conf":
                f'Director {{\n  Name = bareos-dir\n  DIRport = {p["dir"]}\n  DirAddress = 127.0.0.1\n'
                + (f'  QueryFile = "{query}"\n' if query else "")
                + f'  Working Directory = "{work}"\n'
                f'  Maximum Concurrent Jobs = 10\n  Password = "{pw["dir"]}"\n  Messages = Daemon\n}}\n',
            "catalog/MyCatalog.conf":
                f'Catalog {{\n  Name = MyCatalog\n  DB Name = {CATALOG_DB}\n  DB User = postgres\n'
                f'  DB Password = ""\n  DB Address = 127.0.0.1\n  DB Port = {c.port}\n}}\n',
            "client/bareos-fd.conf":
                f'Client {{\n  Name = bareos-fd\n  Address = 127.0.0.1\n  FD Port = {p["fd"]}\n'
                f'  Password = "{pw["fd"]}"\n  Catalog = MyCatalog\n}}\n',
            "storage/File.conf":
                f'Storage {{\n  Name = File\n  Address = 127.0.0.1\n  SD Port = {p["sd"]}\n'
                f'  Password = "{pw["sd"]}"\n  Device = FileStorage\n  Media Type = File\n'
                '  Maximum Concurrent Jobs = 10\n}\n',
            "pool/pools.conf": pools,
            "messages/messages.conf":
                'Messages {\n  Name = Standard\n  Director = bareos-dir = all, !skipped, !restored\n'
                '  Catalog = all, !skipped, !saved, !audit\n}\n'
                'Messages {\n  Name = Daemon\n  Console = all, !skipped, !saved, !audit\n}\n',
            # no Run lines: nothing starts unless a test starts it
            "schedule/WeeklyCycle.conf": 'Schedule {\n  Name = "WeeklyCycle"\n}\n',
        }

    def _storage(self) -> dict[str, str]:
        work = self.workdir / "sd"
        return {
            "storage/bareos-sd.conf":
                f'Storage {{\n  Name = bareos-sd\n  SD Port = {self.ports["sd"]}\n  SD Address = 127.0.0.1\n'
                f'  Working Directory = "{work}"\n}}\n',
            "director/bareos-dir.conf":
                f'Director {{\n  Name = bareos-dir\n  Password = "{self.passwords["sd"]}"\n}}\n',
            "device/FileStorage.conf":
                f'Device {{\n  Name = FileStorage\n  Media Type = File\n  Archive Device = {self.volume_dir}\n'
                '  Label Media = yes\n  Random Access = yes\n  Automatic Mount = yes\n'
                '  Removable Media = no\n  Always Open = no\n}\n',
            "messages/Standard.conf": 'Messages {\n  Name = Standard\n  Director = bareos-dir = all\n}\n',
        }

    def _client(self) -> dict[str, str]:
        return {
            "director/bareos-dir.conf":
                f'Director {{\n  Name = bareos-dir\n  Password = "{self.passwords["fd"]}"\n}}\n',
            "messages/Standard.conf":
                'Messages {\n  Name = Standard\n  Director = bareos-dir = all, !skipped, !restored\n}\n',
        }

    # --- lifecycle ------------------------------------------------------------------
    def create_catalog(self) -> None:
        ddl = next(self.prefix.glob("lib*/bareos/scripts/ddl"), None) or Path("/usr/lib/bareos/scripts/ddl")
        self.catalog.sql(f"CREATE DATABASE {CATALOG_DB} ENCODING 'SQL_ASCII' LC_COLLATE 'C' "
                         "LC_CTYPE 'C' TEMPLATE template0")
        self.catalog.sql((ddl / "creates" / "postgresql.sql").read_text(), database=CATALOG_DB)

    def config_test(self, daemon: str) -> str:
        """`<daemon> -t`: Bareos' own parser; returns its output (warnings included)."""
        result = subprocess.run([self.sbin(daemon), "-t", "-c", str(self.conf(""))],
                                capture_output=True, text=True, env={"PATH": BARE_PATH}, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{daemon} -t failed: {result.stdout}{result.stderr}")
        return result.stdout + result.stderr

    def start(self, shipped: ShippedConfig) -> None:
        for sub in ("dir", "sd", "fd", "volumes"):
            (self.workdir / sub).mkdir(mode=0o700, exist_ok=True)
        self.catalog = local_postgres()
        self.create_catalog()
        self.write_configs(shipped)
        for daemon in DAEMONS:
            self.config_test(daemon)
        for daemon in DAEMONS:
            self._spawn(daemon)
        self._wait_until_answering()

    def _spawn(self, daemon: str) -> None:
        short = daemon.split("-")[1]
        env = self.fd_env if daemon == "bareos-fd" else {"PATH": f"{self.prefix}/sbin:{BARE_PATH}"}
        with open(self.workdir / f"{short}.out", "ab") as out:
            own = self.director_root if daemon == "bareos-dir" else None
            self.procs[daemon] = subprocess.Popen(
                on_host([self.sbin(daemon), "-f", "-c", str(self.conf(""))], own, self.root),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=str(self.workdir / short), start_new_session=True)

    def restart_fd(self) -> None:
        """systemctl restart bareos-fd on the Nextcloud host."""
        self.config_test("bareos-fd")
        _end(self.procs.pop("bareos-fd", None))
        self._spawn("bareos-fd")
        self._wait_until_answering()

    def _wait_until_answering(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for daemon, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{daemon} exited {proc.returncode}: {self.daemon_output()}")
            if all(_listening(port) for port in self.ports.values()):
                out = self.console("status client=bareos-fd", timeout=20, check=False)
                if "Daemon started" in out or "Running Jobs" in out:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"Bareos did not answer within {timeout} s: {self.daemon_output()}")

    def daemon_output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.workdir.glob("*.out")))

    def reload(self, shipped: ShippedConfig) -> None:
        """Load the shipped resources mapped for another installation."""
        self.write_shipped(shipped)
        self.config_test("bareos-dir")
        out = self.console("reload")
        if "rror" in out:
            raise RuntimeError(f"reload failed: {out}")

    def add_client(self, client: FileDaemon, shipped: ShippedConfig) -> FileDaemon:
        """Start another host's file daemon and tell the director about it."""
        self.write_client(client, client.resources(shipped))
        self.start_client(client)
        self.add_resource(f"client/{client.name}.conf", client.client_resource())
        self.config_test("bareos-dir")
        self.console("reload")
        self.wait_client(client)
        return client

    def write_client(self, client: FileDaemon, resources: dict[str, str]) -> None:
        """The host's bareos-fd.d: relative path -> content."""
        for rel, text in resources.items():
            _write(client.conf() / "bareos-fd.d" / rel, text)
        (client.workdir / "work").mkdir(mode=0o700, parents=True, exist_ok=True)

    def client_config_test(self, client: FileDaemon) -> None:
        result = subprocess.run([self.sbin("bareos-fd"), "-t", "-c", str(client.conf())], capture_output=True,
                                text=True, env={"PATH": BARE_PATH}, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"bareos-fd -t for {client.name}: {result.stdout}{result.stderr}")

    def start_client(self, client: FileDaemon) -> None:
        """(Re)start the host's file daemon, as systemctl restart bareos-fd does."""
        self.client_config_test(client)
        _end(client.proc)
        with open(client.workdir / "fd.out", "wb") as out:
            client.proc = subprocess.Popen(on_host([self.sbin("bareos-fd"), "-f", "-c", str(client.conf())],
                                                   client.root, self.root),
                                           stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                           env=client.env, cwd=str(client.workdir / "work"),
                                           start_new_session=True)
        if client not in self.clients:
            self.clients.append(client)

    def wait_client(self, client: FileDaemon, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "Daemon started" not in self.console(f"status client={client.name}", timeout=20, check=False):
            if client.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{client.name} did not answer: {(client.workdir / 'fd.out').read_text()}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Each daemon by its pid, then whatever it left in its process group."""
        for client in self.clients:
            _end(client.proc)
        self.clients.clear()
        for daemon in reversed(DAEMONS):
            _end(self.procs.pop(daemon, None))
        if self.catalog is not None:
            from .servers import destroy
            destroy(self.catalog)
            self.catalog = None

    # --- bconsole -------------------------------------------------------------------
    def console(self, commands: str, timeout: float = 120, check: bool = True) -> str:
        result = subprocess.run([self.sbin("bconsole"), "-c", str(self.conf("") / "bconsole.conf")],
                                input=commands + "\nquit\n", capture_output=True, text=True,
                                timeout=timeout, env={"PATH": BARE_PATH})
        if check and result.returncode != 0:
            raise RuntimeError(f"bconsole failed: {result.stdout}{result.stderr}")
        return result.stdout + result.stderr

    def start_job(self, command: str) -> int:
        out = self.console(f"{command} yes")
        match = re.search(r"JobId[= ](\d+)", out)
        if not match:
            raise RuntimeError(f"no job started by {command!r}: {out}")
        return int(match.group(1))

    def wait(self, job_id: int, timeout: float = 300) -> JobResult:
        try:
            self.console(f"wait jobid={job_id}", timeout=timeout)
        except subprocess.TimeoutExpired:
            self.console(f"cancel jobid={job_id} yes", check=False)
            raise RuntimeError(f"job {job_id} did not end within {timeout} s: {self.job(job_id)}") from None
        return self.job(job_id)

    def run_job(self, command: str, timeout: float = 300) -> JobResult:
        return self.wait(self.start_job(command), timeout)

    def backup(self, job: str, level: str = "Full") -> JobResult:
        return self.run_job(f"run job={job} level={level}")

    def restore(self, backup_id: int | str, restore_job: str, where: str = "/",
                replace: str = "always", file: str | None = None, restoreclient: str | None = None) -> JobResult:
        """Restore everything of a backup job (or comma-separated jobids), or one file of it;
        restoreclient: onto another host's file daemon."""
        selection = f'file="{file}" done' if file else "all done"
        elsewhere = f"restoreclient={restoreclient} " if restoreclient else ""
        return self.run_job(f"restore jobid={backup_id} client=bareos-fd {elsewhere}restorejob={restore_job} "
                            f'where="{where}" replace={replace} {selection}')

    def cancel(self, job_id: int) -> str:
        return self.console(f"cancel jobid={job_id} yes")

    def wait_client_idle(self, timeout: float = 120) -> None:
        """Until the file daemon has finished every job: after a cancel it still
        winds down (bpipe waits for its reader, then runs ClientAfterJob)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.console("status client=bareos-fd", timeout=30, check=False)
            running = out.split("Running Jobs:", 1)[-1].split("Terminated Jobs:", 1)[0]
            if "No Jobs running" in running:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the file daemon still runs a job after {timeout} s")

    def joblog(self, job_id: int) -> str:
        """`list joblog jobid=N`: what a Bareos admin reads."""
        return self.console(f"list joblog jobid={job_id}")

    def status(self, job_id: int) -> str:
        rows = self.query(f"SELECT JobStatus FROM Job WHERE JobId = {int(job_id)}")
        return rows[0][0] if rows else ""

    # --- catalog --------------------------------------------------------------------
    def query(self, sql: str) -> list[list[str]]:
        out = self.catalog.sql(sql, database=CATALOG_DB)
        return [line.split("|") for line in out.splitlines() if line]

    def job(self, job_id: int) -> JobResult:
        status, errors, files, level = self.query(
            f"SELECT JobStatus, JobErrors, JobFiles, Level FROM Job WHERE JobId = {int(job_id)}")[0]
        return JobResult(int(job_id), status, int(errors), self.joblog(job_id), int(files), level)

    def files(self, job_id: int) -> list[str]:
        """Every path the catalog holds for a backup job."""
        rows = self.query("SELECT Path.Path || File.Name FROM File JOIN Path USING (PathId) "
                          f"WHERE File.JobId = {int(job_id)} AND File.Name <> ''")
        return sorted(row[0] for row in rows)

    def volumes(self, job_id: int) -> list[tuple[Path, int, int]]:
        """(volume file, first byte, last byte) of each part of a job's data.
        On a File device a JobMedia address is (file << 32) | block."""
        rows = self.query("SELECT Media.VolumeName, JobMedia.StartFile, JobMedia.StartBlock, "
                          "JobMedia.EndFile, JobMedia.EndBlock FROM JobMedia JOIN Media USING (MediaId) "
                          f"WHERE JobMedia.JobId = {int(job_id)} ORDER BY JobMediaId")
        return [(self.volume_dir / name, (int(sf) << 32) | int(sb), (int(ef) << 32) | int(eb))
                for name, sf, sb, ef, eb in rows]


def _end(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
