"""Stopping and starting system services: the web server for the Nextcloud
hooks' method 4.1, the database server around a mariabackup copy-back
(physical/server_checks.py watches it stop and answer again).

systemctl when systemd runs, else service(8).  --service-manager names any
program that answers like systemctl: `PROGRAM stop|start|is-active NAME`,
exit 0 meaning success (for is-active: running); a program named `service`
is called the service(8) way.  A test can stand in its own process manager.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import UnavailableError
from .log import log
from .process import COMMAND_TIMEOUT, find_tool, run

SYSTEMD_RUNNING = "/run/systemd/system"


@dataclass(frozen=True)
class ServiceManager:
    program: str
    style: str           # systemctl | service
    timeout: float = COMMAND_TIMEOUT

    @classmethod
    def detect(cls, program: str | None = None, timeout: float = COMMAND_TIMEOUT) -> "ServiceManager":
        if program:
            style = "service" if os.path.basename(program) == "service" else "systemctl"
            return cls(program, style, timeout)
        if os.path.isdir(SYSTEMD_RUNNING):
            return cls(find_tool("systemctl"), "systemctl", timeout)
        return cls(find_tool("service", package_hint="init-system-helpers"), "service", timeout)

    def _argv(self, action: str, name: str) -> list[str]:
        if self.style == "service":
            return [self.program, name, "status" if action == "is-active" else action]
        return [self.program, action, name]

    def _run(self, action: str, name: str):
        try:
            return run(self._argv(action, name), timeout=self.timeout)
        except UnavailableError as exc:
            raise UnavailableError(f"service {name} {action}: {exc}") from None

    def is_active(self, name: str) -> bool:
        return self._run("is-active", name).code == 0

    def stop(self, name: str) -> None:
        self._change("stop", name)

    def start(self, name: str) -> None:
        self._change("start", name)

    def _change(self, action: str, name: str) -> None:
        log.info("%s %s", action, name)
        result = self._run(action, name)
        if result.code != 0:
            message = result.last_error_line() or f"exit {result.code}"
            raise UnavailableError(f"cannot {action} service {name}: {message}")


@dataclass(frozen=True)
class Service:
    """One named service under its manager (the database server of a copy-back)."""

    name: str
    manager: ServiceManager

    def stop(self) -> None:
        self.manager.stop(self.name)

    def start(self) -> None:
        self.manager.start(self.name)
