"""dbpipe as an admin gets it: the Debian package `make deb` builds, put on a
test host by unpacking it into that host's own root directory.

Built once per test session, offline (no package index, no proxy) and
without the test tool chain on PATH, as on a build host that has only the
source tree.  A test host's root gets the package's files with dpkg-deb -x:
the real /usr of this (shared) machine is never written.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .paths import ROOT, bareos_env
from .servers import BARE_PATH

# dpkg-deb and lintian live in /usr/bin; ldconfig/start-stop-daemon, which dpkg-deb may want, in sbin
PACKAGE_PATH = f"{BARE_PATH}:/usr/sbin:/sbin"
TOOLS = ("dpkg-deb", "lintian")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if not shutil.which(tool, path=PACKAGE_PATH)]


def build_deb(out: Path) -> Path:
    """`make deb DEB_DIR=out`: the path of the one .deb it built."""
    absent = missing_tools()
    if absent:
        raise RuntimeError(f"{', '.join(absent)} missing: run 'make test' once as root "
                           "(tools/system-deps installs it)")
    env = bareos_env(PIP_NO_INDEX="1", http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    env["PATH"] = PACKAGE_PATH        # no .venv
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "deb", f"DEB_DIR={out}"], env=env,
                            capture_output=True, text=True, timeout=300)
    debs = list(out.glob("dbpipe_*_all.deb"))
    if result.returncode != 0 or len(debs) != 1:
        raise RuntimeError(f"make deb failed ({result.returncode}): {result.stderr}{result.stdout}")
    return debs[0]


def unpack(deb: Path, root: Path) -> Path:
    """Install the package on a test host: its files below root (as / of that host); returns root."""
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, env={**bareos_env(), "PATH": PACKAGE_PATH})
    return root
