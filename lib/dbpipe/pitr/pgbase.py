"""PostgreSQL base backups through bpipe: pg_basebackup as a tar stream.

`pg_basebackup -D - -F tar -X fetch` writes one tar of the data directory,
with the WAL that makes it consistent, to stdout; we frame it as a dbpipe
stream (header, tar, trailer with the WAL start and end points), so a stored
base is verified like every other stream and knows where in the WAL it
begins - which decides the segments a restore needs.  Needs
`archive_mode = on` with dbpipe-wal-archive before the base backup is taken.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass

from .. import stamps
from ..bareos import BareosJob
from ..credentials import pgpass_environment
from ..engines.pgsql import PgsqlEngine, connection_args
from ..errors import DataError, DbpipeError
from ..files import store_by_trailer, sync_if_file
from ..log import log
from ..progress import Progress, human_bytes
from ..process import Child, find_tool
from ..stream import Header, StreamWriter, Trailer, read_ends
from ..target import Target
from ..transfer import Pump, copy_dump

ENGINE = "pg-basebackup"
KIND = "PostgreSQL base backup"           # what the stream is, in messages
WAL_POINT = re.compile(r"write-ahead log (start|end) point: ([0-9A-F]+/[0-9A-F]+)(?: on timeline (\d+))?")


def stream_header() -> Header:
    return Header(ENGINE, "all", "")


@dataclass(frozen=True)
class Base:
    """One base backup as its trailer describes it."""

    finished: str           # stamps.record() of the end of the backup
    start_lsn: str
    end_lsn: str
    timeline: int
    tar_bytes: int
    server_version: str
    job: str = ""

    def extra(self) -> dict:
        return {"finished": self.finished, "start-lsn": self.start_lsn, "end-lsn": self.end_lsn,
                "timeline": str(self.timeline), "tar-bytes": str(self.tar_bytes),
                "bareos-job-id": self.job}

    @classmethod
    def from_trailer(cls, trailer: Trailer, origin: str) -> "Base":
        extra = trailer.extra
        try:
            return cls(extra["finished"], extra["start-lsn"], extra["end-lsn"], int(extra["timeline"]),
                       int(extra["tar-bytes"]), trailer.server_version, extra.get("bareos-job-id", ""))
        except (KeyError, ValueError):
            raise DataError(f"{origin}: not a PostgreSQL base backup of dbpipe (trailer incomplete)") from None

    def file_name(self) -> str:
        lsn = self.start_lsn.replace("/", "-")
        job = f"-job{self.job}" if self.job else ""
        return f"pgbase-{stamps.for_name(finished_epoch(self))}-lsn{lsn}{job}.dbpipe"


def finished_epoch(base: Base) -> float:
    import calendar
    return calendar.timegm(time.strptime(base.finished, "%Y-%m-%dT%H:%M:%SZ"))


# --- the reader -----------------------------------------------------------------------

def backup_argv(target: Target) -> list[str]:
    return [find_tool("pg_basebackup", package_hint="postgresql-client"), "-D", "-", "-F", "tar",
            "-X", "fetch", "-c", "fast", "-v", "--label=dbpipe", *connection_args(target)]


def backup(target: Target, out_fd: int, job: BareosJob) -> Base:
    """Stream one base backup to out_fd."""
    started, created = time.monotonic(), stamps.record()
    with pgpass_environment(target.password) as env, \
            Child(backup_argv(target), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                  env_extra=env) as child:
        writer = StreamWriter(out_fd, stream_header())
        copied = copy_dump(child.stdout_fd, writer, Progress("base backup"))
        code = child.wait()
    if code != 0:
        raise PgsqlEngine().classify(child.failure(code), child.stderr_text())
    points = {kind: (lsn, int(tli or 0)) for kind, lsn, tli in WAL_POINT.findall(child.stderr_text())}
    if set(points) != {"start", "end"} or copied.count == 0:
        raise DataError("pg_basebackup exited 0 but did not report its WAL start and end points")
    base = Base(stamps.record(), points["start"][0], points["end"][0], points["start"][1],
                copied.count, "PostgreSQL", job.job_id)   # the version is PG_VERSION in the tar
    writer.finish(base.server_version, created, base.extra())
    sync_if_file(out_fd)
    log.info("base backup complete: WAL %s .. %s on timeline %d, %s in %.1f s", base.start_lsn,
             base.end_lsn, base.timeline, human_bytes(copied.count), time.monotonic() - started)
    return base


# --- the writer -----------------------------------------------------------------------

def store(in_fd: int, directory: str) -> str:
    """Read one base backup stream to its end and publish it under directory."""
    with Pump(in_fd).draining() as pump:
        header = pump.require_header("stream to store")
        if header != stream_header():
            raise DataError(f"not a PostgreSQL base backup: a {header.engine} stream")
        path, trailer = store_by_trailer(pump, directory,
                                         lambda trailer: Base.from_trailer(trailer, "stdin").file_name(), KIND)
    base = Base.from_trailer(trailer, path)
    log.info("stored base backup of %s (WAL from %s) as %s, %s", base.finished, base.start_lsn, path,
             human_bytes(trailer.bytes))
    return path


# --- stored bases ----------------------------------------------------------------------

@dataclass(frozen=True)
class StoredBase:
    path: str
    base: Base
    header_bytes: int


def read_stored(path: str) -> tuple[StoredBase, Trailer]:
    """Header and trailer of a stored base, without reading the tar."""
    header_bytes, trailer = read_ends(path, stream_header(), KIND)
    return StoredBase(path, Base.from_trailer(trailer, path), header_bytes), trailer


def verify_stored(stored: StoredBase) -> None:
    """Read the whole stored stream and check its length and SHA-256: a
    damaged base is refused before a restore creates anything."""
    try:
        with open(stored.path, "rb", buffering=0) as handle:
            Pump(handle.fileno(), stored.path, progress=Progress("verify")).run(lambda data: None)
    except DataError as exc:
        raise DataError(f"base backup {stored.path} is damaged: {exc}") from None


def stored_bases(directory: str) -> list[StoredBase]:
    """Every readable base backup in directory, oldest first; damaged ones are
    logged and left out (the checksum is checked again on extraction)."""
    found = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if name.startswith("pgbase-") and name.endswith(".dbpipe"):
            try:
                found.append(read_stored(os.path.join(directory, name))[0])
            except DbpipeError as exc:
                log.warning("skipping %s", exc)
    return sorted(found, key=lambda stored: stored.base.finished)
