"""MariaDB binary logs into the archive spool.

At each collection the server closes its current binary log (FLUSH BINARY
LOGS), and every closed log not collected before is put into the spool the
same durable, checksummed way as a WAL segment.  What was collected last is
remembered in the spool (.binlog-collected, not backed up), because
dbpipe-pitr-prune empties the spool once Bareos holds the files.  Needs
log_bin; RELOAD and BINLOG MONITOR for the account."""

from __future__ import annotations

import os
import re

from ..engines.mysql import MysqlEngine, mysql_error
from ..errors import ConfigError
from ..files import atomic_write
from ..log import log
from ..target import Target
from .spool import Spool

MARKER = ".binlog-collected"
NUMBERED = re.compile(r"(.+)\.(\d{6,})")


def _server_logs(target: Target) -> tuple[str, list[str]]:
    """(directory of the binary logs, their names oldest first) after a flush."""
    import pymysql
    with MysqlEngine().connect(target) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@log_bin, @@log_bin_basename")
                enabled, basename = cur.fetchone()
                if not enabled:
                    raise ConfigError("binary logging is off on the server (log_bin): point-in-time "
                                      "recovery of MariaDB needs it; set log_bin and server_id in its "
                                      "configuration and restart it")
                cur.execute("FLUSH BINARY LOGS")
                cur.execute("SHOW BINARY LOGS")
                names = [row[0] for row in cur.fetchall()]
        except pymysql.err.MySQLError as exc:
            raise mysql_error(exc, "cannot flush or list the binary logs") from None
    return os.path.dirname(basename), names


def collect(target: Target, spool: Spool) -> list[str]:
    """Put every newly closed binary log into the spool; their names."""
    directory, names = _server_logs(target)
    last = _last_collected(spool)
    closed = [name for name in names[:-1] if name > last]
    added = []
    for name in closed:
        spool.put(os.path.join(directory, name), name)
        added.append(name)
    if added:
        with atomic_write(os.path.join(spool.directory, MARKER)) as handle:
            handle.write(added[-1].encode() + b"\n")
    log.info("collected %d closed binary log(s) into %s%s", len(added), spool.directory,
             f": {added[0]} .. {added[-1]}" if added else "")
    return added


def _last_collected(spool: Spool) -> str:
    try:
        with open(os.path.join(spool.directory, MARKER)) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return ""


def number_of(name: str) -> tuple[str, int] | None:
    match = NUMBERED.fullmatch(name)
    return (match.group(1), int(match.group(2))) if match else None
