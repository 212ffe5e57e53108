"""mariabackup / mbstream command lines and the server facts a backup needs.

The binary names stay configurable so that Percona's xtrabackup/xbstream can
stand in.  The password reaches mariabackup through an anonymous memory file
(/dev/fd/N), never argv or environment: it reads its option files twice.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

from ..credentials import mysql_option_args, mysql_option_memfd
from ..engines.base import DumpCommand
from ..engines.mysql import MysqlEngine, connection_args
from ..process import find_tool
from ..target import Target
from .identity import read_instance
from .state import ServerIdentity

COMPLETED = "completed OK!"
# What mariabackup leaves in --extra-lsndir; MariaDB 11.1 renamed both files
# (MDEV-18931).  Read in this order: the new name, then the old one.
CHECKPOINTS = ("mariadb_backup_checkpoints", "xtrabackup_checkpoints")
INFO = ("mariadb_backup_info", "xtrabackup_info")
LSN_LINE = re.compile(r"^Log sequence number\s+(\d+)", re.MULTILINE)
CHECKPOINT_LINE = re.compile(r"^(\w+)\s*=\s*(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Tools:
    mariabackup: str
    mbstream: str = ""            # only the restore side needs it

    @classmethod
    def resolve(cls, mariabackup: str | None = None, mbstream: str | None = None,
                extract: bool = True) -> "Tools":
        backup = mariabackup or find_tool("mariabackup", "mariadb-backup", package_hint="mariadb-backup")
        xtra = os.path.basename(backup).startswith("xtrabackup")
        stream = mbstream or (find_tool(*(("xbstream",) if xtra else ("mbstream", "xbstream")),
                                        package_hint="mariadb-backup") if extract else "")
        return cls(backup, stream)

    @property
    def is_xtrabackup(self) -> bool:
        """xtrabackup needs --apply-log-only on every prepare but the last; mariabackup
        (10.2+) rejects that option."""
        return os.path.basename(self.mariabackup).startswith("xtrabackup")

    @contextlib.contextmanager
    def backup_command(self, target: Target, workdir: str, lsndir: str,
                       incremental_lsn: int | None, options: tuple = ()):
        """The streaming backup; credentials live as long as the context."""
        with mysql_option_memfd(target.password) as fd:
            argv = ([self.mariabackup, *mysql_option_args(target.defaults_file, fd),
                     "--backup", "--stream=xbstream", f"--target-dir={workdir}",
                     f"--extra-lsndir={lsndir}"]
                    + connection_args(target)
                    + ([f"--incremental-lsn={incremental_lsn}"] if incremental_lsn is not None else [])
                    + list(options))
            yield DumpCommand(argv, pass_fds=(fd,) if fd is not None else ())

    def extract_argv(self, directory: str) -> list[str]:
        return [self.mbstream, "-x", "-C", directory]

    def prepare_argv(self, base: str, incremental: str | None, last: bool) -> list[str]:
        return ([self.mariabackup, "--prepare", f"--target-dir={base}"]
                + ([f"--incremental-dir={incremental}"] if incremental else [])
                + (["--apply-log-only"] if self.is_xtrabackup and not last else []))

    def copy_back_argv(self, prepared: str, datadir: str, defaults_file: str | None) -> list[str]:
        return ([self.mariabackup, *mysql_option_args(defaults_file, None), "--copy-back",
                 f"--target-dir={prepared}", f"--datadir={datadir}"])


def completed_ok(stderr_lines) -> bool:
    """mariabackup's own completeness marker ends its log."""
    return any(line.rstrip().endswith(COMPLETED) for line in list(stderr_lines)[-5:])


def read_info(lsndir: str, names: tuple[str, ...]) -> dict[str, str]:
    """The first of names present in --extra-lsndir, as 'key = value' pairs:
    CHECKPOINTS (backup_type, from_lsn, to_lsn) or INFO (tool_version, ...)."""
    for name in names:
        try:
            with open(os.path.join(lsndir, name), encoding="utf-8", errors="replace") as handle:
                return {key: value.strip() for key, value in CHECKPOINT_LINE.findall(handle.read())}
        except FileNotFoundError:
            continue
    return {}


@dataclass(frozen=True)
class ServerFacts:
    identity: ServerIdentity
    lsn: int


def server_facts(target: Target) -> ServerFacts:
    """Who the server is and how far its redo log has come (needs PROCESS, which
    mariabackup needs anyway)."""
    with MysqlEngine().cursor(target, "cannot read the server's facts") as cur:
        cur.execute("SELECT @@hostname, @@datadir, @@port, @@version")
        hostname, datadir, port, version = cur.fetchone()
        cur.execute("SHOW ENGINE INNODB STATUS")
        status = cur.fetchone()[2]
        instance = read_instance(cur, datadir)
    found = LSN_LINE.search(status)
    identity = ServerIdentity(hostname, os.path.normpath(datadir), int(port), version,
                              instance.instance_id, instance.redo_log_start)
    return ServerFacts(identity, int(found.group(1)) if found else -1)
