"""Fixtures for the Nextcloud tests: sample installations in a directory the
web user can reach, a private state directory, and runners for the hooks."""

from __future__ import annotations

import shutil

import pytest

from ..helpers import ROOT, dbpipe, reachable_tempdir
from testkit import installs


@pytest.fixture(scope="session")
def nc_base():
    """www-data must reach the trees."""
    with reachable_tempdir("dbpipe-nc-", "the sample installations belong to www-data, "
                                         "as in production") as base:
        yield base


@pytest.fixture
def nc_root(nc_base, request):
    root = nc_base / installs.unique(request.node.name[:20].strip("[]_").replace("[", "-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def state_dir(tmp_path):
    return tmp_path / "state"


@pytest.fixture(params=installs.OCC_VARIANTS)
def occ_variant(request):
    """The Nextcloud line the occ double is: every test with an installation
    runs against each (30, 31, 32, PR 56754); one the hooks cannot serve fails."""
    return request.param


def _install(nc_root, database_and_values, variant):
    db, values = database_and_values
    install = installs.build(nc_root, values, variant=variant)
    install.database = db
    return install


@pytest.fixture
def plain_install(nc_root, occ_variant):
    """An installation on SQLite: enough for everything that does not dump."""
    return _install(nc_root, installs.sqlite_database(nc_root), occ_variant)


@pytest.fixture
def mysql_install(nc_root, server_pool, occ_variant):
    install = _install(nc_root, installs.mysql_database(server_pool.get("mysql", "local")), occ_variant)
    yield install
    install.database.server.drop_database(install.database.name)


@pytest.fixture
def pgsql_install(nc_root, server_pool, occ_variant):
    install = _install(nc_root, installs.pgsql_database(server_pool.get("pgsql", "local")), occ_variant)
    yield install
    install.database.server.drop_database(install.database.name)


@pytest.fixture
def run_hook(env, state_dir):
    """Run a hook executable with the bare Bareos environment and test defaults."""

    def run(name: str, install, *args, state=state_dir, settle="0", **kw):
        argv = [str(install.root), "--state-dir", str(state), "--settle", settle, *args]
        return dbpipe(name, *argv, env=kw.pop("env", env), **kw)

    return run


def lines(result) -> list[str]:
    return result.stdout.decode().splitlines()


def text(result) -> str:
    return result.stdout.decode() + result.stderr.decode()


class Background:
    """A hook running in the background, its stdout collected line by line."""

    def __init__(self, argv, env):
        import subprocess
        import threading
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, cwd="/", env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def wait_for(self, fragment: str, timeout: float = 30) -> None:
        import time
        deadline = time.monotonic() + timeout
        while not any(fragment in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no line with {fragment!r}: {self.lines} "
                                     f"{self.proc.stderr.read().decode() if self.proc.poll() is not None else ''}")
            time.sleep(0.05)

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code, self.proc.stderr.read().decode()


@pytest.fixture
def start_hook(env, state_dir):
    started = []

    def start(name: str, install, *args, settle="0"):
        argv = [str(ROOT / "bin" / name), str(install.root), "--state-dir", str(state_dir),
                "--settle", settle, *map(str, args)]
        started.append(Background(argv, env))
        return started[-1]

    yield start
    for hook in started:
        if hook.proc.poll() is None:
            hook.proc.kill()
            hook.proc.wait()
