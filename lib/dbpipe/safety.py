"""Replace mode's safety dumps: data, not temporary files.

A replace-mode restore drops the live content before it loads the new one;
until that load is done, the safety dump is the only copy of what was
there.  So it lives in the state directory (<state>/replace/, not the temp
dir, which the leftover sweep cleans), is 0600 from its creation, synced
and renamed into place, and a record naming it is written - durably -
*before* the first destructive statement.  The record goes when the restore
is done or has put the previous content back.  If the process dies in
between, the record stays, and every later run that touches the database
says so: a dump refuses (exit 75, nothing of a half-restored database goes
into a backup), a restore warns and, once it succeeds, ends the record,
and `dbpipe-restore --put-back` loads the previous content back.

After a restore the safety dumps are the kept copies of replaced data
(listed, bounded by --keep-old-copies); no leftover sweep touches them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from . import records, stamps
from .errors import CantCreateError, ConfigError, TempFailure
from .files import publish, state_root, temporary_beside
from .kept import KeptCopy
from .log import log
from .target import Target

DIRECTORY = "replace"
PUT_BACK = "dbpipe-restore --put-back"


@dataclass(frozen=True)
class HalfRestored:
    """The record of a replace-mode restore that has begun to change data."""

    database: str
    server: str          # Target.describe() of the restore
    previous: str        # the safety dump; "" when the database did not exist before
    since: str
    pid: int

    def describe(self) -> str:
        where = (f"its previous content is in {self.previous}" if self.previous
                 else "it did not exist before")
        return (f"{self.server} was left half-restored by a --mode replace restore that did not "
                f"finish (pid {self.pid}, since {self.since}); {where}; put it back with "
                f"'{PUT_BACK}' and the same target options, or restore a backup into it")


class SafetyDumps:
    """The safety dumps and the half-restored record of one database."""

    def __init__(self, target: Target):
        self.target = target
        self.directory = os.path.join(state_root(), DIRECTORY)
        readable = re.sub(r"[^A-Za-z0-9_.-]", "_", target.database or "")[:64]
        digest = hashlib.sha256(f"{target.type}:{target.database}".encode()).hexdigest()[:8]
        self.key = f"{target.type}-{readable}-{digest}"
        self.record_path = os.path.join(self.directory, f"{self.key}.json")
        self.files = re.compile("^" + re.escape(f"{self.key}.previous-") + stamps.NAME_PATTERN
                                + r"-[0-9a-f]{4}\.sql$")

    # --- the record -------------------------------------------------------
    def pending(self) -> HalfRestored | None:
        return records.load(self.record_path, lambda data: HalfRestored(**data), lambda exc: ConfigError(
            f"record {self.record_path} is unreadable or corrupt ({exc}): the database "
            f"may be half-restored; check it, then remove the record"))

    def refuse_if_pending(self) -> None:
        record = self.pending()
        if record is not None:
            raise TempFailure(record.describe())

    def warn_if_pending(self) -> HalfRestored | None:
        record = self.pending()
        if record is not None:
            log.warning("%s", record.describe())
        return record

    def record(self, previous: str) -> HalfRestored:
        """Write down, durably, that the database is about to be dropped and
        where its previous content is: before the first destructive statement."""
        record = HalfRestored(self.target.database, self.target.describe(), previous, stamps.record(),
                              os.getpid())
        records.save(self.record_path, asdict(record))
        return record

    def clear(self) -> None:
        records.remove(self.record_path)

    # --- the dumps --------------------------------------------------------
    @contextlib.contextmanager
    def new_dump(self) -> Iterator[tuple[object, str]]:
        """(handle, final path): a 0600 file to write the dump into, which gets
        its final name (synced) only when the block succeeds.  A killed
        writer's unfinished file goes at the next safety dump of this database."""
        path = os.path.join(self.directory, f"{self.key}.previous-{stamps.for_name()}-"
                                            f"{os.urandom(2).hex()}.sql")
        with temporary_beside(self.directory, f".{self.key}.previous.") as (handle, temporary):
            yield handle, path
            try:
                os.fsync(handle.fileno())
            except OSError as exc:
                raise CantCreateError(f"cannot write the safety dump {path}: {exc.strerror}; "
                                      "nothing was changed") from None
            publish(temporary, path, overwrite=False)

    def kept(self) -> list[KeptCopy]:
        copies = []
        with contextlib.suppress(OSError):
            for name in os.listdir(self.directory):
                found = self.files.match(name)
                if found:
                    path = os.path.join(self.directory, name)
                    st = os.stat(path)
                    copies.append(KeptCopy(path, st.st_size,
                                           stamps.order_key(found.group(1)) + f"{st.st_mtime_ns:020d}"))
        return copies


def refuse_dump(target: Target, scope: str) -> None:
    """A dump must not carry a half-restored database into a backup: refuse
    (exit 75) while its record is there - for a whole-server dump, any of
    that engine's."""
    if scope == "database":
        SafetyDumps(target).refuse_if_pending()
        return
    directory = os.path.join(state_root(), DIRECTORY)
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(directory)):
            if name.startswith(f"{target.type}-") and name.endswith(".json"):
                with contextlib.suppress(ConfigError):
                    record = records.load(os.path.join(directory, name), lambda data: HalfRestored(**data),
                                          lambda exc: ConfigError(str(exc)))
                    if record is not None:
                        raise TempFailure(record.describe())
