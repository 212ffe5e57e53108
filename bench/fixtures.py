"""The bench's one door to the rest of the repository.

The bench measures dbpipe against the same private servers, btrfs loop file
systems, Nextcloud double and Bareos testbed the tests start - shared through
testkit/, not kept as twins that would drift apart.  This module is the only
bench module that puts the repository (lib/, lib/vendor, testkit) on sys.path:
the others import dbpipe and testkit after it, so what the bench leans on is
listed here once.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_PATHS = [str(ROOT), str(ROOT / "lib"), str(ROOT / "lib" / "vendor")]
sys.path[:0] = [path for path in _PATHS if path not in sys.path]

from testkit import servers  # noqa: E402  (private MariaDB/PostgreSQL servers)
from testkit.paths import bareos_env  # noqa: E402  (the bare environment of a Bareos job)


def private_service():
    """(PrivateService, SERVICE_MANAGER): a MariaDB run by a private service
    manager, as the physical restore tests use (imported only when needed)."""
    from testkit.mariadb_service import SERVICE_MANAGER, PrivateService
    return PrivateService, SERVICE_MANAGER


def nextcloud_fixtures():
    """(btrfs, installs): loop-device btrfs and the Nextcloud double's installs."""
    from testkit import btrfs, installs
    return btrfs, installs


def bareos_fixtures():
    """(testbed, package, BARE_PATH, bareos_env): the real Bareos daemons tests/bareos
    runs, and dbpipe's Debian package it installs on its hosts."""
    from testkit import package, testbed
    return testbed, package, servers.BARE_PATH, bareos_env


__all__ = ["ROOT", "bareos_env", "bareos_fixtures", "nextcloud_fixtures", "private_service", "servers"]
