"""dbpipe-verify: check a stored stream offline, optionally by restoring it
into a throwaway database."""

from __future__ import annotations

from dataclasses import dataclass, field

from .engines import get_engine
from .errors import DataError
from .stream import Trailer
from .target import Target
from .transfer import Pump

CREATE_TABLE = b"\nCREATE TABLE "


class TableCounter:
    """Counts CREATE TABLE statements in the payload, across chunk borders."""

    def __init__(self):
        self.count = 0
        self._carry = b""

    def __call__(self, data) -> None:
        window = self._carry + bytes(data)
        self.count += window.count(CREATE_TABLE)
        self._carry = window[-(len(CREATE_TABLE) - 1):]


@dataclass
class Report:
    trailer: Trailer
    tables_in_stream: int
    rows: dict[str, int] = field(default_factory=dict)
    restored: bool = False


def verify(in_fd: int, label: str) -> Report:
    """Read the whole stream and check its trailer; raises DataError if bad."""
    counter = TableCounter()
    trailer = Pump(in_fd, label, observer=counter).run(lambda data: None)
    return Report(trailer, counter.count)


def test_restore(in_fd: int, label: str, target: Target, required: tuple[str, ...] = ()) -> Report:
    """Verify and load the stream into a scratch database, then check it.

    required: tables the application cannot run without (e.g. Nextcloud's
    oc_filecache): a stream that loads but lacks them is no usable backup."""
    counter = TableCounter()
    pump = Pump(in_fd, label, observer=counter)
    header = pump.require_header("stream to verify")
    if header.scope != "database":
        raise DataError("--test-restore supports single-database streams only")
    engine = get_engine(target.type or header.engine)
    with engine.scratch(target.merged(type=engine.name)) as scratch:
        trailer = engine.load_scratch(scratch, pump)
        rows = engine.table_rows(scratch)
    if len(rows) < counter.count:
        raise DataError(f"test restore has {len(rows)} tables, the stream creates {counter.count}")
    present = {name.rsplit(".", 1)[-1] for name in rows}   # pgsql: schema.table
    missing = [name for name in required if name not in present]
    if missing:
        raise DataError(f"test restore lacks the tables {', '.join(missing)}")
    return Report(trailer, counter.count, rows, restored=True)
