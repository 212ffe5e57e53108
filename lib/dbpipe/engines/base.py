"""The one interface every database engine implements."""

from __future__ import annotations

import abc
import contextlib
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..credentials import private_directory
from ..files import write_received
from ..errors import DataError, DbpipeError, UnavailableError, UsageError
from ..kept import KeptCopy
from ..log import log
from ..process import Child, RunAs
from ..stream import Trailer, write_all
from ..target import Target
from ..transfer import Pump
from .rows import RowSource

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every command ~5 ms to import; annotations are never evaluated
    from typing import ClassVar


DUMP_LOCK_TIMEOUT = 300.0   # seconds a dump waits for a table lock (dbpipe-dump --lock-timeout)


@dataclass(frozen=True)
class DumpCommand:
    """A dump tool invocation: argv plus what it needs besides argv.  watch,
    given the running tool, is a context around the whole dump: a watchdog
    that may end the tool and, on leaving, raise why (mysql's lock waits)."""

    argv: list[str]
    env_extra: dict = field(default_factory=dict)
    pass_fds: tuple = ()
    run_as: RunAs | None = None
    watch: Callable[[Child], contextlib.AbstractContextManager] | None = None

    def watching(self, child: Child) -> contextlib.AbstractContextManager:
        return self.watch(child) if self.watch else contextlib.nullcontext()


class LiveChange:
    """Whether a restore has begun to change the live target and not put it back.

    Every engine calls begin() just before its first change to the live
    target - from then on a failure may leave it half replaced - and
    reverted() when a failure provably put it back as it was.  Whoever must
    protect a half-finished restore (the Nextcloud hooks keep maintenance
    mode on) passes on_begin, which makes that known durably *before* the
    change (if it fails, nothing was changed), and on_revert."""

    def __init__(self, on_begin: Callable[[], None] | None = None,
                 on_revert: Callable[[], None] | None = None):
        self.changed = False
        self._on_begin, self._on_revert = on_begin, on_revert

    def begin(self) -> None:
        if not self.changed:
            if self._on_begin is not None:
                self._on_begin()
            self.changed = True

    def reverted(self) -> None:
        """Called on error paths: a failing on_revert is logged, never raised
        (the record then still says 'changed', the safe side)."""
        if self.changed and self._on_revert is not None:
            try:
                self._on_revert()
            except Exception as exc:  # noqa: BLE001 - the original error must win
                log.error("%s", exc)
        self.changed = False


@dataclass(frozen=True)
class RestoreOptions:
    mode: str = "auto"            # mysql: auto | atomic | replace
    keep_old: bool = True         # keep what the restore replaced, so it can be undone
    temp_dir: str | None = None   # where replace mode spools the stream
    keep_old_copies: int | None = None  # after the restore, keep only the newest N of those copies
    lock_timeout: float = 120.0   # pgsql: seconds to wait for a lock before giving up (exit 75)
    live: LiveChange = field(default_factory=LiveChange, compare=False)


@dataclass(frozen=True)
class RestoreResult:
    mode: str
    kept: str = ""                # where the replaced data was kept, if anywhere


class Engine(abc.ABC):
    """Dump command, restore strategy and verification for one kind of database."""

    name: ClassVar[str]
    # (regex on the tool's stderr, exception class) - first match wins
    failure_patterns: ClassVar[list[tuple[str, type[DbpipeError]]]] = []
    # what the server said, short enough for one line of a Bareos job log
    # (RunScript output is split at ~129 characters): replaces the tool's line
    reasons: ClassVar[list[str]] = []

    # --- dump -------------------------------------------------------------
    @abc.abstractmethod
    def dump_command(self, target: Target, scope: str, lock_timeout: float = DUMP_LOCK_TIMEOUT
                     ) -> contextlib.AbstractContextManager[DumpCommand]:
        """The dump tool's command; credentials live as long as the context.
        lock_timeout: seconds to wait for a lock another session holds (0: for ever)."""

    @abc.abstractmethod
    def dump_complete(self, tail: bytes) -> bool:
        """Whether the dump tool's own completeness marker ends its output."""

    @abc.abstractmethod
    def server_version(self, target: Target, head: bytes) -> str:
        """The server (or library) version, preferably read from the dump's header."""

    def snapshot_fixed(self, output: bytes) -> bool:
        """Whether output (a piece of the dump tool's output) proves that the
        tool's read snapshot is fixed, so that later changes cannot reach the
        dump.  The snapshot backup ends Nextcloud's maintenance window there
        instead of after the whole dump.  False - the safe default - means:
        only the end of the dump proves it."""
        return False

    def dump_failure(self, child: Child, target: Target | None = None) -> DbpipeError:
        """What a failed dump tool's exit means; target lets an engine ask the server why."""
        return self.classify(child.failure(), child.stderr_text())

    def classify(self, message: str, details: str = "") -> DbpipeError:
        reason = next((found.group(0) for found in (re.search(p, details or message, re.IGNORECASE)
                                                   for p in self.reasons) if found), None)
        if reason:
            message = reason[0].lower() + reason[1:]
        for pattern, error_class in self.failure_patterns:
            if re.search(pattern, details or message, re.IGNORECASE):
                return error_class(message)
        return UnavailableError(message)

    # --- restore ----------------------------------------------------------
    @abc.abstractmethod
    def restore(self, target: Target, pump: Pump, options: RestoreOptions) -> RestoreResult:
        """Load the stream so that the target changes all at once or not at all."""

    @abc.abstractmethod
    def load_all(self, target: Target, pump: Pump) -> Trailer:
        """Load an all-databases stream (cluster-wide, cannot be staged)."""

    @abc.abstractmethod
    def exists(self, target: Target) -> bool:
        """Whether target's database is there (Bareos replace "never" leaves it alone)."""

    def kept_copies(self, target: Target, options: RestoreOptions) -> list[KeptCopy]:
        """What earlier restores of target kept of the data they replaced."""
        return []

    def remove_kept_copy(self, target: Target, copy: KeptCopy) -> None:
        raise NotImplementedError

    def put_back(self, target: Target, options: RestoreOptions) -> str:
        """Load back what a killed --mode replace restore dropped; returns the
        safety dump it came from ("" when the database was empty)."""
        raise UsageError(f"--put-back: only --mode replace (mysql) can leave a database half-restored, "
                         f"not {self.name}")

    def provisioning(self):
        """The module (engines/<name>_provision.py) that creates the database
        and account a restore names on an empty server, or None."""
        return None

    # --- verification -----------------------------------------------------
    @abc.abstractmethod
    def scratch(self, target: Target) -> contextlib.AbstractContextManager[Target]:
        """A throwaway database beside target, removed afterwards whatever happens."""

    @abc.abstractmethod
    def load_scratch(self, scratch: Target, pump: Pump) -> Trailer:
        """Load a single-database stream into an empty scratch database."""

    @abc.abstractmethod
    def table_rows(self, target: Target) -> dict[str, int]:
        """Row count of every table, for sanity checks."""

    @abc.abstractmethod
    def rows(self, target: Target) -> RowSource:
        """Target's rows in the one dialect of rows.py (the DAV reader's); close() it after use."""


def feed_child(child: Child):
    """A sink writing into the child's stdin."""
    stdin = child.stdin_fd

    def sink(data) -> None:
        write_all(stdin, data)

    return sink


@contextlib.contextmanager
def loader(argv, *, label, env_extra=None, pass_fds=(), run_as=None) -> Iterator[Child]:
    """A database client reading SQL from our pipe, output discarded."""
    with Child(argv, label=label, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
               env_extra=env_extra, pass_fds=pass_fds, run_as=run_as) as child:
        yield child


def finish_load(child: Child, pump: Pump) -> None:
    """Close the client's input and require that it loaded everything."""
    child.close_stdin()
    code = child.wait()
    if code != 0 or pump.sink_error is not None:
        raise DataError(f"the dump could not be loaded: {child.failure(code)}")


@contextlib.contextmanager
def spooled(pump: Pump, base: str | None = None) -> Iterator[tuple[str, Trailer]]:
    """(path, trailer) of the whole stream in a 0600 file in a private
    directory, yielded only once the trailer is verified: for loads that
    cannot be undone, so they must not begin on a stream that may be cut
    short.  The directory, and anything else the caller puts in it, goes on
    exit."""
    with private_directory(base) as directory:
        path = os.path.join(directory, "stream.sql")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb", buffering=0) as handle:
            trailer = write_received(pump, handle, f"the spool {path}", with_trailer=False)
        yield path, trailer


def check_engine(name: str, pump: Pump) -> None:
    header = pump.header()
    if header is not None and header.engine != name:
        raise DataError(f"this is a {header.engine} stream; the target is {name}")
