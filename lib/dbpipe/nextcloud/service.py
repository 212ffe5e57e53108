"""Method 4.1: stop the web server (or PHP-FPM) instead of maintenance mode.

systemctl when systemd runs, else service(8).  --service-manager names any
program that answers like systemctl: `PROGRAM stop|start|is-active NAME`,
exit 0 meaning success (for is-active: running).  Only services that were
running are stopped, and only those are started again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UnavailableError
from ..process import find_tool, run

SYSTEMD_RUNNING = "/run/systemd/system"


@dataclass(frozen=True)
class ServiceManager:
    program: str
    style: str           # systemctl | service
    timeout: float = 300.0

    @classmethod
    def detect(cls, program: str | None = None, timeout: float = 300.0) -> "ServiceManager":
        if program:
            return cls(program, "systemctl", timeout)
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
        result = self._run(action, name)
        if result.code != 0:
            message = result.last_error_line() or f"exit {result.code}"
            raise UnavailableError(f"cannot {action} service {name}: {message}")
