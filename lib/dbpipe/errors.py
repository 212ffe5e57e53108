"""Exit codes and the exceptions that carry them.

Every failure inside the library is raised as a ``DbpipeError`` subclass; the
executables in ``bin/`` turn it into one log line and the exit code here.
Codes follow sysexits(3) and stay below 200 because Bareos reads 200 and up as
"could not execute the program".
"""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    OK = 0
    USAGE = 64          # bad command line
    DATAERR = 65        # stream/file is missing its trailer, truncated, corrupted or unloadable
    NOINPUT = 66        # input file, database or installation does not exist
    UNAVAILABLE = 69    # database server or required tool unavailable / failed
    SOFTWARE = 70       # internal error (a bug)
    CANTCREAT = 73      # cannot create an output file or staging database
    IOERR = 74          # read/write error, e.g. stdout closed early
    TEMPFAIL = 75       # temporary: lock held by another job, try again later
    NOPERM = 77         # permission or authentication denied
    CONFIG = 78         # configuration error
    # 128 + N: stopped by signal N (SIGINT 130, SIGTERM 143), e.g. a cancelled job


class DbpipeError(Exception):
    """A failure with a one-line message and the exit code it maps to."""

    code: int = ExitCode.SOFTWARE

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(DbpipeError):
    code = ExitCode.USAGE


class DataError(DbpipeError):
    code = ExitCode.DATAERR


class NoInputError(DbpipeError):
    code = ExitCode.NOINPUT


class UnavailableError(DbpipeError):
    code = ExitCode.UNAVAILABLE


class CantCreateError(DbpipeError):
    code = ExitCode.CANTCREAT


class IOFailure(DbpipeError):
    code = ExitCode.IOERR


class TempFailure(DbpipeError):
    code = ExitCode.TEMPFAIL


class PermissionDenied(DbpipeError):
    code = ExitCode.NOPERM


class ConfigError(DbpipeError):
    code = ExitCode.CONFIG


class Cancelled(DbpipeError):
    """Raised from a signal handler: the job was cancelled (SIGTERM) or interrupted."""

    def __init__(self, signum: int):
        name = signal.Signals(signum).name
        super().__init__(f"cancelled by {name}", 128 + signum)
        self.signum = signum
