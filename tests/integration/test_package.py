"""`make deb`: the Debian package a Bareos admin installs.  Built offline from
the source tree without the test tool chain, lintian finds no error, and the
commands run from where the package puts them (unpacked with dpkg -x, as the
real-Bareos test bed installs it on its hosts).  `make install`, the way without
a package, works without the test tool chain too."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from testkit import package
from testkit.package import PACKAGE_PATH
from ..bareos.runbook import Runner, blocks
from ..helpers import BIN, ROOT, bareos_env


@pytest.fixture(scope="module")
def unpacked(deb, tmp_path_factory) -> Path:
    """The package on a host: dpkg-deb -x into a root of its own (testkit.package, as the Bareos test bed)."""
    return package.unpack(deb, tmp_path_factory.mktemp("root"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`make install` as an admin without a package runs it, into a PREFIX of its own (root/usr/local),
    with no .venv on PATH: the install needs only python3 and the vendored PyMySQL."""
    root = tmp_path_factory.mktemp("installed")
    env = {**bareos_env(PIP_NO_INDEX="1"), "PATH": PACKAGE_PATH}
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "install", f"PREFIX={root}/usr/local"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return root


@pytest.mark.parametrize("target", ["deb", "install"])
def test_make_deb_and_install_need_no_test_tool_chain(target, tmp_path):
    plan = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"DEB_DIR={tmp_path}", f"DESTDIR={tmp_path}"],
                          capture_output=True, text=True, check=True).stdout
    assert ".venv" not in plan and "requirements-test" not in plan, plan


def test_lintian_reports_no_errors(deb):
    result = subprocess.run(["lintian", "--no-cfg", str(deb)], capture_output=True, text=True,
                            env={**bareos_env(), "PATH": PACKAGE_PATH}, timeout=600)
    errors = [line for line in result.stdout.splitlines() if line.startswith("E:")]
    assert errors == [], result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_control_fields(deb):
    fields = dict(re.findall(r"^ ?(\w[\w-]*): (.*)$", subprocess.run(
        ["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout, re.M))
    assert fields["Architecture"] == "all"
    assert fields["Depends"] == "python3 (>= 3.11)"
    assert "postgresql-client" in fields["Recommends"] and "mariadb-client" in fields["Recommends"]


def test_the_package_holds_every_command_the_library_pymysql_resources_and_docs(unpacked):
    commands = sorted(path.name for path in BIN.iterdir() if path.is_file())
    assert sorted(path.name for path in (unpacked / "usr/bin").iterdir()) == commands
    assert (unpacked / "usr/lib/dbpipe/dbpipe/__init__.py").is_file()
    assert (unpacked / "usr/lib/dbpipe/vendor/pymysql/__init__.py").is_file()
    assert not list(unpacked.rglob("__pycache__"))
    for name in ("README.md", "docs/exit-codes.md", "copyright", "changelog.gz"):
        assert (unpacked / "usr/share/doc/dbpipe" / name).is_file(), name
    shipped = sorted(p.relative_to(ROOT / "bareos-config") for p in (ROOT / "bareos-config").rglob("*.conf"))
    resources = unpacked / "usr/share/dbpipe/bareos-config"
    assert sorted(p.relative_to(resources) for p in resources.rglob("*.conf")) == shipped


def test_the_resources_name_the_package_commands(unpacked):
    """Every command a shipped resource runs is /usr/bin/<a command in the package>."""
    resources = unpacked / "usr/share/dbpipe/bareos-config"
    text = "\n".join(p.read_text() for p in resources.rglob("*.conf"))
    assert "/usr/local/" not in text
    named = set(re.findall(r"/usr/bin/([\w-]+)", text))
    assert named and all((unpacked / "usr/bin" / name).is_file() for name in named), named


@pytest.mark.parametrize("how", ["deb", "make install"])
def test_the_installed_commands_dump_and_verify_with_the_installed_library(how, request, tmp_path):
    """The commands find the library beside them: the package's relative to
    themselves (no /usr/lib/dbpipe on this host is used), make install's at LIBDIR."""
    root = request.getfixturevalue("unpacked" if how == "deb" else "installed")
    prefix = root / ("usr" if how == "deb" else "usr/local")
    assert sorted(path.name for path in (prefix / "bin").iterdir()) == sorted(
        path.name for path in BIN.iterdir() if path.is_file())
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t (v) VALUES ('packaged')")
    dump = tmp_path / "app.sql"
    with open(dump, "wb") as out:
        result = subprocess.run([str(prefix / "bin/dbpipe-dump"), "--type", "sqlite", "--database",
                                 str(database)], stdout=out, stderr=subprocess.PIPE, env=bareos_env())
    assert result.returncode == 0, result.stderr
    verified = subprocess.run([str(prefix / "bin/dbpipe-verify"), str(dump)], capture_output=True,
                              text=True, env=bareos_env())
    assert verified.returncode == 0, verified.stderr
    assert re.search(r"^verdict: +intact$", verified.stdout, re.M), verified.stdout
    found = subprocess.run(["/usr/bin/python3", "-c", "import sys; sys.path[:0] = sys.argv[1:]; import dbpipe, "
                            "pymysql; print(dbpipe.__file__); print(pymysql.__file__)",
                            str(prefix / "lib/dbpipe"), str(prefix / "lib/dbpipe/vendor")],
                           capture_output=True, text=True, check=True, env=bareos_env()).stdout.split()
    assert all(path.startswith(str(root)) for path in found), found


def readme_blocks(first: str) -> list[str]:
    return [text for language, text in blocks(ROOT / "README.md") if language == "sh" and text.startswith(first)]


def test_the_readme_package_block_as_written(tmp_path):
    """README's `make deb` / `apt install ./build/dbpipe_*_all.deb` in the
    source tree, offline and without the .venv; build/ is DEB_DIR (the
    Makefile's default) in a temp dir, the host a root of its own."""
    host = tmp_path / "host"
    run = Runner(None, None, {"./build/": f"{tmp_path}/build/"}, roots=[host], env={
        **bareos_env(PIP_NO_INDEX="1", DEB_DIR=str(tmp_path / "build")), "PATH": PACKAGE_PATH, "PWD": str(ROOT)})
    (block,) = readme_blocks("make deb")
    run.run(block)
    assert (host / "usr/bin/dbpipe-dump").is_file()
    assert (host / "usr/share/dbpipe/bareos-config/bareos-fd.d/client/myself.conf").is_file()


def test_the_readme_install_block_as_written(tmp_path):
    """README's `make install` / `make install-bareos-config`, without the
    .venv, into a DESTDIR (from the environment, as make takes it)."""
    dest = tmp_path / "dest"
    run = Runner(None, None, {}, env={**bareos_env(PIP_NO_INDEX="1", DESTDIR=str(dest)), "PATH": PACKAGE_PATH,
                                      "PWD": str(ROOT)})
    (block,) = readme_blocks("make install")
    run.run(block)
    commands = sorted(path.name for path in BIN.iterdir() if path.is_file())
    assert sorted(path.name for path in (dest / "usr/local/bin").iterdir()) == commands
    assert 'LIBDIR = "/usr/local/lib/dbpipe"' in (dest / "usr/local/bin/dbpipe-dump").read_text()
    assert (dest / "usr/local/lib/dbpipe/vendor/pymysql/__init__.py").is_file()
    shipped = sorted(p.relative_to(ROOT / "bareos-config") for p in (ROOT / "bareos-config").rglob("*.conf"))
    assert sorted(p.relative_to(dest / "etc/bareos") for p in (dest / "etc/bareos").rglob("*.conf")) == shipped


def test_the_readme_make_demo_line_as_written():
    """The first line of README's "two commands"; the second, `make test`, is
    this test suite itself, run as written by CI (.ci/run)."""
    (block,) = readme_blocks("make demo")
    first, second = block.splitlines()
    assert second.startswith("make test ")
    run = Runner(None, None, {}, env={**bareos_env(), "PATH": PACKAGE_PATH, "PWD": str(ROOT)})
    run.run(first)
    assert "verdict: PASS" in run.outputs[-1], run.outputs[-1]
