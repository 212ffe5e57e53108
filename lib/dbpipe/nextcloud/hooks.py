"""The three job hooks: before-backup, after-backup and after-restore.

Each flow records what it is about to change before changing it, undoes its
own changes on any failure, signal or timeout, and leaves the record for the
next hook when even the undo fails, so nothing can get stuck for good.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

from ..dump import dump_to_file
from ..engines import RestoreOptions
from ..errors import ConfigError, DbpipeError, NoInputError, TempFailure, UnavailableError, UsageError
from ..bareos import BareosJob
from ..log import human_bytes, log
from ..restore import restore
from ..target import Target
from . import snapshot_backup
from .cycle import Hook, HookOptions, Scan
from .dumpfile import remove_dump
from .guard import shielded
from .maintenance import on_off
from .report import Report
from .state import HookState


# --- the flows ------------------------------------------------------------------

def before_backup(options: HookOptions, dump_to: str | None,
                  target: Callable[[], Target], report: Report) -> None:
    """Maintenance on (or services stopped), then optionally a verified dump file.
    In snapshot mode: closed only for a snapshot and the database's point."""
    if options.snapshot and (dump_to or options.services):
        raise UsageError("--snapshot works with maintenance mode and its own database stream: "
                         "leave out --dump-to and --stop-service")
    hook = Hook("nextcloud-before-backup", options, report)
    if options.snapshot:
        database = _dump_target(hook, snapshot_backup.stream_path(options.state_dir, hook.installation),
                                target)
        snapshot_backup.before_backup(hook, database)
        return
    database = _dump_target(hook, dump_to, target) if dump_to else None
    with hook.session() as deadline:
        state = hook.begin(options.method)
        try:
            hook.quiesce(state)
            if dump_to:
                trailer = dump_to_file(database, dump_to, job=BareosJob.from_environ())
                report.step(f"database dump: {dump_to} ({human_bytes(trailer.bytes)}, "
                            f"sha256 {trailer.sha256[:16]}...)")
        except BaseException:
            hook.undo(state, deadline)
            raise
    report.step("done: consistent until nextcloud-after-backup runs")


def after_backup(options: HookOptions, dump_to: str | None, keep_dump: bool,
                 report: Report) -> None:
    """Put back what the before hook recorded; remove the dump file."""
    hook = Hook("nextcloud-after-backup", options, report)
    errors: list[DbpipeError] = []
    with hook.session():
        try:
            _finish_cycle(hook)
        except DbpipeError as exc:
            errors.append(exc)
        try:
            snapshot_backup.after_backup(hook)
        except DbpipeError as exc:
            errors.append(exc)
        if dump_to and not keep_dump:
            try:
                remove_dump(dump_to, report)
            except DbpipeError as exc:
                errors.append(exc)
    for extra in errors[1:]:
        log.error("%s", extra)
    if errors:
        raise errors[0]
    report.step("done")


def _finish_cycle(hook: Hook) -> None:
    state = hook.store.load()
    if state is None and hook.options.method == "maintenance" and hook.maintenance_now()[1]:
        state = HookState(hook.installation.root, "maintenance", False, hook="our marker in config.php")
    if state is None:
        hook.report.step("nothing to put back: no record of nextcloud-before-backup")
        return
    hook.report.step(f"putting back: {state.describe()}")
    with shielded():
        hook.resume(state)


def after_restore(options: HookOptions, dump_from: str | None, target: Callable[[], Target],
                  scan: Scan, restore_options: RestoreOptions, report: Report) -> None:
    """Maintenance on, atomic restore, new data fingerprint, previous state, files:scan."""
    hook = Hook("nextcloud-after-restore", options, report)
    database = target() if dump_from else None
    with _open_dump(dump_from) as source, hook.session() as deadline:
        state = _begin_restore(hook, scan)
        try:
            hook.quiesce(state)
            if source is not None:
                restore(database, source.fileno(), restore_options)
                report.step(f"database restored from {dump_from} ({database.describe()})")
            _new_fingerprint(hook)
        except BaseException:
            hook.undo(state, deadline)
            raise
        with shielded():
            hook.resume(state)
        if scan:
            _scan(hook, scan)
        _final_check(hook, state.maintenance_before)
    report.step("done")


def _begin_restore(hook: Hook, scan: Scan) -> HookState:
    state = hook.store.load()
    if state is not None and state.method == "service":
        raise TempFailure(f"an unfinished record says: {state.describe()}; run "
                          f"nextcloud-after-backup {hook.installation.root} first")
    previous = state.maintenance_before if state else hook.previous_maintenance()
    if previous and scan:
        raise UsageError("maintenance mode was on before (an admin's) and stays on, but files:scan "
                         "needs it off: turn it off first or leave out --scan-user/--scan-all")
    return hook.begin("maintenance", previous)


def _new_fingerprint(hook: Hook) -> None:
    """While still in maintenance mode: sync clients must not see the restored
    state before they know it is a restored one."""
    result = hook.occ.run("maintenance:data-fingerprint")
    value = result.stdout.strip().rsplit(" ", 1)[-1] if result.stdout.strip() else "?"
    hook.report.step(f"data fingerprint: updated to {value[:32]}")


def _scan(hook: Hook, scan: Scan) -> None:
    """files:scan is an app command: it runs only with maintenance mode off."""
    args = ["--all"] if scan.all_users else ["--", *scan.users]
    result = hook.occ.run("files:scan", *args)
    unknown = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("Unknown user")]
    if unknown:
        raise NoInputError(f"occ files:scan: {unknown[0]}")
    hook.report.step(f"files:scan: {scan.describe()} done")


def _final_check(hook: Hook, maintenance_expected: bool) -> None:
    status = hook.maintenance.status()
    hook.report.step(f"occ status: installed, {status.describe()}")
    if status.maintenance != maintenance_expected:
        raise UnavailableError(f"occ status reports maintenance {on_off(status.maintenance)}, "
                               f"expected {on_off(maintenance_expected)}")
    if status.needs_db_upgrade:
        raise ConfigError("Nextcloud reports that the database needs 'occ upgrade': the restored "
                          "database and the installed code are not from the same version")


# --- files ------------------------------------------------------------------------

def _dump_target(hook: Hook, path: str, target: Callable[[], Target]) -> Target:
    """The database to dump; the dump file must not be reachable through the web root."""
    directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    root = hook.installation.root
    if os.path.commonpath([directory, root]) == root:
        what = (f"--state-dir {os.path.dirname(path)}" if hook.options.snapshot
                else f"--dump-to {path}")
        raise UsageError(f"{what} is inside the Nextcloud directory {root}: "
                         f"choose a place outside it")
    return target()


@contextlib.contextmanager
def _open_dump(path: str | None):
    if path is None:
        yield None
        return
    try:
        handle = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise NoInputError(f"dump file {path} does not exist") from None
    except OSError as exc:
        raise NoInputError(f"cannot open dump file {path}: {exc.strerror}") from None
    with handle:
        yield handle
