"""Fixtures for the real-Bareos tests (`make test-bareos`): one set of Bareos
daemons for the session, dbpipe installed from the Debian package (`make deb`,
once per session) on each host of the bed - the Nextcloud host and the
director, each unpacked into a root of its own (testkit/testbed.py) - and
sample Nextcloud installations whose shipped jobs run in it.

A missing prerequisite fails the session with what to install; nothing here
is skipped silently.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import SPECS
from ..helpers import BARE_PATH, SyslogCollector, bareos_env
from testkit import installs, package
from testkit.prerequisites import missing_tools, packages_for
from testkit import testbed
from testkit.testbed import Bareos, ShippedConfig

PSEUDO_FILE = "/NEXTCLOUD/database.sql"


def prerequisites() -> str | None:
    if os.getuid() != 0:
        return "the real-Bareos tests run the file daemon as root, as bareos-fd runs: run them as root"
    absent = missing_tools(("php", "mariadbd", "mariabackup", "psql", "initdb"),
                           BARE_PATH + ":/usr/lib/postgresql/15/bin")
    if absent:
        return (f"{', '.join(absent)} missing: install {' '.join(packages_for(absent))} "
                f"(tools/system-deps test, run by make test-bareos as root)")
    return None


@dataclass
class Environment:
    """The session's daemons, the package and the hosts' roots, the fd's directories."""

    bareos: Bareos
    deb: Path                  # the package `make deb` built
    base: Path                 # reachable by www-data (0755)
    root: Path                 # the Nextcloud host's root: the package unpacked (its /usr/bin, /usr/share/dbpipe)
    director_root: Path        # the director's root (dbpipe for the drill)
    tmpdir: Path               # TMPDIR of everything the file daemon runs
    state: Path                # DBPIPE_STATE_DIR of the file daemon: its /var/lib/dbpipe
    profiles: Path             # DBPIPE_CONFIG_DIR: its /etc/dbpipe
    shims: Path                # first on the fd's PATH: service managers of the tests
    syslog: SyslogCollector

    @property
    def bindir(self) -> Path:
        """The Nextcloud host's /usr/bin: the package's commands."""
        return self.root / "usr" / "bin"

    def shipped(self, nextcloud: Path, dumps: Path | None = None) -> ShippedConfig:
        return self.bareos.shipped(self.state, nextcloud, dumps or self.base / "dumps")

    def use(self, shipped: ShippedConfig) -> None:
        self.bareos.reload(shipped)


@pytest.fixture(scope="session")
def bed(deb):
    reason = prerequisites()
    if reason:
        pytest.fail(f"real-Bareos tests: {reason}", pytrace=False)
    try:
        prefix = testbed.find_prefix()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="dbpipe-bareos-e2e-"))
    os.chmod(base, 0o755)
    dirs = {name: base / name for name in ("tmp", "state", "profiles", "syslog", "shims", "dumps")}
    for path in dirs.values():
        path.mkdir(mode=0o700)
    os.chmod(dirs["shims"], 0o755)
    syslog = SyslogCollector(str(dirs["syslog"] / "log"))
    hosts = {name: package.unpack(deb, base / "hosts" / name) for name in ("nextcloud", "director")}
    env = bareos_env(DBPIPE_SYSLOG_SOCKET=syslog.path, TMPDIR=str(dirs["tmp"]),
                     DBPIPE_CONFIG_DIR=str(dirs["profiles"]), DBPIPE_STATE_DIR=str(dirs["state"]),
                     PATH=f"{dirs['shims']}:{BARE_PATH}")
    bareos = Bareos(Path(prefix), Path(tempfile.mkdtemp(prefix="dbpipe-bareos-")), env,
                    root=hosts["nextcloud"], director_root=hosts["director"])
    environment = Environment(bareos, deb, base, hosts["nextcloud"], hosts["director"], dirs["tmp"],
                              dirs["state"], dirs["profiles"], dirs["shims"], syslog)
    try:
        bareos.start(environment.shipped(base / "no-nextcloud-yet"))
        yield environment
    finally:
        bareos.stop()
        shutil.rmtree(bareos.workdir, ignore_errors=True)
        syslog.close()
        shutil.rmtree(base, ignore_errors=True)


# --- a sample Nextcloud ------------------------------------------------------------------

EXCLUDED = ("data/appdata_{id}/preview/64-64.png", "data/updater-{id}/backups/nextcloud-28.zip",
            "data/nextcloud.log", "data/nextcloud.log.1", "data/audit.log")
EXTRA_FILES = ("data/appdata_{id}/avatar/alice/avatar.png", "data/alice/files/notes.log",
               "data/alice/files/Photos/a b.jpg", "themes/example/core/css/server.css",
               "custom_apps/example/appinfo/info.xml")
SITES = itertools.count(1)


@dataclass
class Site:
    """One sample installation, its database, and the shipped jobs mapped to it."""

    env: Environment
    install: installs.Installation
    data: Path                 # config.php's datadirectory
    dump_dir: Path
    label: str

    @property
    def bareos(self) -> Bareos:
        return self.env.bareos

    @property
    def db(self):
        return self.install.database

    def activate(self) -> None:
        """Load the shipped resources for this installation."""
        self.env.use(self.env.shipped(self.install.root, self.dump_dir))

    def backup(self, job: str = "backup-nextcloud", level: str = "Full"):
        return self.bareos.backup(job, level)

    def restore(self, backup_id, job: str = "restore-nextcloud", where: str = "/", file: str | None = None):
        return self.bareos.restore(backup_id, job, where=where, file=file)

    def path(self, pattern: str) -> Path:
        """A path of the installation; data/ means the real data directory."""
        pattern = pattern.format(id=self.instance_id)
        if pattern == "data" or pattern.startswith("data/"):
            return self.data / pattern[5:]
        return self.install.root / pattern

    @functools.cached_property
    def instance_id(self) -> str:
        return self.install.config()["instanceid"]

    def tops(self) -> list[Path]:
        return [self.install.root / "config", self.data, self.install.root / "themes",
                self.install.root / "custom_apps"]

    def snapshot(self) -> dict[str, tuple]:
        """Content, mode and owner of every backed-up file (config.php and the
        sqlite database are compared otherwise: they change legitimately)."""
        result, excluded = {}, self.excluded()
        for top in self.tops():
            for path in sorted(top.rglob("*")) if top.exists() else ():
                if path.is_file() and ".db" not in path.name and str(path) not in excluded:
                    info = path.stat()
                    digest = "" if path.parent.name == "config" else hashlib.sha256(path.read_bytes()).hexdigest()
                    result[str(path)] = (digest, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        return result

    def excluded(self) -> set[str]:
        return {str(self.path(p)) for p in EXCLUDED}


def add_sample_files(site_root: Path, data: Path, instance: str, custom_apps: bool = True) -> None:
    for pattern in EXCLUDED + EXTRA_FILES:
        if pattern.startswith("custom_apps/") and not custom_apps:
            continue
        rel = pattern.format(id=instance)
        path = data / rel[5:] if rel.startswith("data/") else site_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(hashlib.sha256(pattern.encode()).digest() * 64)


def database_for(engine: str, root: Path, server):
    if engine == "sqlite":
        return installs.sqlite_database(root)
    return installs.mysql_database(server) if engine == "mysql" else installs.pgsql_database(server)


@pytest.fixture
def make_site(bed, server_pool):
    """make_site(engine, server=None, data_outside=False, custom_apps=True) -> an
    active Site; its database is dropped afterwards (unless on the caller's server)."""
    created, on_session_servers = [], []

    def make(engine: str, server=None, data_outside: bool = False, custom_apps: bool = True) -> Site:
        label = f"{engine}-{next(SITES)}"
        root = bed.base / f"nextcloud-{label}"
        if server is None and engine != "sqlite":
            server = server_pool.get(engine, SPECS[engine][0])
            on_session_servers.append(root)
        assert not (data_outside and engine == "sqlite"), "sqlite keeps its file in the data directory"
        db, values = database_for(engine, root, server)
        if data_outside:
            values = {**values, "datadirectory": str(bed.base / f"srv-data-{label}")}
        if custom_apps:   # as the official image has it: app store apps in custom_apps/
            values = {**values, "apps_paths": [
                {"path": str(root / "apps"), "url": "/apps", "writable": False},
                {"path": str(root / "custom_apps"), "url": "/custom_apps", "writable": True}]}
        install = installs.build(root, values)
        install.database = db
        data = Path(install.config()["datadirectory"])
        add_sample_files(root, data, install.config()["instanceid"], custom_apps)
        for tree in {root, data}:
            installs.give_to_web_user(tree)
        site = Site(bed, install, data, bed.base / f"dumps-{label}", label)
        site.activate()
        created.append(site)
        return site

    yield make
    for site in created:
        if site.install.root in on_session_servers:
            site.db.server.drop_database(site.db.name)
        shutil.rmtree(site.install.root, ignore_errors=True)
        shutil.rmtree(site.data, ignore_errors=True)

