"""Fixtures for the end-to-end tests: one private set of Bacula daemons for the
session, and sample Nextcloud installations whose Bareos jobs (from
bareos-config/, translated by translate.py) run in it."""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..conftest import SPECS
from ..helpers import BIN, SyslogCollector, bareos_env
from ..nextcloud import installs
from . import bacula as bacula_mod
from .translate import Translation, stock_restore_job


@dataclass
class Environment:
    """The session's daemons and the directories their file daemon sees."""

    bacula: bacula_mod.Bacula
    base: Path                 # reachable by www-data (0755)
    tmpdir: Path               # TMPDIR of everything the file daemon runs
    profiles: Path             # DBPIPE_CONFIG_DIR: the /etc/dbpipe of the tests
    syslog: SyslogCollector
    added: set = field(default_factory=set)

    def add(self, resources: list[str]) -> None:
        """Add Bacula resources (each once) and reload the director."""
        new = False
        for resource in resources:
            if resource not in self.added:
                self.bacula.add_resource(resource)
                self.added.add(resource)
                new = True
        if new:
            self.bacula.reload()


@pytest.fixture(scope="session")
def e2e():
    reason = bacula_mod.missing()
    if reason:
        pytest.skip(f"end-to-end tests need Bacula 9.6 (Bareos' bpipe stand-in): {reason}; "
                    "run 'make test' as root to install it")
    base = Path(tempfile.mkdtemp(prefix="dbpipe-e2e-"))
    os.chmod(base, 0o755)
    dirs = {name: base / name for name in ("tmp", "profiles", "syslog")}
    for path in dirs.values():
        path.mkdir(mode=0o700)
    syslog = SyslogCollector(str(dirs["syslog"] / "log"))
    env = bareos_env(DBPIPE_SYSLOG_SOCKET=syslog.path, TMPDIR=str(dirs["tmp"]),
                     DBPIPE_CONFIG_DIR=str(dirs["profiles"]))
    daemons = None
    try:
        daemons = bacula_mod.start_bacula(env)
        yield Environment(daemons, base, dirs["tmp"], dirs["profiles"], syslog)
    finally:
        if daemons is not None:
            daemons.stop()
            shutil.rmtree(daemons.workdir, ignore_errors=True)
        syslog.close()
        shutil.rmtree(base, ignore_errors=True)


# --- a sample Nextcloud with its jobs ----------------------------------------------------

EXCLUDED = ("data/appdata_{id}/preview/64-64.png", "data/updater-{id}/backups/nextcloud-28.zip",
            "data/nextcloud.log", "data/nextcloud.log.1", "data/audit.log")
EXTRA_FILES = ("data/appdata_{id}/avatar/alice/avatar.png", "data/alice/files/notes.log",
               "data/alice/files/Photos/a b.jpg", "themes/example/core/css/server.css",
               "custom_apps/example/appinfo/info.xml")


@dataclass
class Site:
    """One sample installation, its database, and its jobs in the private Bacula."""

    env: Environment
    install: installs.Installation
    translation: Translation
    state_dir: Path
    dump_dir: Path
    label: str

    @property
    def bacula(self) -> bacula_mod.Bacula:
        return self.env.bacula

    @property
    def db(self):
        return self.install.database

    def jobs(self, *names: str) -> None:
        resources = []
        for name in names:
            resources += self.translation.job_with_fileset(name)
        self.env.add(resources)

    def stock_restore(self, fileset: str, where: Path) -> str:
        """Bareos' stock RestoreFiles job for this site's FileSet; returns its name."""
        name = f"RestoreFiles-{self.label}"
        self.env.add([stock_restore_job(name, self.translation.name(fileset), str(where))])
        return name

    def backup(self, job: str) -> bacula_mod.JobResult:
        return self.bacula.backup(self.translation.name(job))

    def restore(self, backup_id: int, job: str, where: str = "/", file: str | None = None,
                translated: bool = True) -> bacula_mod.JobResult:
        name = self.translation.name(job) if translated else job
        return self.bacula.restore(backup_id, name, where=where, file=file)

    # --- what a restore must bring back ---------------------------------------------------
    def path(self, pattern: str) -> Path:
        return self.install.root / pattern.format(id=self.instance_id)

    @functools.cached_property
    def instance_id(self) -> str:
        return self.install.config()["instanceid"]

    def snapshot(self) -> dict[str, tuple]:
        """Content, mode and owner of every backed-up file (not the live sqlite
        database: its content is compared through the database)."""
        result = {}
        for top in ("config", "data", "themes", "custom_apps"):
            for path in sorted((self.install.root / top).rglob("*")):
                rel = path.relative_to(self.install.root).as_posix()
                if path.is_file() and ".db" not in path.name and rel not in self.excluded():
                    info = path.stat()
                    # config.php changes with maintenance mode: compared by stable_config()
                    digest = "" if rel.startswith("config/") else hashlib.sha256(path.read_bytes()).hexdigest()
                    result[rel] = (digest, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        return result

    def excluded(self) -> set[str]:
        return {p.format(id=self.instance_id) for p in EXCLUDED}


def add_sample_files(install: installs.Installation) -> None:
    """What the FileSet must include and what its optional excludes leave out."""
    instance = install.config()["instanceid"]
    for pattern in EXCLUDED + EXTRA_FILES:
        path = install.root / pattern.format(id=instance)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(hashlib.sha256(pattern.encode()).digest() * 64)
    installs.give_to_web_user(install.root)


def session_server(server_pool, kind: str):
    """The session's first server of this kind (local, or a container)."""
    return server_pool.get(kind, SPECS[kind][0])


def database_for(engine: str, root: Path, server):
    if engine == "sqlite":
        return installs.sqlite_database(root)
    return installs.mysql_database(server) if engine == "mysql" else installs.pgsql_database(server)


SITES = itertools.count(1)


@pytest.fixture
def make_site(e2e, server_pool):
    """make_site(engine, server=None) -> a Site on the session's server of that
    engine, its database dropped afterwards; or on the given server, which
    the caller destroys."""
    created, on_session_servers = [], []

    def make(engine: str, server=None) -> Site:
        label = f"{engine}-{next(SITES)}"      # Bacula resource names stay unique all session
        root = e2e.base / f"nextcloud-{label}"
        if server is None and engine != "sqlite":
            server = session_server(server_pool, engine)
            on_session_servers.append(root)
        db, values = database_for(engine, root, server)
        install = installs.build(root, values)
        install.database = db
        add_sample_files(install)
        state, dumps = e2e.base / f"state-{label}", e2e.base / f"dumps-{label}"
        translation = Translation(
            {"/usr/local/bin/": f"{BIN}/", "/var/www/nextcloud": str(root),
             "/var/backups/dbpipe": str(dumps)},
            suffix=f"-{label}", hook_options=["--state-dir", str(state), "--settle", "0"])
        site = Site(e2e, install, translation, state, dumps, label)
        created.append(site)
        return site

    yield make
    for site in created:
        if site.install.root in on_session_servers:
            site.db.server.drop_database(site.db.name)
        shutil.rmtree(site.install.root, ignore_errors=True)
