"""The snapshot view: <view root>/<original absolute path> for every backed-up
directory, each a read-only bind mount of the same directory in a snapshot.

Why a view and not the snapshots themselves: a FileSet is expanded before
the job's Before script runs, so the paths it names must be known before any
snapshot exists, and one `StripPath = N` must turn every one of them back
into the original path for the catalog.  <view root>/<path> does both, for
any number of snapshots in any places.  Each backed-up directory is its own
mount, so Bareos' OneFS (on by default) reads it whole and stops exactly
where the live tree would stop too.

plan() checks everything that can be checked before Nextcloud is closed;
take() runs inside the window; mount() and teardown() outside it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from .. import stamps
from ..errors import CantCreateError, ConfigError, DbpipeError
from . import mounts, provider_for, provider_named
from .provider import Volume
from .record import Bind, RecordStore, SnapshotRecord, Taken


@dataclass(frozen=True)
class Part:
    """One backed-up directory: which volume holds it, and where below its root."""

    path: str
    volume: Volume
    relative: str


@dataclass(frozen=True)
class Plan:
    view: str
    parts: tuple[Part, ...]

    @property
    def volumes(self) -> list[Volume]:
        """Each distinct volume once, in the order the parts name them."""
        seen: dict[str, Volume] = {}
        for part in self.parts:
            seen.setdefault(part.volume.root, part.volume)
        return list(seen.values())

    def view_path(self, path: str) -> str:
        return view_path(self.view, path)


def view_path(view: str, path: str) -> str:
    """Where path appears in the view; StripPath = depth(view) gives path back."""
    return os.path.join(view, os.path.abspath(path).lstrip("/"))


def depth(view: str) -> int:
    """The StripPath value for a view root: its number of path components."""
    return len([part for part in os.path.abspath(view).split("/") if part])


def plan(paths: list[str], view: str, key: str) -> Plan:
    """Which volume holds each path, refusing what a snapshot would silently
    miss: another filesystem, a separate mount or a nested volume below it."""
    table = mounts.mount_table()
    parts = []
    for path in paths:
        mount = mounts.mount_of(path, table)
        provider = provider_for(mount, path)
        for inner in mounts.mounts_below(path, table):
            raise ConfigError(f"{inner.point} is a separate mount below {path}: its snapshot "
                              f"would not contain it")
        volume = provider.volume(path, mount, key)
        relative = os.path.relpath(os.path.realpath(path), volume.root)
        parts.append(Part(os.path.realpath(path), volume, "" if relative == "." else relative))
    result = Plan(view, tuple(parts))
    for volume in result.volumes:
        _refuse_nested(result, volume, table)
    return result


def _refuse_nested(plan_: Plan, volume: Volume, table) -> None:
    mount = mounts.mount_of(volume.root, table)
    inside = [part.path for part in plan_.parts if part.volume.root == volume.root]
    provider = provider_for(mount, volume.root)
    for nested in provider.nested(volume, mount):
        if provider.holds_snapshots(nested):
            continue    # snapshots of dbpipe runs, which the FileSet leaves out
        if any(nested == p or nested.startswith(p.rstrip("/") + "/") for p in inside):
            raise ConfigError(f"{nested} is a nested {provider.kind} below a backed-up "
                              f"directory: its snapshot would be an empty directory")


# --- inside the window --------------------------------------------------------------

def flush(plan_: Plan) -> None:
    """Before the window: what the filesystem still has to write, it writes now."""
    table = mounts.mount_table()
    for volume in plan_.volumes:
        provider_for(mounts.mount_of(volume.root, table), volume.root).flush(volume)


def prepare(plan_: Plan, record: SnapshotRecord, store: RecordStore) -> None:
    """Before the window: where each snapshot will go, recorded with its
    source's id - so even a snapshot whose own id never got recorded is
    recognised as ours (its parent is that source, it is read-only, it is
    where we said)."""
    stamp = stamps.for_name()
    for index, volume in enumerate(plan_.volumes):
        _make_private_directory(volume.home)
        destination = _free_name(os.path.join(volume.home, f"{index}-{stamp}"))
        record.snapshots.append(Taken(volume.provider, volume.root, volume.uuid, destination))
    store.save(record)


def _free_name(path: str) -> str:
    """path, or path-1, path-2, ...: whatever is there (a snapshot we left
    alone, say) is never replaced."""
    candidate, number = path, 0
    while os.path.lexists(candidate):
        number += 1
        candidate = f"{path}-{number}"
    return candidate


def take(plan_: Plan, record: SnapshotRecord) -> None:
    """Inside the window: one snapshot per volume, nothing else."""
    volumes = {volume.root: volume for volume in plan_.volumes}
    for taken in record.snapshots:
        provider_named(taken.provider).create(volumes[taken.source], taken.path)


def identify(record: SnapshotRecord, store: RecordStore) -> None:
    """After the window: each snapshot's own id, the surest mark of ours."""
    for taken in record.snapshots:
        info = provider_named(taken.provider).info(taken.path)
        taken.uuid = info.uuid if info else ""
    store.save(record)


def mount(plan_: Plan, record: SnapshotRecord, store: RecordStore) -> None:
    """The view: each backed-up directory bound read-only from its snapshot."""
    by_root = {taken.source: taken for taken in record.snapshots}
    _make_private_directory(plan_.view)
    for part in plan_.parts:
        source = os.path.join(by_root[part.volume.root].path, part.relative)
        target = plan_.view_path(part.path)
        os.makedirs(target, mode=0o755, exist_ok=True)
        record.binds.append(Bind(source, target))
        store.save(record)
        mounts.bind_readonly(source, target)


def _make_private_directory(path: str) -> None:
    """path and its parent 0700 (root only): a snapshot is yesterday's state."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        for directory in (os.path.dirname(path), path):
            if os.stat(directory).st_mode & 0o777 != 0o700:
                os.chmod(directory, 0o700)
    except OSError as exc:
        raise CantCreateError(f"cannot create {path}: {exc.strerror}") from None


# --- removing ---------------------------------------------------------------------------

def teardown(record: SnapshotRecord, report) -> list[DbpipeError]:
    """Unmount and delete what the record names - only where the mount table
    and the provider confirm it is ours - and take it out of the record.
    Whatever could not be removed stays in the record (for the next run);
    the errors are returned."""
    errors: list[DbpipeError] = []
    busy: set[str] = set()
    directories = [(bind.target, record.view) for bind in record.binds]
    directories += [(os.path.dirname(t.path), os.path.dirname(os.path.dirname(t.path)))
                    for t in record.snapshots]
    for bind in list(reversed(record.binds)):
        try:
            _unbind(bind, report)
            record.binds.remove(bind)
        except DbpipeError as exc:
            errors.append(exc)
            busy.update(t.path for t in record.snapshots if _inside(bind.source, t.path))
    for taken in list(reversed(record.snapshots)):
        if taken.path in busy:
            continue
        try:
            _delete(taken, report)
            record.snapshots.remove(taken)
        except DbpipeError as exc:
            errors.append(exc)
    _remove_empty_directories(directories)
    return errors


def _unbind(bind: Bind, report) -> None:
    if not mounts.is_mounted(bind.target):
        return
    if not _same_directory(bind.source, bind.target):
        report.step(f"snapshot view: {bind.target} is mounted, but not from our snapshot: left alone")
        return
    mounts.unmount(bind.target)
    report.step(f"snapshot view: unmounted {bind.target}")


def _same_directory(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _delete(taken: Taken, report) -> None:
    provider = provider_named(taken.provider)
    info = provider.info(taken.path)
    if info is None:
        if os.path.lexists(taken.path):
            report.step(f"snapshot: {taken.path} is no {taken.provider} snapshot: left alone")
        return
    ours = info.readonly and ((taken.uuid and info.uuid == taken.uuid)
                              or (not taken.uuid and taken.source_uuid
                                  and info.parent_uuid == taken.source_uuid))
    if not ours:
        report.step(f"snapshot: {taken.path} is not the snapshot we took: left alone")
        return
    provider.delete(taken.path)
    report.step(f"snapshot: removed {taken.path}")


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _remove_empty_directories(directories: list[tuple[str, str]]) -> None:
    """The view's mount points and the snapshot directories, as far as they are
    empty: rmdir never removes anything else."""
    for path, stop in directories:
        _rmdir_up(path, stop)


def _rmdir_up(path: str, stop: str) -> None:
    """rmdir path and its parents up to and including stop, while they are empty."""
    stop = stop.rstrip("/")
    while _inside(path, stop):
        with contextlib.suppress(OSError):
            os.rmdir(path)
        if os.path.exists(path) or path == stop:
            return
        path = os.path.dirname(path)

