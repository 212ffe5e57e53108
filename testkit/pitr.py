"""The PITR pieces the tests and the bench share: a PostgreSQL that archives its
WAL with dbpipe-wal-archive into a spool the postgres account owns, base
backups through dbpipe-pg-basebackup, small real file systems to fill up."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import time
from pathlib import Path

from . import servers
from .paths import BIN, bareos_env


def postgres_account():
    return pwd.getpwnam("postgres")


def owned_dir(path: Path) -> Path:
    """A directory of the postgres account (archive_command runs as postgres)."""
    account = postgres_account()
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(path, 0o700)
    return path


def archive_command(spool: Path, extra: str = "") -> str:
    return f"{BIN}/dbpipe-wal-archive %p %f --spool {spool}" + (f" {extra}" if extra else "")


def configure(server: servers.Server, settings: dict[str, str]) -> None:
    """Append settings to postgresql.conf, let postgres replicate over the
    socket (pg_basebackup, as on Debian), and restart the server."""
    hba = Path(server.workdir) / "data" / "pg_hba.conf"
    if "replication" not in hba.read_text():
        hba.write_text("local replication postgres trust\n" + hba.read_text())
    conf = Path(server.workdir) / "data" / "postgresql.conf"
    with conf.open("a") as handle:
        for key, value in settings.items():
            handle.write(f"{key} = '{value}'\n")
    server.stop()
    server.start()


def tmpfs(path: Path, size_mb: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
                   check=True)
    return path


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size_mb: int):
    tmpfs(path, size_mb)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def switch_wal(server: servers.Server) -> str:
    """Finish the current segment (after a write, so there is one) and return its name."""
    return server.sql("CREATE TABLE IF NOT EXISTS _switch (x int); INSERT INTO _switch VALUES (1); "
                      "SELECT pg_walfile_name(pg_switch_wal())")


def wait_archived(server: servers.Server, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = server.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        if last and last >= name:
            return
        time.sleep(0.2)
    raise AssertionError(f"{name} not archived within {timeout} s: "
                         + server.sql("SELECT * FROM pg_stat_archiver"))


def archiver(server: servers.Server) -> dict:
    row = server.sql("SELECT archived_count, coalesce(last_archived_wal,''), failed_count, "
                     "coalesce(last_failed_wal,'') FROM pg_stat_archiver").split("|")
    return {"archived": int(row[0]), "last": row[1], "failed": int(row[2]), "last_failed": row[3]}


def base_backup(server, bases: Path) -> None:
    reader = subprocess.Popen([str(BIN / "dbpipe-pg-basebackup"), *server.args()], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=bareos_env(), cwd="/")
    stored = subprocess.run([str(BIN / "dbpipe-pg-basebackup"), "--from-stdin", "--into", str(bases)],
                            stdin=reader.stdout, capture_output=True, env=bareos_env(), cwd="/")
    reader.stdout.close()
    assert reader.wait(120) == 0, reader.stderr.read().decode()
    assert stored.returncode == 0, stored.stderr.decode()
