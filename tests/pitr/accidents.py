"""What the PITR swap tests share, for both engines: a server archiving into
a spool with a base backup, two notes, the target, then a note after it and
a dropped table (the accident); a service manager that logs its calls and
can fail or hold them; the restore command around them; and the way to
kill -9 a restore exactly between the swap's two renames (strace)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from testkit import installs, servers
from testkit.mariadb_service import SERVICE_MANAGER, PrivateService
from testkit.pitr import base_backup, switch_wal, wait_archived
from testkit.prerequisites import require_tools
from ..helpers import BIN, bareos_env, dbpipe

HERE = Path(__file__).resolve().parent
PG_SERVICE = HERE / "pg-service"


class Workload:
    """Calls insert() every ~20 ms in a thread, one transaction each: the
    timestamped rows a restore to a time must cut exactly."""

    def __init__(self, insert: Callable[[], object]):
        self.insert, self.stop_event = insert, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_event.is_set():
            self.insert()
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(30)


def pg_rows(server) -> Callable[[], object]:
    return lambda: server.sql("INSERT INTO rows (note) VALUES ('w')", database="app")


def mariadb_rows(service) -> Callable[[], object]:
    return lambda: service.sql("INSERT INTO app.rows (note) VALUES ('w')")


def service_dir(server, config_dir: Path | None = None) -> str:
    """pg-service's SERVICE_DIR for a private PostgreSQL."""
    options = (f"-k {server.workdir} -p {server.port} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off")
    conf = {"pg_ctl": servers._pg_bin("pg_ctl"), "datadir": str(Path(server.workdir) / "data"),
            "options": options, "log": str(Path(server.workdir) / "server.log")}
    if config_dir:
        conf["config_dir"] = str(config_dir)
    (Path(server.workdir) / "service.json").write_text(json.dumps(conf))
    return server.workdir


# --- MariaDB: binary logs, the physical chain -----------------------------------------------

def binlogging_service(label: str = "pitr") -> PrivateService:
    service = PrivateService(label)
    binlog = Path(service.root) / "binlog"
    binlog.mkdir()
    cnf = Path(service.cnf)
    cnf.write_text(cnf.read_text().replace(
        "skip-log-bin\n", f"log-bin={binlog}/mysql-bin\nserver-id=1\nbinlog-format=ROW\n"))
    return service.install().start()


def collect(service, spool) -> subprocess.CompletedProcess:
    result = dbpipe("dbpipe-binlog-collect", "--socket", service.socket, "--user", "root", "--spool", spool)
    assert result.returncode == 0, result.stderr
    return result


def full_backup(service, pieces: Path, state: Path) -> None:
    reader = subprocess.Popen([str(BIN / "dbpipe-mariabackup"), "--type", "mysql", "--socket", service.socket,
                               "--user", "root", "--level", "full", "--state-dir", str(state)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=bareos_env(), cwd="/")
    stored = subprocess.run([str(BIN / "dbpipe-mariabackup-restore"), "--from-stdin", "--into", str(pieces)],
                            stdin=reader.stdout, capture_output=True, env=bareos_env(), cwd="/")
    reader.stdout.close()
    assert reader.wait(300) == 0, reader.stderr.read().decode()
    assert stored.returncode == 0, stored.stderr.decode()


# --- the service manager ----------------------------------------------------------------------

def logging_manager(directory: Path, real: str | Path, occ_log: Path, events: Path) -> Path:
    """real (pg-service, private-service), noting at each call how many occ
    calls had been made by then.  DIRECTORY/fail-start-once fails the next
    start (a recovered server that does not come up); DIRECTORY/hang-stop
    holds stop until DIRECTORY/release appears, then fails it without
    stopping anything; DIRECTORY/hold-stop holds it until then and stops."""
    manager = directory / "service-logged"
    manager.write_text(f"""#!/usr/bin/env python3
import os, subprocess, sys, time
here = {str(directory)!r}
calls = {str(occ_log)!r}
count = sum(1 for _ in open(calls)) if os.path.exists(calls) else 0
with open({str(events)!r}, "a") as log:
    log.write(sys.argv[1] + " " + str(count) + "\\n")
if sys.argv[1] == "start" and os.path.exists(here + "/fail-start-once"):
    os.unlink(here + "/fail-start-once")
    sys.exit(1)
held = [name for name in ("hang-stop", "hold-stop") if os.path.exists(here + "/" + name)]
if sys.argv[1] == "stop" and held:
    deadline = time.monotonic() + 120
    while not os.path.exists(here + "/release") and time.monotonic() < deadline:
        time.sleep(0.1)
    if held[0] == "hang-stop":
        sys.exit(1)
sys.exit(subprocess.run([{str(real)!r}, *sys.argv[1:]]).returncode)
""")
    manager.chmod(0o755)
    return manager


# --- the accident -----------------------------------------------------------------------------

class Accident:
    """A server whose archive holds: a base backup, two notes ('one', 'two'),
    the target (a time between), a note 'after the target' and oc_filecache
    dropped.  Subclasses set up the engine; the rest is shared."""

    engine: str
    database = "nc"
    drop = "DROP TABLE oc_filecache"

    def __init__(self, here: Path):
        self.here, self.events = here, here / "service-events"
        self.nextcloud_root = here / "nextcloud"
        self.manager = logging_manager(here, self.real_manager, self.nextcloud_root / "occ-calls.log",
                                       self.events)
        self.install = None

    def _accident(self) -> None:
        self.sql("INSERT INTO oc_notes (note) VALUES ('one'), ('two')")
        time.sleep(1.2)
        self.target = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=0.5)
        time.sleep(0.7)
        self.sql("INSERT INTO oc_notes (note) VALUES ('after the target')")
        self.sql(self.drop)
        self._archive()

    # what each engine provides
    real_manager: Path | str
    data: Path
    service: str
    wal: Path
    bases: Path

    def sql(self, statement: str) -> str:
        raise NotImplementedError

    def _archive(self) -> None:
        raise NotImplementedError

    def live_is_after_the_accident(self) -> bool:
        raise NotImplementedError

    def recovery_finished(self) -> bool:
        raise NotImplementedError

    # shared
    def notes(self) -> list[str]:
        return self.sql("SELECT note FROM oc_notes ORDER BY id").splitlines()

    def flag(self, name: str) -> None:
        (self.here / name).write_text("")

    def argv(self, *extra) -> list[str]:
        return [str(BIN / "dbpipe-pitr-restore"), "--engine", self.engine, "--datadir", str(self.data),
                "--wal", str(self.wal), "--bases", str(self.bases), "--service", self.service,
                "--service-manager", str(self.manager), *map(str, extra)]

    def to_target(self) -> list[str]:
        return ["--to", self.target.isoformat()]

    def start(self, *extra) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*self.to_target(), *extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=bareos_env(), cwd="/")

    def restore(self, *extra, target: bool = True) -> subprocess.CompletedProcess:
        argv = self.argv(*(self.to_target() if target else []), *extra)
        return subprocess.run(argv, capture_output=True, env=bareos_env(), cwd="/", timeout=900)

    def beside(self, tag: str) -> list[Path]:
        return sorted(self.data.parent.glob(f"{self.data.name}.dbpipe-{tag}-*"))

    def with_nextcloud(self, values: dict) -> "Accident":
        """A Nextcloud (the occ double) on this server, its fingerprint set."""
        self.install = installs.build(self.nextcloud_root, values)
        assert self.install.occ("maintenance:data-fingerprint").returncode == 0
        self.fingerprint = self.install.config()["data-fingerprint"]
        assert self.fingerprint
        (self.install.root / "occ-calls.log").unlink(missing_ok=True)
        self.state = self.here / "state"
        return self

    def nextcloud_args(self) -> list[str]:
        return ["--nextcloud", str(self.install.root), "--nextcloud-state-dir", str(self.state), "--settle", "0"]


class PgAccident(Accident):
    engine, real_manager = "pgsql", PG_SERVICE
    drop = "DROP TABLE oc_filecache CASCADE"

    def __init__(self, archiving_pg, here: Path):
        super().__init__(here)
        self.server, self.wal = archiving_pg
        self.db, self.values = installs.pgsql_database(self.server)
        self.database = self.db.name
        self.data, self.service = Path(self.server.workdir) / "data", service_dir(self.server)
        self.sql("CREATE TABLE oc_notes (id serial PRIMARY KEY, note text)")
        self.bases = here / "bases"
        base_backup(self.server, self.bases)
        self._accident()

    def sql(self, statement: str) -> str:
        return self.server.sql(statement, database=self.database)

    def _archive(self) -> None:
        wait_archived(self.server, switch_wal(self.server))

    def live_is_after_the_accident(self) -> bool:
        return self.sql("SELECT to_regclass('oc_filecache') IS NULL") == "t"

    def recovery_finished(self) -> bool:
        logs = [p.read_text() for p in self.data.parent.glob(f"{self.data.name}.dbpipe-pitr-*.run/recovery.log")]
        return len(logs) == 1 and "recovery stopping before" in logs[0]


class MariaAccident(Accident):
    engine, real_manager = "mysql", SERVICE_MANAGER

    def __init__(self, here: Path):
        super().__init__(here)
        self.mariadb = binlogging_service("pitr-swap")
        try:
            self._set_up(here)
        except BaseException:
            self.mariadb.destroy()
            raise

    def _set_up(self, here: Path) -> None:
        self.data, self.service = Path(self.mariadb.datadir), self.mariadb.root
        self.wal, self.bases = here / "spool", here / "pieces"
        self.values = {"dbtype": "mysql", "dbname": self.database, "dbuser": "root", "dbpassword": "",
                       "dbhost": f"localhost:{self.mariadb.socket}", "dbport": "", "mysql.utf8mb4": True}
        self.mariadb.sql(f"CREATE DATABASE {self.database}")
        self.sql("CREATE TABLE oc_notes (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40)) ENGINE=InnoDB;"
                 "CREATE TABLE oc_filecache (fileid BIGINT PRIMARY KEY) ENGINE=InnoDB;"
                 "INSERT INTO oc_filecache VALUES (1)")
        full_backup(self.mariadb, self.bases, here / "chain-state")
        self._accident()

    def sql(self, statement: str) -> str:
        return self.mariadb.sql(statement, database=self.database)

    def _archive(self) -> None:
        collect(self.mariadb, self.wal)

    def live_is_after_the_accident(self) -> bool:
        return self.mariadb.sql("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                                f"'{self.database}' AND TABLE_NAME = 'oc_filecache'") == "0"

    def recovery_finished(self) -> bool:
        """Replayed and its trial server shut down (its run directory goes then)."""
        built = self.beside("pitr")
        return len(built) == 1 and built[0].is_dir()

    def destroy(self) -> None:
        self.mariadb.destroy()


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the restore ended before {what}: {proc.stderr.read().decode()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


def kill_between_the_renames(accident: Accident, *extra) -> Path:
    """Start the restore, hold its service stop, attach strace to it and let
    it go on: strace kills it (SIGKILL) on entering the one rename that names
    the recovered directory - the second of the swap, the live directory
    already renamed aside.  The recovered directory."""
    require_tools(["strace"], os.environ.get("PATH", "/usr/bin:/bin"), "a kill -9 at one system call")
    accident.flag("hold-stop")
    proc = accident.start(*extra)
    try:
        wait_for(lambda: accident.events.exists() and "stop" in accident.events.read_text(), proc,
                 "the service stop")
        [new] = [p for p in accident.beside("pitr") if not p.name.endswith((".run", ".wal", ".failed"))]
        tracer = subprocess.Popen(["strace", "-qq", "-o", "/dev/null", "-p", str(proc.pid), "-P", str(new),
                                   "-e", "trace=rename,renameat,renameat2",
                                   "-e", "inject=rename,renameat,renameat2:signal=KILL"])
        wait_for(lambda: _traced(proc.pid), proc, "strace attached", 30)
    finally:
        accident.flag("release")
    proc.wait(300)
    tracer.wait(30)
    (accident.here / "hold-stop").unlink()
    (accident.here / "release").unlink()
    assert proc.returncode == -9, proc.stderr.read().decode()
    return new


def _traced(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        return any(line.startswith("TracerPid:") and line.split()[1] != "0" for line in status)
