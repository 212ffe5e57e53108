"""`make deb`: the Debian package a Bareos admin installs.  Built offline from
the source tree without the test tool chain, lintian finds no error, and the
commands run from where the package puts them (unpacked with dpkg -x)."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ..helpers import BARE_PATH, BIN, ROOT, bareos_env

PACKAGE_PATH = f"{BARE_PATH}:/usr/sbin:/sbin"


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    for tool in ("dpkg-deb", "lintian"):
        if not shutil.which(tool, path=PACKAGE_PATH):
            pytest.fail(f"{tool} is missing: run 'make test' once as root (tools/system-deps installs it)",
                        pytrace=False)
    out = tmp_path_factory.mktemp("deb")
    # no index, no proxy: the vendored PyMySQL must be enough; no .venv on PATH
    env = bareos_env(PIP_NO_INDEX="1", http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    env["PATH"] = PACKAGE_PATH
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "deb", f"DEB_DIR={out}"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    debs = list(out.glob("dbpipe_*_all.deb"))
    assert len(debs) == 1, (result.stdout, list(out.iterdir()))
    return debs[0]


@pytest.fixture(scope="module")
def unpacked(deb, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
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


def test_the_unpacked_commands_dump_and_verify_with_the_packaged_library(unpacked, tmp_path):
    """The commands find the library beside them (no /usr/lib/dbpipe on this host is used)."""
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO t (v) VALUES ('packaged')")
    dump = tmp_path / "app.sql"
    with open(dump, "wb") as out:
        result = subprocess.run([str(unpacked / "usr/bin/dbpipe-dump"), "--type", "sqlite", "--database",
                                 str(database)], stdout=out, stderr=subprocess.PIPE, env=bareos_env())
    assert result.returncode == 0, result.stderr
    verified = subprocess.run([str(unpacked / "usr/bin/dbpipe-verify"), str(dump)], capture_output=True,
                              text=True, env=bareos_env())
    assert verified.returncode == 0, verified.stderr
    assert re.search(r"^verdict: +intact$", verified.stdout, re.M), verified.stdout
    found = subprocess.run(["/usr/bin/python3", "-c", "import sys; sys.path[:0] = sys.argv[1:]; import dbpipe, "
                            "pymysql; print(dbpipe.__file__); print(pymysql.__file__)",
                            str(unpacked / "usr/lib/dbpipe"), str(unpacked / "usr/lib/dbpipe/vendor")],
                           capture_output=True, text=True, check=True, env=bareos_env()).stdout.split()
    assert all(path.startswith(str(unpacked)) for path in found), found
