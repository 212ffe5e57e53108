"""Handing secrets to database tools without argv or environment.

MySQL/MariaDB tools read an option file from an anonymous pipe passed by fd
(``--defaults-extra-file=/dev/fd/N``): nothing touches the disk.  libpq
refuses a pipe as password file, so PostgreSQL tools get a 0600 pgpass file
in a private 0700 directory that is removed on every exit path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from .errors import CantCreateError
from .leftovers import TEMPORARY_DIRECTORY, owner_tag, sweep
from .process import CONNECT_TIMEOUT

# not secrets: fail instead of hanging on an unreachable host
LIBPQ_ENVIRONMENT = {"PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}


@contextlib.contextmanager
def private_directory(base: str | None = None, prefix: str = "dbpipe-", what: str = "temporary directory",
                      leftovers: tuple = (TEMPORARY_DIRECTORY, "temporary directory")):
    """A 0700 directory only we can enter, removed with everything in it.

    Its name carries our pid (leftovers.owner_tag): what a killed run left in
    the same place - spools, pgpass files, a prepare's scratch directory -
    goes before a new one is made (leftovers: the pattern of their names and
    what to call them)."""
    sweep(base or tempfile.gettempdir(), *leftovers)
    try:
        path = tempfile.mkdtemp(prefix=prefix + owner_tag(), dir=base)
    except OSError as exc:
        raise CantCreateError(f"cannot create a {what}: {exc.strerror}") from None
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _mysql_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


@contextlib.contextmanager
def mysql_option_fd(password: str | None):
    """An inheritable read fd carrying '[client] password=...', or None.

    A pipe can be read once, so every command needs its own.
    """
    if password is None:
        yield None
        return
    content = f"[client]\npassword={_mysql_quote(password)}\n".encode()
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, content)  # far below the pipe's capacity
        os.close(write_fd)
        write_fd = -1
        os.set_inheritable(read_fd, True)
        yield read_fd
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


@contextlib.contextmanager
def mysql_option_memfd(password: str | None):
    """Like mysql_option_fd, for tools that read their option files more than once.

    mariabackup loads the defaults twice (server groups, then client groups),
    so a pipe arrives empty the second time.  An anonymous memory file opened
    through /dev/fd/N starts at offset 0 on every open and never touches the
    disk; mode 0400 because MySQL tools ignore world-writable option files.
    """
    if password is None:
        yield None
        return
    fd = os.memfd_create("dbpipe-options", os.MFD_CLOEXEC)
    try:
        os.write(fd, f"[client]\npassword={_mysql_quote(password)}\n".encode())
        os.fchmod(fd, 0o400)
        os.set_inheritable(fd, True)
        yield fd
    finally:
        os.close(fd)


def mysql_option_args(defaults_file: str | None, option_fd: int | None) -> list[str]:
    """The leading options that must come first on a MySQL tool's argv."""
    return (
        ([f"--defaults-file={defaults_file}"] if defaults_file else [])
        + ([f"--defaults-extra-file=/dev/fd/{option_fd}"] if option_fd is not None else [])
    )


def _pgpass_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


@contextlib.contextmanager
def pgpass_environment(password: str | None):
    """Environment entries pointing libpq at a private 0600 password file."""
    if password is None:
        yield dict(LIBPQ_ENVIRONMENT)
        return
    with private_directory(prefix="dbpipe-pg-") as directory:
        path = os.path.join(directory, "pgpass")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"*:*:*:*:{_pgpass_escape(password)}\n")
        yield {"PGPASSFILE": path, **LIBPQ_ENVIRONMENT}
