"""dbpipe-dump: stream a consistent, self-verifying dump to a file descriptor."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

from . import stamps
from .engines import get_engine
from .engines.base import DUMP_LOCK_TIMEOUT
from .errors import DataError
from .files import atomic_write, sync_if_file
from .bareos import BareosJob
from .log import log
from .progress import Progress, human_bytes
from .process import Child
from .safety import refuse_dump
from .stream import Header, StreamWriter, Trailer
from .target import Target
from .transfer import copy_dump
from .verify import verify


class SnapshotWatch:
    """Calls back once the dump tool's read snapshot is fixed: as soon as its
    output proves it (Engine.snapshot_fixed), or else when the dump is done.

    The proof comes with the first table, so only the dump's first LOOK_AT
    bytes are searched: an engine that never proves it (SQLite) or a dump
    without the marker costs the copy loop nothing after that."""

    KEPT = 256          # bytes carried between chunks, so a marker cut in two is still found
    LOOK_AT = 1 << 20

    def __init__(self, engine, callback: Callable[[], None]):
        self.engine, self.callback = engine, callback
        self.fired = False
        self._carry = b""
        self._seen = 0

    def __call__(self, chunk) -> None:
        if self.fired or self._seen >= self.LOOK_AT:
            return
        window = self._carry + bytes(chunk[: self.LOOK_AT - self._seen])
        self._seen += len(chunk)
        if self.engine.snapshot_fixed(window):
            self.fire()
        self._carry = window[-self.KEPT:]

    def fire(self) -> None:
        if not self.fired:
            self.fired = True
            self.callback()


def dump(target: Target, out_fd: int, scope: str = "database",
         job: BareosJob | None = None, on_snapshot: Callable[[], None] | None = None,
         out_name: str | None = None, lock_timeout: float = DUMP_LOCK_TIMEOUT) -> Trailer:
    """Dump target into out_fd and finish the stream with a trailer.

    The trailer is written only when the dump tool exited 0 and its own
    completeness marker ends the output; otherwise this raises and the stream
    stays without a trailer, which every restore refuses.  on_snapshot is
    called once, while the dump goes on, as soon as nothing that changes in
    the database from then on can reach it (at the latest: at its end).
    lock_timeout bounds the wait for a lock another session holds: a dump
    that waits for ever keeps Nextcloud in maintenance mode for ever.
    """
    engine = get_engine(target.type)
    refuse_dump(target, scope)
    watch = SnapshotWatch(engine, on_snapshot) if on_snapshot else None
    observer = watch if scope == "database" else None   # pg_dumpall: one snapshot per database
    header = Header(engine.name, scope, target.database if scope == "database" else "")
    created, started = stamps.record(), time.monotonic()
    log.info("dumping %s", target.describe() if scope == "database" else f"all {engine.name} databases")
    with engine.dump_command(target, scope, lock_timeout) as command, Child(
        command.argv, stdout=subprocess.PIPE, env_extra=command.env_extra,
        pass_fds=command.pass_fds, run_as=command.run_as,
    ) as child, command.watching(child):
        writer = StreamWriter(out_fd, header, out_name)
        copied = copy_dump(child.stdout_fd, writer, Progress("dump"), observer=observer)
        code = child.wait()
    if code != 0:
        raise engine.dump_failure(child, target)
    if copied.count == 0:
        raise DataError(f"{child.label} exited 0 but wrote nothing")
    if not engine.dump_complete(copied.tail):
        raise DataError(f"{child.label} exited 0 but its output lacks the completeness marker")
    if watch is not None:
        watch.fire()
    extra = {"tool": child.label, "hostname": socket.gethostname()}
    if job and job.job_id:
        extra["bareos-job-id"] = job.job_id
    trailer = writer.finish(engine.server_version(target, copied.head), created, extra)
    sync_if_file(out_fd)
    seconds = time.monotonic() - started
    log.info("dump complete: %s in %.1f s (%s/s), sha256 %s", human_bytes(trailer.bytes), seconds,
             human_bytes(trailer.bytes / max(seconds, 1e-6)), trailer.sha256)
    return trailer


def dump_to_file(target: Target, path: str, scope: str = "database",
                 job: BareosJob | None = None, on_snapshot: Callable[[], None] | None = None,
                 lock_timeout: float = DUMP_LOCK_TIMEOUT) -> Trailer:
    """Dump into a 0600 file that appears atomically and only once its trailer
    has been read back and verified; a failed dump leaves no file behind."""
    with atomic_write(path) as handle:
        trailer = dump(target, handle.fileno(), scope, job, on_snapshot, out_name=path,
                       lock_timeout=lock_timeout)
        handle.seek(0)
        verify(handle.fileno(), path)
    log.info("dump written to %s", path)
    return trailer

