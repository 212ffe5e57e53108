"""Dump files the hooks write: only a file that is a dbpipe stream is ever removed."""

from __future__ import annotations

import os

from ..errors import CantCreateError, DbpipeError, UnavailableError, UsageError
from ..stream import HEADER_PREFIX, MAX_HEADER, Header
from ..target import Target
from .report import StepReport


def refuse_foreign(path: str, database: Target) -> None:
    """An existing file at path may be replaced only when it is a dbpipe dump
    of this very database - an earlier run's; anything else is somebody's
    file (as --to-file without --force)."""
    if not os.path.lexists(path):
        return
    try:
        with open(path, "rb") as handle:
            header = Header.decode(handle.readline(MAX_HEADER))
    except (OSError, DbpipeError):
        header = None
    if header is None or (header.engine, header.database) != (database.type, database.database):
        raise CantCreateError(f"--dump-to {path} exists and is not a dbpipe dump of {database.describe()}: "
                              "not overwriting it (move it away or choose another file)")


def remove_dump(path: str, report: StepReport) -> None:
    """Remove the dump file, but only one that is a dbpipe stream."""
    try:
        with open(path, "rb") as handle:
            first = handle.read(len(HEADER_PREFIX))
    except FileNotFoundError:
        report.step(f"dump file {path}: not there, nothing to remove")
        return
    except OSError as exc:
        raise UnavailableError(f"cannot read dump file {path}: {exc.strerror}") from None
    if first != HEADER_PREFIX:
        raise UsageError(f"{path} is not a dbpipe dump; not removing it")
    try:
        os.unlink(path)
    except OSError as exc:
        raise UnavailableError(f"cannot remove dump file {path}: {exc.strerror}") from None
    report.step(f"dump file {path}: removed")

