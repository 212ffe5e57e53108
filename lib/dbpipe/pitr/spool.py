"""The archive spool: a local directory where archived WAL segments (and
MariaDB binary logs) wait until a Bareos job has them.

Why a spool and not Bareos directly: the database's archive step must never
wait for the backup system.  Putting a 16 MiB segment into a local
directory takes milliseconds; Bareos picks the spool up on its own schedule
(incremental FileSet), and a file leaves the spool only once a successful
job holds it (prune.py).

Each file NAME arrives durably - a 0600 temporary file beside it, fsync,
link to NAME (never replacing anything), fsync of the directory - with its
SHA-256 in NAME.sha256 beside it, so a restore can tell a damaged copy.  A
NAME that exists with the same content is success (PostgreSQL re-archives
after a crash); with different content it is refused, never overwritten.

Bounded: past max_bytes the spool refuses new files at once (exit 75), so
the database keeps running and retries, and every refusal says why.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from .. import stamps
from ..errors import CantCreateError, DataError, NoInputError, TempFailure, UsageError
from ..files import fsync_directory, publish, temporary_beside

CHECKSUM_SUFFIX = ".sha256"
REFUSALS = ".refused"          # what the archive command could not take, for the job log
MAX_REFUSALS_BYTES = 64 << 10
NAME_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,120}")
CHUNK = 1 << 20
MiB = 1 << 20


@dataclass(frozen=True)
class Spool:
    directory: str
    max_bytes: int | None = None

    def path(self, name: str) -> str:
        return os.path.join(self.directory, checked_name(name))

    # --- putting a file in -------------------------------------------------------
    def put(self, source: str, name: str) -> bool:
        """Archive source as name.  True if it was new, False if an identical
        copy was already there."""
        target = self.path(name)
        existing = self.existing_sha256(name) if os.path.exists(target) else None
        size = _size_of(source)
        if existing is None:
            self._check_room(size)
        digest = self._copy_in(source, name, target, existing)
        return digest is not None

    def _copy_in(self, source: str, name: str, target: str, existing: str | None) -> str | None:
        with temporary_beside(self.directory, f".{name}.") as (handle, temporary):
            digest = _copy(source, handle, target)
            if existing is not None:
                return _same_or_refuse(name, existing, digest)
            self._write_checksum(name, digest)
            try:
                publish(temporary, target, overwrite=False)
            except CantCreateError:     # appeared meanwhile: same rule as above
                return _same_or_refuse(name, self.recorded_sha256(name), digest)
        return digest

    def _write_checksum(self, name: str, digest: str) -> None:
        sidecar = self.path(name) + CHECKSUM_SUFFIX
        with temporary_beside(self.directory, f".{name}{CHECKSUM_SUFFIX}.") as (handle, temporary):
            try:
                handle.write(f"{digest}  {name}\n".encode())
                os.fsync(handle.fileno())
            except OSError as exc:
                raise CantCreateError(f"cannot write {sidecar}: {exc.strerror}") from None
            os.replace(temporary, sidecar)
        fsync_directory(self.directory)

    def _check_room(self, incoming: int) -> None:
        if self.max_bytes is None:
            return
        used = self.used_bytes()
        if used + incoming > self.max_bytes:
            raise TempFailure(
                f"archive spool {self.directory} is full: {used // MiB} MiB held, limit "
                f"{self.max_bytes // MiB} MiB; the Bareos archive job has not taken the spool "
                f"(is it running and succeeding?); nothing archived, the server will retry")

    # --- refusals, for the job log -------------------------------------------------
    def note_refusal(self, reason: str) -> None:
        """Best effort (the disk may be full): one line per refusal, capped,
        so the next spool job's log can say the archive fell behind."""
        path = os.path.join(self.directory, REFUSALS)
        try:
            if os.path.exists(path) and os.path.getsize(path) > MAX_REFUSALS_BYTES:
                return
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{stamps.record()} {reason}\n".encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def take_refusals(self) -> list[str]:
        """The refusals noted since the last call; they are gone afterwards."""
        path = os.path.join(self.directory, REFUSALS)
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
            os.unlink(path)
        except FileNotFoundError:
            return []
        return lines

    # --- reading it back ---------------------------------------------------------
    def names(self) -> list[str]:
        """Archived files (not checksums, not temporaries), sorted."""
        try:
            entries = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n for n in entries if NAME_PATTERN.fullmatch(n) and not n.endswith(CHECKSUM_SUFFIX))

    def used_bytes(self) -> int:
        total = 0
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    try:
                        total += entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        pass
        except FileNotFoundError:
            return 0
        return total

    def recorded_sha256(self, name: str) -> str | None:
        try:
            with open(self.path(name) + CHECKSUM_SUFFIX, encoding="ascii") as handle:
                return handle.read().split()[0]
        except (FileNotFoundError, IndexError, UnicodeError):
            return None

    def existing_sha256(self, name: str) -> str:
        """The checksum of an archived file: its record, or its content when
        the record is missing (never trust a record we did not find)."""
        return self.recorded_sha256(name) or sha256_of(self.path(name))

    def verify(self, name: str) -> None:
        """DataError unless name is there and matches its recorded checksum."""
        path = self.path(name)
        recorded = self.recorded_sha256(name)
        if not os.path.exists(path):
            raise DataError(f"{name} is missing from {self.directory}")
        if recorded is None:
            raise DataError(f"{name} in {self.directory} has no {CHECKSUM_SUFFIX} record")
        if sha256_of(path) != recorded:
            raise DataError(f"{name} in {self.directory} is damaged (SHA-256 differs from its record)")

    def remove(self, name: str) -> None:
        for path in (self.path(name), self.path(name) + CHECKSUM_SUFFIX):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def checked_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name) or name.endswith(CHECKSUM_SUFFIX):
        raise UsageError(f"not an archive file name: {name!r}")
    return name


def _size_of(source: str) -> int:
    try:
        return os.stat(source).st_size
    except FileNotFoundError:
        raise NoInputError(f"{source} does not exist") from None
    except OSError as exc:
        raise NoInputError(f"cannot read {source}: {exc.strerror}") from None


def _copy(source: str, handle, target: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(source, "rb", buffering=0) as src:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                handle.write(chunk)
        os.fsync(handle.fileno())
    except FileNotFoundError:
        raise NoInputError(f"{source} does not exist") from None
    except OSError as exc:
        raise CantCreateError(f"cannot archive {source} as {target}: {exc.strerror}") from None
    return digest.hexdigest()


def _same_or_refuse(name: str, recorded: str | None, digest: str) -> None:
    if recorded != digest:
        raise DataError(f"{name} is already archived with different content; refusing to "
                        "overwrite it (two servers archiving into one spool?)")
    return None


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
