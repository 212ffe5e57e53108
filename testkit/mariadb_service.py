"""A private MariaDB managed like a system service.

A real mariadbd with its own directory, my.cnf, socket and port, stopped and
started only through testkit/private-service, which dbpipe-mariabackup-restore
copy-back also uses as its service manager (--service-manager).  So a copy-back
really stops, swaps and restarts a server process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .servers import BARE_PATH, _setup, free_port

SERVICE_MANAGER = str(Path(__file__).resolve().parent / "private-service")


class PrivateService:
    """A MariaDB server in its own directory, managed like a system service."""

    def __init__(self, label: str):
        self.root = tempfile.mkdtemp(prefix=f"dbpipe-mb-{label}-")
        os.chmod(self.root, 0o755)
        self.datadir = os.path.join(self.root, "data")
        self.socket = os.path.join(self.root, "mysqld.sock")
        self.cnf = os.path.join(self.root, "my.cnf")
        self.port = free_port()
        with open(self.cnf, "w") as handle:
            handle.write(
                f"[client]\nsocket={self.socket}\nuser=root\n\n"
                f"[mysqld]\ndatadir={self.datadir}\nsocket={self.socket}\nport={self.port}\n"
                f"bind-address=127.0.0.1\npid-file={self.root}/mysqld.pid\n"
                f"log-error={self.root}/error.log\n"
                # its own tmpdir: installs at once clash in /tmp (testkit.servers.local_mariadb)
                f"tmpdir={self.root}\n"
                "user=root\nskip-name-resolve\nskip-log-bin\n"
                "innodb-buffer-pool-size=64M\ninnodb-log-file-size=16M\n"
                "innodb-flush-log-at-trx-commit=0\ncharacter-set-server=utf8mb4\n")

    def install(self) -> "PrivateService":
        _setup(["mariadb-install-db", f"--defaults-file={self.cnf}", "--skip-test-db",
                "--auth-root-authentication-method=normal"], env={"PATH": BARE_PATH})
        return self

    def manage(self, action: str) -> subprocess.CompletedProcess:
        return subprocess.run([SERVICE_MANAGER, action, self.root], capture_output=True,
                              text=True, env={"PATH": BARE_PATH})

    def start(self) -> "PrivateService":
        result = self.manage("start")
        assert result.returncode == 0, result.stderr + self.error_log()
        return self

    def stop(self) -> None:
        self.manage("stop")

    def running(self) -> bool:
        return self.manage("status").returncode == 0

    def error_log(self) -> str:
        try:
            return Path(self.root, "error.log").read_text()[-2000:]
        except OSError:
            return ""

    def sql(self, statement: str, database: str | None = None) -> str:
        argv = ["mariadb", f"--defaults-file={self.cnf}", "--batch", "--skip-column-names"]
        result = subprocess.run(argv + ([database] if database else []), input=statement,
                                text=True, capture_output=True, env={"PATH": BARE_PATH})
        assert result.returncode == 0, f"{statement[:200]}: {result.stderr}"
        return result.stdout.strip()

    def connection_args(self) -> list[str]:
        return ["--socket", self.socket, "--user", "root"]

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
