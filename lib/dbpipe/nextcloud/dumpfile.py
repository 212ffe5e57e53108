"""Dump files the hooks write: only a file that is a dbpipe stream is ever removed."""

from __future__ import annotations

import os

from ..errors import UnavailableError, UsageError
from ..stream import HEADER_PREFIX
from .report import StepReport


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

