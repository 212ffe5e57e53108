"""Which server instance a data directory belongs to, read from its own files.

An incremental is only as good as its base: mariabackup copies the pages
whose LSN is above the base's to_lsn, so the server must be the one the base
was taken from, continued.  A server re-initialised (mariadb-install-db, data
reloaded) or restored from another server's backup answers with the same
host, data directory, port and version, and its log sequence number can be
ahead of the chain's: only the files tell them apart.

- The instance: the UUID in Aria's control file (aria_log_control).
  mariadb-install-db creates it once; restarts, upgrades and backups keep
  it; a re-initialised server has a new one, and a server restored from
  another server's backup has that server's (mariabackup copies the file).
  MySQL has no Aria: its @@server_uuid (auto.cnf) plays the same part.
- The redo log: the LSN at which ib_logfile0 was created, in its header
  (MariaDB 10.8+ format).  mariadb-install-db writes the same fixed value
  every time, but mariabackup --prepare writes a new log that starts at the
  backup's end, and so does a resize: a server restored from any backup,
  even one of its own, has a log of its own.  A changed innodb_log_file_size
  therefore costs one full backup; that is the safe side.

The LSN alone cannot prove anything: a fresh server's LSN grows with the
reloaded data and is soon past the chain's.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from ..engines.mysql import mysql_errors
from ..errors import DbpipeError

ARIA_CONTROL = "aria_log_control"
ARIA_MAGIC = b"\xfe\xfe\x0c"
ARIA_UUID = slice(4, 20)
REDO_LOG = "ib_logfile0"
REDO_FORMAT = b"Phys"          # MariaDB 10.8+ redo log
REDO_START_LSN = slice(8, 16)
UNKNOWN_LSN = -1


@dataclass(frozen=True)
class Instance:
    instance_id: str              # "aria:<hex>" or "uuid:<server_uuid>"; "" if unreadable
    redo_log_start: int           # LSN at which the redo log was created; -1 if unknown


def read_instance(cur, datadir: str) -> Instance:
    """The running server's instance, from the files its variables point to."""
    aria_dir = _variable(cur, "aria_log_dir_path") or datadir
    log_dir = _variable(cur, "innodb_log_group_home_dir") or datadir
    instance = _aria_uuid(os.path.join(datadir, aria_dir))
    if not instance:
        uuid = _variable(cur, "server_uuid")
        instance = f"uuid:{uuid}" if uuid else ""
    return Instance(instance, _redo_log_start(os.path.join(datadir, log_dir, REDO_LOG)))


def difference(old: Instance, new: Instance) -> str:
    """Why new is not the instance the chain was taken from ('' if it is)."""
    if not old.instance_id:
        return "the chain state does not record which server instance it belongs to (older dbpipe)"
    if not new.instance_id:
        return f"cannot read this server's instance identity ({ARIA_CONTROL} or @@server_uuid)"
    if old.instance_id != new.instance_id:
        return (f"this is another server instance than the chain's ({new.instance_id}, the chain's "
                f"{old.instance_id}): re-initialised, or restored from another server's backup")
    if old.redo_log_start != new.redo_log_start:
        return (f"the server's redo log was recreated since the full backup (it starts at LSN "
                f"{new.redo_log_start}, the chain's at {old.redo_log_start}): restored from a backup, "
                "or innodb_log_file_size changed")
    return ""


def _variable(cur, name: str) -> str:
    """A server variable, '' where this server has none (MySQL: no Aria)."""
    try:
        with mysql_errors(f"no @@{name}"):
            cur.execute(f"SELECT @@{name}")
            value = cur.fetchone()[0]
    except DbpipeError:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _aria_uuid(directory: str) -> str:
    head = _head(os.path.join(directory, ARIA_CONTROL), ARIA_UUID.stop)
    if len(head) < ARIA_UUID.stop or not head.startswith(ARIA_MAGIC):
        return ""
    return "aria:" + head[ARIA_UUID].hex()


def _redo_log_start(path: str) -> int:
    head = _head(path, REDO_START_LSN.stop)
    if len(head) < REDO_START_LSN.stop or not head.startswith(REDO_FORMAT):
        return UNKNOWN_LSN
    return struct.unpack(">Q", head[REDO_START_LSN])[0]


def _head(path: str, size: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""
