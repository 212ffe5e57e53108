"""One hook run on one installation: its occ, its record and lock, and the
two halves of every cycle - change (maintenance on, services stopped) and
put back.

A record is saved before anything changes and deleted only once everything
is put back, so a hook that dies at any point leaves enough for the next
after hook; an admin's maintenance mode (or a service the admin had
stopped) is recorded as such and never changed back by us.

The one exception to "put back on failure": once a restore has changed data
(the record says so first), a failure leaves maintenance mode on and names
the command that finishes the restore (keep_closed); no backup hook ends it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass

from .. import stamps
from ..engines.base import DUMP_LOCK_TIMEOUT, LiveChange
from ..errors import DbpipeError, TempFailure, UsageError
from ..log import log
from ..snapshot import DEFAULT_ROOT as DEFAULT_SNAPSHOT_ROOT
from .guard import Deadline, shielded
from .installation import open_installation
from .maintenance import DEFAULT_SETTLE, DEFAULT_WAIT, Maintenance
from .occ import DEFAULT_TIMEOUT, Occ
from .report import StepReport
from ..services import ServiceManager
from .state import DEFAULT_STATE_DIR, HookState, StateStore

RESTORE_COMMAND = "nextcloud-after-restore"


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
    # before-backup's own dump (--dump-to, --snapshot): Nextcloud stays closed while it waits for a lock
    dump_lock_timeout: float = DUMP_LOCK_TIMEOUT

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

    def __init__(self, name: str, options: HookOptions, report: StepReport):
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
    def begin(self, method: str, previous: bool | None = None,
              continue_restore: bool = False) -> HookState:
        """The record of this cycle, saved before anything changes.  Only a
        restore may continue a half-finished restore's record."""
        state = self.store.load()
        if state is not None:
            if not continue_restore:
                self.refuse_if_unfinished(state)
            if state.method != method:
                raise TempFailure(f"an unfinished record says: {state.describe()}; run "
                                  f"nextcloud-after-backup {self.installation.root} first")
            self.report.step(f"keeping an unfinished record: {state.describe()}")
            return state
        state = HookState(self.installation.root, method, hook=self.name, since=stamps.record())
        if method == "maintenance":
            state.maintenance_before = self.previous_maintenance() if previous is None else previous
        else:
            manager = self.service_manager()
            state.manager, state.manager_style = manager.program, manager.style
        self.store.save(state)
        return state

    def begin_restore(self, finish: str, scan: Scan | None = None) -> HookState:
        """The record of a restore.  Maintenance mode found on with our marker
        and no record means config/ came back from a backup: data has changed
        already, so the record says unfinished (with finish) from the start."""
        state = self.store.load()
        if state is not None and state.method == "service":
            raise TempFailure(f"an unfinished record says: {state.describe()}; run "
                              f"nextcloud-after-backup {self.installation.root} first")
        files_restored = False
        if state is None:
            on, ours = self.maintenance_now()
            previous, files_restored = on and not ours, ours
        else:
            previous = state.maintenance_before
        if previous and scan:
            raise UsageError("maintenance mode was on before (an admin's) and stays on, but files:scan "
                             "needs it off: turn it off first or leave out --scan-user/--scan-all")
        state = self.begin("maintenance", previous, continue_restore=True)
        if files_restored and not state.unfinished:
            self.report.step("config/ came back from a backup: Nextcloud stays in maintenance mode "
                             "until the restore is finished")
            self.mark_unfinished(state, finish)
        return state

    def new_fingerprint(self) -> None:
        """While still in maintenance mode: sync clients must not see the
        restored state before they know it is a restored one."""
        value = self.maintenance.config.new_fingerprint()
        self.report.step(f"data fingerprint: updated to {value[:32]}")

    def refuse_if_unfinished(self, state: HookState | None) -> None:
        if state is not None and state.unfinished:
            raise TempFailure(f"a restore of {self.installation.root} is half-finished and Nextcloud "
                              f"stays in maintenance mode; finish it first with: {state.unfinished}")

    def finish_command(self, dump_from: str | None = None, scan: Scan | None = None) -> str:
        """The command line that finishes a half-finished restore here."""
        argv = [RESTORE_COMMAND, self.installation.root]
        argv += ["--state-dir", self.options.state_dir] if self.options.state_dir != DEFAULT_STATE_DIR else []
        argv += ["--php", self.options.php] if self.options.php else []
        argv += ["--dump-from", os.path.abspath(dump_from)] if dump_from else []
        if scan and scan.all_users:
            argv.append("--scan-all")
        for user in scan.users if scan else ():
            argv += ["--scan-user", user]
        return shlex.join(argv)

    def mark_unfinished(self, state: HookState, finish: str) -> None:
        """Durably, before data changes: from now on only `finish` ends
        maintenance mode.  If saving fails, nothing was changed."""
        before, state.unfinished = state.unfinished, finish
        try:
            self.store.save(state)
        except BaseException:
            state.unfinished = before
            raise

    def live_change(self, state: HookState, finish: str) -> LiveChange:
        """What a restore reports its point of no return to: the record says
        unfinished before data changes, and what it said before once a
        failure provably put the data back."""
        before = state.unfinished
        return LiveChange(on_begin=lambda: self.mark_unfinished(state, finish),
                          on_revert=lambda: self.mark_unfinished(state, before))

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
                                 f"{self.maintenance.window_since(state.switched_on):.1f} s")
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

    @contextlib.contextmanager
    def restoring(self, deadline: Deadline, finish: str, scan: Scan | None = None):
        """The one restore cycle (nextcloud-after-restore, a copy-back): the
        record, Nextcloud closed, and the LiveChange the restore reports its
        point of no return to, yielded; once the data is in, a new data
        fingerprint before the previous state is put back, uninterrupted.  The
        record is self.restore_state (its maintenance_before is what the final
        check expects)."""
        state = self.restore_state = self.begin_restore(finish, scan)
        with self.protecting(state, deadline):
            self.quiesce(state)
            yield self.live_change(state, finish)
            remaining = self.finish_command(None, scan)   # the data is in: no dump needed to finish
            if state.unfinished and state.unfinished != remaining:
                self.mark_unfinished(state, remaining)
            self.new_fingerprint()
            self.mark_unfinished(state, "")  # finished: from here on a failure puts back
        with shielded():
            self.resume(state)

    @contextlib.contextmanager
    def protecting(self, state: HookState, deadline: Deadline):
        """Any failure in the block: put back the previous state - unless a
        restore has changed data by then, which must stay closed."""
        try:
            yield
        except BaseException as exc:
            if not state.unfinished:
                self.undo(state, deadline)
                raise
            raise self.keep_closed(state, deadline, exc) from None

    def keep_closed(self, state: HookState, deadline: Deadline, exc: BaseException) -> BaseException:
        """Leave maintenance mode on and the record in place; the error line
        says so and names the command that finishes the job."""
        deadline.disarm()
        self.report.step("failed after the restore changed data: maintenance mode stays on")
        note = (f"the restore is half-finished, so Nextcloud stays in maintenance mode; "
                f"finish it with: {state.unfinished}")
        if isinstance(exc, DbpipeError):
            return DbpipeError(f"{exc}; {note}", exc.code)
        log.error("%s", note)
        return exc

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
