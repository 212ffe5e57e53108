"""The bench's one door to the rest of the repository.

The bench measures dbpipe against the same private servers, btrfs loop file
systems, Nextcloud double and Bareos testbed the tests start - borrowed, not
kept as twins that would drift apart.  This module is the only bench module
that puts the repository (lib/, lib/vendor) on sys.path and the only one that
imports from tests/: the others import dbpipe and these fixtures after it,
so what the bench leans on is listed here once.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_PATHS = [str(ROOT), str(ROOT / "lib"), str(ROOT / "lib" / "vendor")]
sys.path[:0] = [path for path in _PATHS if path not in sys.path]

from tests import servers  # noqa: E402  (private MariaDB/PostgreSQL servers)


def private_service():
    """(PrivateService, SERVICE_MANAGER): a MariaDB run by a private service
    manager, as the physical restore tests use (imported only when needed)."""
    from tests.mariabackup.conftest import SERVICE_MANAGER, PrivateService
    return PrivateService, SERVICE_MANAGER


def nextcloud_fixtures():
    """(btrfs, installs): loop-device btrfs and the Nextcloud double's installs."""
    from tests.nextcloud import btrfs, installs
    return btrfs, installs


def bareos_fixtures():
    """(testbed, BARE_PATH, bareos_env): the real Bareos daemons of tests/bareos."""
    from tests.bareos import testbed
    from tests.helpers import BARE_PATH, bareos_env
    return testbed, BARE_PATH, bareos_env


__all__ = ["ROOT", "bareos_fixtures", "nextcloud_fixtures", "private_service", "servers"]
