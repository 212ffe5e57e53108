"""Snapshot mode: Nextcloud is closed for seconds, not for the whole job.

Inside the maintenance window the before hook takes a read-only snapshot of
every backed-up directory and starts the database dump; it ends the window
as soon as the dump tool's own read snapshot is fixed (the engine says when;
at the latest when the dump is done).  The dump then completes outside the
window into a verified stream file, the bpipe reader (dbpipe-dump
--from-snapshot) relays that file as /NEXTCLOUD/database.sql, and Bareos
reads the files from the snapshot view.  So files and database are both of
the window's moment, while users work on.

Everything created is recorded before it is created (snapshot.record); the
after hook removes it on success, failure and cancel, and a before hook
finds what a crashed run left and removes it first - only what the record
names and the filesystem confirms as ours.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field

from ..bareos import BareosJob
from ..dump import dump_to_file
from ..errors import DbpipeError, NoInputError
from ..log import log
from ..progress import human_bytes
from ..snapshot import view
from ..snapshot.record import RecordStore, SnapshotRecord
from ..target import Target
from ..transfer import relay
from .cycle import Hook
from .dumpfile import remove_dump
from .fileset import file_list
from .guard import shielded
from .installation import Installation, open_installation


def view_root(snapshot_root: str, installation: Installation) -> str:
    return os.path.join(snapshot_root, installation.key())


def record_store(state_dir: str, installation: Installation) -> RecordStore:
    return RecordStore(os.path.join(state_dir, f"nextcloud-{installation.key()}.snapshot.json"))


def stream_path(state_dir: str, installation: Installation) -> str:
    return os.path.join(state_dir, f"nextcloud-{installation.key()}.snapshot.sql")


@dataclass
class WindowClock:
    """Where the window's seconds went, for the job log (epoch seconds, like
    Maintenance.on_at and off_at)."""

    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, name: str, at: float | None = None) -> None:
        self.marks.append((name, time.time() if at is None else at))

    def breakdown(self) -> str:
        steps = [f"{name} {end - start:.2f} s"
                 for (_, start), (name, end) in zip(self.marks, self.marks[1:], strict=False)]
        return ", ".join(steps)


def take_window(hook: Hook, database: Target) -> None:
    """nextcloud-before-backup --snapshot, once hooks.before_backup has
    checked its options: maintenance on, settle, snapshots, database point,
    maintenance off; then the rest of the dump and the view, outside the window."""
    options, report = hook.options, hook.report
    store = record_store(options.state_dir, hook.installation)
    with hook.session() as deadline:
        remove_leftovers(hook, store)
        plan = view.plan(file_list(hook.installation).include,
                         view_root(options.snapshot_root, hook.installation), hook.installation.key())
        view.flush(plan)
        record = SnapshotRecord.new(plan.view, stream_path(options.state_dir, hook.installation))
        try:
            view.prepare(plan, record, store)
            state = hook.begin("maintenance")
        except BaseException:
            with shielded(reraise=False):
                _remove_quietly(record, store, report)
            raise
        clock, closed = WindowClock(), []

        def close_window() -> None:
            clock.mark("database point")
            with shielded():
                hook.resume(state)
            closed.append(True)
            if hook.maintenance.off_at:
                # what the hook printed as 'maintenance window' (saved with the record's next save)
                record.window = hook.maintenance.window_since(state.switched_on or clock.marks[0][1])
                clock.mark("off", hook.maintenance.off_at)
                report.step(f"window: {clock.breakdown()}")

        try:
            hook.quiesce(state)
            clock.mark("start", hook.maintenance.on_at or None)
            clock.mark("on + settle")
            view.take(plan, record)
            clock.mark("snapshots")
            report.step(f"snapshot: {len(record.snapshots)} read-only snapshot(s) of "
                        f"{', '.join(t.source for t in record.snapshots)}")
            trailer = dump_to_file(database, record.stream, job=BareosJob.from_environ(),
                                   on_snapshot=close_window, lock_timeout=hook.options.dump_lock_timeout)
            record.stream_ready = True
            view.identify(record, store)
            report.step(f"database: {human_bytes(trailer.bytes)} as of the window, verified "
                        f"(sha256 {trailer.sha256[:16]}...)")
            view.mount(plan, record, store)
            report.step(f"snapshot view: {len(record.binds)} read-only bind mount(s) below {plan.view}")
        except BaseException:
            if closed:
                deadline.disarm()
            else:
                hook.undo(state, deadline)
            with shielded(reraise=False):
                _remove_quietly(record, store, report)
            raise
    report.step("done: Bareos reads the snapshot; nextcloud-after-backup removes it")


def remove_leftovers(hook: Hook, store: RecordStore) -> None:
    """A record left by a run that never got its after hook: remove first."""
    record = store.load()
    if record is not None:
        hook.report.step(f"removing what an earlier run left: {record.describe()}")
        with shielded():
            remove(record, store, hook.report)


def remove(record: SnapshotRecord, store: RecordStore, report) -> None:
    """Bind mounts, snapshots and the stream file of one record; the record
    goes once all of it is gone, else it keeps what is left."""
    errors: list[DbpipeError] = view.teardown(record, report)
    if record.stream:
        try:
            for leftover in _unfinished(record.stream):
                remove_dump(leftover, report)
            remove_dump(record.stream, report)
            record.stream, record.stream_ready = "", False
        except DbpipeError as exc:
            errors.append(exc)
    if errors:
        store.save(record)
        for extra in errors[1:]:
            log.error("%s", extra)
        raise errors[0]
    store.clear()


def _unfinished(stream: str) -> list[str]:
    """Temporary files of a dump that was killed before it was complete
    (files.atomic_write names them .<name>.<random> beside it)."""
    directory, name = os.path.split(stream)
    return sorted(glob.glob(os.path.join(glob.escape(directory), f".{glob.escape(name)}.*")))


def _remove_quietly(record: SnapshotRecord, store: RecordStore, report) -> None:
    """On an error path the original error wins; a failed removal is logged
    and stays recorded for the after hook."""
    try:
        remove(record, store, report)
    except DbpipeError as exc:
        log.error("could not remove the snapshot: %s (record kept in %s)", exc, store.path)


def remove_window(hook: Hook) -> None:
    """What take_window left for the job: called by hooks.after_backup under
    the lock, whatever the job's outcome."""
    store = record_store(hook.options.state_dir, hook.installation)
    record = store.load()
    if record is None:
        return
    hook.report.step(f"removing the snapshot backup: {record.describe()}")
    with shielded():
        remove(record, store, hook.report)


def relay_window_stream(directory: str, state_dir: str, out_fd: int) -> None:
    """The bpipe reader in snapshot mode: the database as of the window."""
    installation = open_installation(directory)
    record = record_store(state_dir, installation).load()
    if record is None or not record.stream_ready or not record.stream:
        raise NoInputError(f"no database stream of a snapshot window for {installation.root}: "
                           f"nextcloud-before-backup --snapshot did not run for this job, or failed")
    try:
        handle = open(record.stream, "rb", buffering=0)
    except OSError as exc:
        raise NoInputError(f"cannot open the window's database stream {record.stream}: "
                           f"{exc.strerror}") from None
    with handle:
        trailer = relay(handle.fileno(), out_fd, record.stream)
    log.info("relayed the database stream of the snapshot window (%s, dumped from %s at %s)",
             human_bytes(trailer.bytes), trailer.database, trailer.created)
