"""What the tests need from the machine, the Debian package that provides it,
and the one way to say it is missing.

`tools/system-deps test` (run by `make test` as root) installs every package
named here.  On a developer's machine a missing prerequisite skips the tests
that need it, saying which package brings it; in CI (CI=true), where
system-deps has run, the same test fails naming the package: a green CI run
must mean the tests ran.  Prerequisites no package brings (a kernel without
btrfs, no loop devices in a container) skip everywhere and say "by design";
docs/tests.md lists them.
"""

from __future__ import annotations

import os
import shutil

import pytest

# tool -> Debian 12 package (tools/system-deps test installs them all)
PACKAGES = {
    "php": "php-cli",
    "mariadbd": "mariadb-server", "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client", "mariadb-dump": "mariadb-client",
    "mariabackup": "mariadb-backup",
    "initdb": "postgresql", "pg_ctl": "postgresql",
    "psql": "postgresql-client", "pg_dump": "postgresql-client",
    "sqlite3": "sqlite3",
    "mkfs.btrfs": "btrfs-progs", "btrfs": "btrfs-progs",
    "losetup": "mount", "mount": "mount", "umount": "mount",
    "chattr": "e2fsprogs",
    "strace": "strace",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str, remedy: str | None = None):
    """Skip with the reason - or, in CI and when the project can provide what
    is missing (remedy says how), fail with it."""
    if remedy and in_ci():
        pytest.fail(f"{reason}: {remedy} (CI=true: the project installs this, so the test may not skip)",
                    pytrace=False)
    pytest.skip(f"{reason} ({remedy})" if remedy else f"{reason} (by design: no package provides it)")


def packages_for(tools) -> list[str]:
    return sorted({PACKAGES.get(tool, tool) for tool in tools})


def missing_tools(tools, path: str) -> list[str]:
    return [tool for tool in tools if not shutil.which(tool, path=path)]


def require_tools(tools, path: str, what: str) -> None:
    """Skip (CI: fail) unless every tool is on path, naming the packages."""
    absent = missing_tools(tools, path)
    if absent:
        missing(f"{what}: {', '.join(absent)} missing",
                f"install {' '.join(packages_for(absent))} (tools/system-deps test)")


def require_root(why: str) -> None:
    """The tests that hand files to other accounts or mount file systems run
    as root; CI runs as root (tools/system-deps needs it)."""
    if os.geteuid() != 0:
        missing(f"needs root: {why}", "run the tests as root, as .ci/run does")


def not_applicable(reason: str):
    """A parametrized case that cannot apply (e.g. sqlite has no password):
    skipped everywhere, CI included, and listed in docs/tests.md."""
    pytest.skip(f"by design: {reason}")
