"""The three job hooks: before-backup, after-backup and after-restore.

Each flow records what it is about to change before changing it, undoes its
own changes on any failure, signal or timeout, and leaves the record for the
next hook when even the undo fails, so nothing can get stuck for good.  A
restore that has changed data is the exception: it stays closed (see
cycle.Hook.protecting) until nextcloud-after-restore finishes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Callable

from ..dump import dump_to_file
from ..engines import RestoreOptions
from ..bareos import BareosJob, JobLog
from ..errors import ConfigError, DataError, DbpipeError, NoInputError, UnavailableError, UsageError
from ..files import open_input
from ..log import log
from ..progress import human_bytes
from ..restore import restore
from ..target import Target
from . import restored, snapshot_backup
from .config import data_directory, read_system_config, with_environment
from .cycle import Hook, HookOptions, Scan
from .dumpfile import refuse_foreign, remove_dump
from .guard import shielded
from .installation import open_installation
from .maintenance import on_off
from .report import StepReport
from .state import HookState


# --- the flows ------------------------------------------------------------------

def before_backup(options: HookOptions, dump_to: str | None,
                  target: Callable[[], Target], report: StepReport) -> None:
    """Maintenance on (or services stopped), then optionally a verified dump file.
    In snapshot mode: closed only for a snapshot and the database's point."""
    if options.snapshot and (dump_to or options.services):
        raise UsageError("--snapshot works with maintenance mode and its own database stream: "
                         "leave out --dump-to and --stop-service")
    hook = Hook("nextcloud-before-backup", options, report)
    if options.snapshot:
        database = _dump_target(hook, snapshot_backup.stream_path(options.state_dir, hook.installation),
                                target)
        snapshot_backup.take_window(hook, database)
        return
    database = _dump_target(hook, dump_to, target) if dump_to else None
    if dump_to:
        refuse_foreign(dump_to, database)
    with hook.session() as deadline:
        state = hook.begin(options.method)
        with hook.protecting(state, deadline):  # nothing unfinished: any failure puts back
            hook.quiesce(state)
            if dump_to:
                trailer = dump_to_file(database, dump_to, job=BareosJob.from_environ(),
                                       lock_timeout=options.dump_lock_timeout)
                report.step(f"database dump: {dump_to} ({human_bytes(trailer.bytes)}, "
                            f"sha256 {trailer.sha256[:16]}...)")
    report.step("done: consistent until nextcloud-after-backup runs")


def after_backup(options: HookOptions, dump_to: str | None, keep_dump: bool,
                 report: StepReport) -> None:
    """Put back what the before hook recorded; remove the dump file."""
    hook = Hook("nextcloud-after-backup", options, report)
    errors: list[DbpipeError] = []
    with hook.session():
        try:
            _finish_cycle(hook)
        except DbpipeError as exc:
            errors.append(exc)
        try:
            snapshot_backup.remove_window(hook)
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
    hook.refuse_if_unfinished(state)
    if state is None and hook.options.method == "maintenance" and hook.maintenance_now()[1]:
        state = HookState(hook.installation.root, "maintenance", False, hook="our marker in config.php")
    if state is None:
        hook.report.step("nothing to put back: no record of nextcloud-before-backup")
        return
    hook.report.step(f"putting back: {state.describe()}")
    with shielded():
        hook.resume(state)


def after_restore(options: HookOptions, dump_from: str | None, target: Callable[[], Target],
                  scan: Scan, restore_options: RestoreOptions, report: StepReport,
                  bareos_job: str | None = None) -> None:
    """Maintenance on, atomic restore, new data fingerprint, previous state, files:scan.

    From the first change of data on - the load passing its point of no
    return, or a config/ that came back from a backup - a failure leaves
    maintenance mode on and names the command that finishes the restore."""
    if bareos_job:
        record = JobLog(bareos_job)
        whole = (_dump_file_restored(record, dump_from, options) if dump_from
                 else _database_restored(record, options))
        if not whole:
            _after_files_restore(options, record, scan, report)
            return
    hook = Hook("nextcloud-after-restore", options, report)
    database = target() if dump_from else None
    with _open_dump(dump_from) as source, hook.session() as deadline:
        with hook.restoring(deadline, hook.finish_command(dump_from, scan), scan) as live:
            if source is not None:
                restore(database, source.fileno(), dataclasses.replace(restore_options, live=live))
                report.step(f"database restored from {dump_from} ({database.describe()})")
        _require_current_schema(hook, scan)
        if scan:
            _scan(hook, scan)
        _final_check(hook, hook.restore_state.maintenance_before)
    report.step("done")


@contextlib.contextmanager
def closed_for_restore(name: str, options: HookOptions):
    """Nextcloud's restore cycle around another program's restore of its
    database (dbpipe-mariabackup-restore copy-back): yields the LiveChange
    that restore reports to."""
    hook = Hook(name, options, StepReport())
    with hook.session() as deadline, hook.restoring(deadline, hook.finish_command()) as live:
        yield live


def _database_restored(record: JobLog, options: HookOptions) -> bool:
    """bareos-fd runs a RunsOnSuccess script by its own status, which neither a
    failing bpipe writer nor a volume error that stops the restore before the
    writer always spoils.  True when the writer of this very job loaded the
    database; False when it never ran because the job restored files only
    (one file, one folder: no database stream selected).  Otherwise change
    nothing - a restored config/ keeps Nextcloud in maintenance mode - and say
    what finishes the restore.  A job whose writer never ran counts as files
    only when its start mark is there (restore-nextcloud's Before script) and
    config/ did not come back: a whole backup restored without its database
    stream must not reopen Nextcloud."""
    outcomes = record.outcomes("dbpipe-restore")
    failed = [outcome for outcome in outcomes if outcome != "exit 0"]
    if outcomes and not failed:
        return True
    since = record.begun_ns()
    config_dir = open_installation(options.directory, options.php).config_dir
    if not outcomes and since is not None and not restored.any_restored(config_dir, since):
        return False
    what = f"failed ({failed[-1]})" if failed else "did not run (no database stream restored)"
    hint = ("" if outcomes or since is not None else
            "; to restore files only, give the job the Before script 'dbpipe-joblog --begin %i'")
    raise DataError(f"the database restore of Bareos job {record.job_id} {what}: Nextcloud is left as it "
                    f"is (closed if config/ was restored); restore the database again, then run "
                    f"nextcloud-after-restore {options.directory}{hint}")


def _dump_file_restored(record: JobLog, dump_from: str, options: HookOptions) -> bool:
    """Method 4.2 (the database comes back as a dump file): the database is
    part of this restore when the job put the dump file back.  A job that put
    back neither it nor config/ restored files only (one file, one folder).
    config/ without the dump file is a whole backup restored without its
    database, which must not reopen Nextcloud.  Without the start mark
    (restore-nextcloud-dumpfile's Before script) the dump file is loaded, as
    it always was."""
    since = record.begun_ns()
    if since is None or restored.restored_since(dump_from, since):
        return True
    config_dir = open_installation(options.directory, options.php).config_dir
    if not restored.any_restored(config_dir, since):
        return False
    raise DataError(f"Bareos job {record.job_id} restored config/ but not the dump file {dump_from}: Nextcloud "
                    f"is left as it is (closed); restore the dump file too, then run nextcloud-after-restore "
                    f"{options.directory} --dump-from {dump_from}")


def _after_files_restore(options: HookOptions, record: JobLog, scan: Scan, report: StepReport) -> None:
    """A restore of files without the database (one file, one folder): the
    database stays as it is and maintenance mode as it was; files:scan tells
    Nextcloud about the files of the users the restored paths belong to."""
    hook = Hook("nextcloud-after-restore", options, report)
    with hook.session():
        hook.refuse_if_unfinished(hook.store.load())
        values = with_environment(read_system_config(hook.installation, options.command_timeout))
        found = restored.restored_by_user(data_directory(values, hook.installation.root), record.begun_ns())
        restored_files = ", ".join(f"{user}: {count} path{'s' if count > 1 else ''}"
                                   for user, count in found.items())
        report.step(f"Bareos job {record.job_id} restored no database stream, the database is left as it is; "
                    f"user files restored: {restored_files or 'none'}")
        scan = scan or Scan(tuple(found))
        if not scan:
            report.step("no files:scan needed")
        elif hook.maintenance.status().maintenance:
            report.step(f"maintenance mode is on and stays on, files:scan needs it off: once it is off, "
                        f"run occ files:scan {'--all' if scan.all_users else '-- ' + ' '.join(scan.users)}")
        else:
            _scan(hook, scan)
    report.step("done")


def _scan(hook: Hook, scan: Scan) -> None:
    """files:scan is an app command: it runs only with maintenance mode off."""
    args = ["--all"] if scan.all_users else ["--", *scan.users]
    result = hook.occ.run("files:scan", *args)
    unknown = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("Unknown user")]
    if unknown:
        raise NoInputError(f"occ files:scan: {unknown[0]}")
    hook.report.step(f"files:scan: {scan.describe()} done")


def _require_current_schema(hook: Hook, scan: Scan) -> None:
    """A database older than the code: Nextcloud loads no apps (so no
    files:scan) until 'occ upgrade' has run; say so before trying."""
    if hook.maintenance.status().needs_db_upgrade:
        raise ConfigError("Nextcloud reports that the database needs 'occ upgrade': the restored "
                          "database and the installed code are not from the same version"
                          + ("; files:scan not run (occ offers no app commands until then)" if scan else ""))


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
    with open_input(path) as handle:
        yield handle
