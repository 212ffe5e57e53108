"""Questioning the database server around a copy-back.

Whether the server really let go of its data directory is checked on the
files themselves: a running server holds locks on ibdata1 and
aria_log_control.  After the swap, the started server must answer and open
every table of every database the backup holds.  Stopping and starting it is
services.py's; best_effort runs the rollback steps between.
"""

from __future__ import annotations

import fcntl
import os
import re
import time

from ..engines.mysql import MysqlEngine, mysql_errors, quote
from ..errors import DataError, DbpipeError, UnavailableError
from ..log import log
from ..target import Target

LOCKED_FILES = ("ibdata1", "aria_log_control")
SYSTEM_SCHEMAS = ("information_schema", "performance_schema", "sys")


def datadir_in_use(datadir: str) -> bool:
    """Whether a server process still holds the data directory's file locks."""
    for name in LOCKED_FILES:
        path = os.path.join(datadir, name)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
        except OSError:
            return True
        finally:
            os.close(fd)
    return False


def wait_until_stopped(datadir: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while datadir_in_use(datadir):
        if time.monotonic() > deadline:
            raise UnavailableError(f"{datadir} is still in use by a running server")
        time.sleep(0.2)


def wait_until_answering(target: Target, timeout: float) -> None:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            with MysqlEngine().connect(target):
                return
        except DbpipeError as exc:
            last = exc
        time.sleep(0.5)
    raise UnavailableError(f"the server did not answer within {timeout:g} s: {last}")


def expected_schemas(prepared: str) -> set[str]:
    """The databases the backup holds: its directories, names decoded from
    MariaDB's file-name encoding where it is the plain @XXXX form."""
    names = set()
    for entry in os.scandir(prepared):
        if not entry.is_dir() or entry.name.startswith(("#", ".")):
            continue
        decoded = re.sub(r"@([0-9a-f]{4})", lambda m: chr(int(m.group(1), 16)), entry.name)
        if "@" not in decoded:
            names.add(decoded)
    return names


def check_databases(target: Target, prepared: str) -> None:
    """Every database of the backup is there and every table opens."""
    with MysqlEngine().cursor(target, "cannot check the restored databases") as cur:
        cur.execute("SHOW DATABASES")
        present = {row[0] for row in cur.fetchall()}
        missing = sorted(expected_schemas(prepared) - present)
        if missing:
            raise DataError(f"databases missing after the restore: {', '.join(missing)}")
        cur.execute("SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
                    "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN %s", (SYSTEM_SCHEMAS,))
        tables = cur.fetchall()
        for schema, table in tables:
            _open_table(cur, schema, table)
    log.info("server answers: %d databases, %d tables readable", len(present), len(tables))


def _open_table(cur, schema: str, table: str) -> None:
    with mysql_errors(f"table {schema}.{table} is unreadable after the restore", DataError):
        cur.execute(f"SELECT 1 FROM {quote(schema)}.{quote(table)} LIMIT 1")
        cur.fetchall()


def best_effort(what: str, action) -> bool:
    """Run a rollback step; log instead of raising, so the next step still runs."""
    try:
        action()
        return True
    except Exception as exc:  # noqa: BLE001 - rollback must go on
        log.error("%s failed: %s", what, exc)
        return False
