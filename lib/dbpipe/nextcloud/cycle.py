"""One hook run on one installation: its occ, its record and lock, and the
two halves of every cycle - change (maintenance on, services stopped) and
put back.

A record is saved before anything changes and deleted only once everything
is put back, so a hook that dies at any point leaves enough for the next
after hook; an admin's maintenance mode (or a service the admin had
stopped) is recorded as such and never changed back by us.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ..errors import DbpipeError, TempFailure
from ..log import log
from ..snapshot import DEFAULT_ROOT as DEFAULT_SNAPSHOT_ROOT
from .guard import Deadline, shielded
from .installation import open_installation
from .maintenance import DEFAULT_SETTLE, DEFAULT_WAIT, Maintenance
from .occ import DEFAULT_TIMEOUT, Occ
from .report import Report
from ..services import ServiceManager
from .state import DEFAULT_STATE_DIR, HookState, StateStore, now


@dataclass(frozen=True)
class HookOptions:
    directory: str
    php: str | None = None
    state_dir: str = DEFAULT_STATE_DIR
    settle: float = DEFAULT_SETTLE
    wait_timeout: float = DEFAULT_WAIT
    command_timeout: float = DEFAULT_TIMEOUT
    timeout: float = 0                   # the whole hook; 0 = none
    services: tuple[str, ...] = ()       # method 4.1 instead of maintenance mode
    service_manager: str | None = None
    snapshot: bool = False               # before-backup: close only for a snapshot
    snapshot_root: str = DEFAULT_SNAPSHOT_ROOT

    @property
    def method(self) -> str:
        return "service" if self.services else "maintenance"


@dataclass(frozen=True)
class Scan:
    """files:scan after maintenance mode is off: some users, or all."""

    users: tuple[str, ...] = ()
    all_users: bool = False

    def __bool__(self) -> bool:
        return bool(self.users or self.all_users)

    def describe(self) -> str:
        return "all users" if self.all_users else ", ".join(self.users)


class Hook:
    """What every flow shares: the installation, occ, the record, the lock."""

    def __init__(self, name: str, options: HookOptions, report: Report):
        self.name, self.options, self.report = name, options, report
        self.installation = open_installation(options.directory, options.php)
        self.occ = Occ(self.installation, options.command_timeout)
        self.store = StateStore(options.state_dir, self.installation)
        self.maintenance = Maintenance(self.occ, report, options.wait_timeout, options.settle)
        report.step(f"{name}: {self.installation.root}")

    @contextlib.contextmanager
    def session(self):
        """The installation's lock and the hook's deadline."""
        with self.store.locked(), Deadline(self.options.timeout) as deadline:
            yield deadline

    def maintenance_now(self) -> tuple[bool, bool]:
        """(on, ours): on *and* marked means ours, e.g. left by a before hook
        that never got its after hook, or a config/ restored from a backup."""
        on = self.maintenance.status().maintenance
        return on, on and self.maintenance.marker_present()

    def previous_maintenance(self) -> bool:
        """Whether the admin had maintenance mode on before us."""
        on, ours = self.maintenance_now()
        return on and not ours

    # --- the record -------------------------------------------------------
    def begin(self, method: str, previous: bool | None = None) -> HookState:
        """The record of this cycle, saved before anything changes."""
        state = self.store.load()
        if state is not None:
            if state.method != method:
                raise TempFailure(f"an unfinished record says: {state.describe()}; run "
                                  f"nextcloud-after-backup {self.installation.root} first")
            self.report.step(f"keeping an unfinished record: {state.describe()}")
            return state
        state = HookState(self.installation.root, method, hook=self.name, since=now())
        if method == "maintenance":
            state.maintenance_before = self.previous_maintenance() if previous is None else previous
        else:
            manager = self.service_manager()
            state.manager, state.manager_style = manager.program, manager.style
        self.store.save(state)
        return state

    def service_manager(self, state: HookState | None = None) -> ServiceManager:
        if state is not None and state.manager:
            return ServiceManager(state.manager, state.manager_style, self.options.command_timeout)
        return ServiceManager.detect(self.options.service_manager, self.options.command_timeout)

    # --- change and put back ------------------------------------------------
    def quiesce(self, state: HookState) -> None:
        if state.method == "service":
            self.stop_services(state)
        elif self.maintenance.status().maintenance:
            who = "an admin's, stays on" if state.maintenance_before else "ours"
            self.report.step(f"maintenance mode: already on ({who})")
        else:
            self.maintenance.switch_on()
            state.switched_on = self.maintenance.on_at
            self.store.save(state)

    def stop_services(self, state: HookState) -> None:
        manager = self.service_manager(state)
        for name in self.options.services:
            if name in state.services:
                self.report.step(f"service {name}: stopped earlier by us")
            elif not manager.is_active(name):
                self.report.step(f"service {name}: not running, left alone")
            else:
                state.services.append(name)
                self.store.save(state)
                manager.stop(name)
                self.report.step(f"service {name}: stopped")
        self.maintenance.settle()

    def resume(self, state: HookState) -> None:
        """Put back what the record says, then forget it."""
        if state.method == "service":
            self.start_services(state)
        elif state.maintenance_before:
            self.report.step("maintenance mode: was on before, stays on")
        else:
            self.maintenance.switch_off()
            if state.switched_on and self.maintenance.off_at:
                self.report.step(f"maintenance window: "
                                 f"{self.maintenance.off_at - state.switched_on:.1f} s")
        self.store.clear()

    def start_services(self, state: HookState) -> None:
        manager, errors = self.service_manager(state), []
        for name in reversed(state.services):
            try:
                manager.start(name)
                self.report.step(f"service {name}: started")
            except DbpipeError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def undo(self, state: HookState, deadline: Deadline) -> None:
        """On an error path: put things back, uninterrupted; keep the record
        for the after hook if even that fails."""
        deadline.disarm()
        self.report.step("failed: putting back the previous state")
        with shielded(reraise=False):
            try:
                self.resume(state)
            except DbpipeError as exc:
                log.error("could not put back the previous state: %s (record kept in %s)",
                          exc, self.store.path)
