"""Maintenance mode through occ: switch, confirm, settle, and the marker.

occ's --on/--off exit 0 whether or not anything changed, so the state is
always read from `occ status` first.  When we switch maintenance on we also
set the system value `dbpipe.maintenance`: config.php is rewritten anyway,
and a copy of config/ taken during the backup then says "this maintenance
mode was ours", which the after-restore hook needs to tell it from an
admin's.
"""

from __future__ import annotations

import time

from ..errors import ConfigError, TempFailure, UnavailableError
from .occ import Occ, Status
from .report import StepReport
from .sysconfig import SystemConfig

MARKER = "dbpipe.maintenance"
DEFAULT_SETTLE = 10.0
DEFAULT_WAIT = 60.0
POLL_INTERVAL = 0.5


def on_off(value: bool) -> str:
    return "on" if value else "off"


class Maintenance:
    def __init__(self, occ: Occ, report: StepReport, wait_timeout: float = DEFAULT_WAIT,
                 settle: float = DEFAULT_SETTLE):
        self.occ, self.report = occ, report
        self.config = SystemConfig(occ)
        self.wait_timeout, self.settle_time = wait_timeout, settle
        # the window users are shut out, as tightly as we can see it: from just
        # before occ's --on to the status that confirms --off (epoch seconds)
        self.on_at = self.off_at = 0.0

    def status(self) -> Status:
        status = self.occ.status()
        if not status.installed:
            raise ConfigError(f"Nextcloud in {self.occ.installation.root} is not installed")
        return status

    def marker_present(self) -> bool:
        return MARKER in self.config.values()

    def switch_on(self) -> None:
        """On, marked as ours, confirmed by occ status, then the settle time."""
        self.config.set(MARKER, True)
        self.on_at = time.time()
        self.occ.run("maintenance:mode", "--on")
        self.wait_for(True)
        self.require_marked()
        self.report.step("maintenance mode: on (confirmed by occ status)")
        self.settle()

    def require_marked(self) -> None:
        """config.php itself must now say 'maintenance' => true and carry our
        marker: a copy of config/ taken next tells an after-restore hook that
        this maintenance mode was ours.  occ status alone cannot tell: it
        merges *.config.php and NC_* overrides, and another writer may have
        rewritten config.php since."""
        values = self.config.file_values()
        missing = [f"'{key}' => true" for key in ("maintenance", MARKER) if values.get(key) is not True]
        if missing:
            raise TempFailure(f"{self.occ.installation.config_file} lacks {' and '.join(missing)} right after occ "
                              f"maintenance:mode --on, though occ status reports it on: another writer "
                              f"changed config.php meanwhile; run the job again")

    def switch_off(self) -> None:
        """Off and unmarked; harmless when it already is."""
        if self.status().maintenance:
            self.occ.run("maintenance:mode", "--off")
            self.wait_for(False)
            self.off_at = time.time()
            self.report.step("maintenance mode: off")
        else:
            self.report.step("maintenance mode: already off")
        self.remove_marker()

    def window_since(self, start: float) -> float:
        """The window in the one rounding both the job log line and the
        record use, so the two never disagree in their last digit."""
        return round(self.off_at - start, 3)

    def remove_marker(self) -> None:
        if self.marker_present():
            self.config.delete(MARKER)

    def wait_for(self, wanted: bool) -> Status:
        deadline = time.monotonic() + self.wait_timeout
        while True:
            status = self.status()
            if status.maintenance == wanted:
                return status
            if time.monotonic() >= deadline:
                raise UnavailableError(f"occ status still reports maintenance "
                                       f"{on_off(not wanted)} after {self.wait_timeout:g} s")
            time.sleep(POLL_INTERVAL)

    def settle(self) -> None:
        if self.settle_time > 0:
            self.report.step(f"waiting {self.settle_time:g} s for running requests and cron jobs")
            time.sleep(self.settle_time)
