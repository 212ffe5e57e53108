"""The core comparison: dbpipe-dump / dbpipe-restore against the bare tools.

Per engine and dump size:
  dump     A: <dump tool> | cat > /dev/null      (the tool as dbpipe-dump starts it;
                                                   cat stands for the relay process)
           B: dbpipe-dump > /dev/null
  restore  A: mariadb DB < stream   or   psql -v ON_ERROR_STOP=1 --single-transaction -f stream
           B: dbpipe-restore < stream            (full atomic restore, default options)
Both restore sides load the same dbpipe stream file into a freshly reset
database.  Sides alternate (AB, BA, AB, ...) and the server is left to settle
before each run.  Ratios are dbpipe / bare of the medians.
"""

from __future__ import annotations

import math
import os
import traceback
from dataclasses import dataclass, field

import databases
from measure import (MIB, BenchError, Command, Sample, Series, dbpipe_command, progress,
                     run_pipeline)

CALIBRATION_UNITS = 5
OVERSHOOT = 1.03
READER_WALL_TARGET = 1.05
RESTORE_WALL_TARGET = 1.10
RSS_TARGET = 64 * MIB
RSS_SAME = 2 * MIB
DUMP_TOOLS = {"mysql": "mariadb-dump", "pgsql": "pg_dump"}
CLIENTS = {"mysql": "mariadb", "pgsql": "psql"}
LOADS = {"mysql": "mariadb < file", "pgsql": "psql -f file"}


@dataclass
class Comparison:
    operation: str           # dump | restore
    bare: Series
    dbpipe: Series

    def ratio(self, attr: str) -> float:
        return self.dbpipe.median(attr) / max(self.bare.median(attr), 1e-9)


@dataclass
class SizeResult:
    label: str               # small | large
    stream_bytes: int
    reader_rss: list[int] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)

    def writer_rss(self) -> list[int]:
        return [s.rss for c in self.comparisons if c.operation == "restore" for s in c.dbpipe.samples]

    def tool_rss(self, operation: str) -> int:
        return max((s.rss for c in self.comparisons if c.operation == operation
                    for s in c.bare.samples), default=0)


@dataclass
class EngineResult:
    kind: str
    version: str = ""
    sizes: list[SizeResult] = field(default_factory=list)
    error: str = ""


class EngineBench:
    """Builds one engine's database size by size and runs both comparisons."""

    def __init__(self, db: databases.BenchDatabase, runs: int, workdir: str):
        self.db, self.runs, self.workdir = db, runs, workdir
        self.stream = os.path.join(workdir, f"{db.kind}-stream.sql")

    def measure_size(self, label: str, target_bytes: int) -> SizeResult:
        size, sample = self.build(target_bytes)
        result = SizeResult(label, size, [sample.rss])
        progress(f"{self.db.kind}: {label} dump is {size / MIB:.1f} MiB; comparing dumps")
        dump = self.compare("dump", self.bare_dump, self.dbpipe_dump)
        result.reader_rss += [s.rss for s in dump.dbpipe.samples]
        progress(f"{self.db.kind}: comparing restores of {size / MIB:.1f} MiB")
        restore = self.compare("restore", self.bare_restore, self.dbpipe_restore,
                               before=lambda: self.db.reset(databases.RESTORED),
                               after=self.check_restored)
        result.comparisons = [dump, restore]
        return result

    def build(self, target_bytes: int) -> tuple[int, Sample]:
        """Grow the source until a dbpipe-dump stream of it is at least target_bytes."""
        if self.db.units == 0:
            self.db.add_units(CALIBRATION_UNITS)
        while True:
            sample = run_pipeline([dbpipe_command("dbpipe-dump", *self.db.dbpipe_args(databases.SOURCE))],
                                  stdout=self.stream, server_cpu=self.db.server_cpu,
                                  log_dir=self.workdir)
            size = os.path.getsize(self.stream)
            if size >= target_bytes:
                return size, sample
            more = max(1, math.ceil((target_bytes * OVERSHOOT - size) / (size / self.db.units)))
            progress(f"{self.db.kind}: stream {size / MIB:.1f} MiB; adding {more} units of rows")
            self.db.add_units(more)

    def compare(self, operation: str, bare, dbpipe, before=None, after=None) -> Comparison:
        result = Comparison(operation, Series("bare"), Series("dbpipe"))
        for run in range(self.runs):
            order = [(result.bare, bare), (result.dbpipe, dbpipe)]
            for series, side in order if run % 2 == 0 else reversed(order):
                if before:
                    before()
                self.db.settle()
                sample = side()
                if after:
                    after()
                series.samples.append(sample)
                progress(f"{self.db.kind} {operation} {series.label:6} run {run + 1}: "
                         f"{sample.wall:.2f} s wall, {sample.cpu:.2f} s CPU, "
                         f"{sample.rss / MIB:.1f} MiB RSS")
        return result

    # --- the four sides ----------------------------------------------------------------
    def bare_dump(self) -> Sample:
        return self._run([self.db.bare_dump(), Command(["cat"])])

    def dbpipe_dump(self) -> Sample:
        return self._run([dbpipe_command("dbpipe-dump", *self.db.dbpipe_args(databases.SOURCE))])

    def bare_restore(self) -> Sample:
        command, stdin = self.db.bare_load(databases.RESTORED, self.stream)
        return self._run([command], stdin=stdin)

    def dbpipe_restore(self) -> Sample:
        return self._run([dbpipe_command("dbpipe-restore", *self.db.dbpipe_args(databases.RESTORED))],
                         stdin=self.stream)

    def _run(self, commands, stdin=None) -> Sample:
        return run_pipeline(commands, stdin=stdin, server_cpu=self.db.server_cpu,
                            log_dir=self.workdir)

    def check_restored(self) -> None:
        """A restore that loaded less than the source would make the timing meaningless."""
        got, want = self.db.counts(databases.RESTORED), self.db.counts(databases.SOURCE)
        if got != want:
            raise BenchError(f"restored row counts {got} differ from the source {want}")


def run_engine(kind: str, sizes: list[tuple[str, int]], runs: int, workdir: str) -> EngineResult:
    db = databases.make(kind)
    result = EngineResult(kind)
    bench = EngineBench(db, runs, workdir)
    try:
        progress(f"{kind}: starting a private server")
        db.start()
        result.version = db.version()
        for label, target in sizes:
            result.sizes.append(bench.measure_size(label, target))
    except Exception as exc:  # noqa: BLE001 - report it, go on with the next engine
        if not isinstance(exc, BenchError):
            traceback.print_exc()
        result.error = f"{type(exc).__name__}: {exc}"
        progress(f"{kind}: FAILED: {exc}")
    finally:
        db.destroy()
        if os.path.exists(bench.stream):
            os.unlink(bench.stream)
    return result


# --- the report ---------------------------------------------------------------------------

TIMES = "Dump and restore: dbpipe vs the bare tools"
MEMORY = "Peak memory (RSS) at two dump sizes"


def render(report, results: list[EngineResult]) -> list[bool]:
    """Add the core tables to the report; returns one verdict per target checked."""
    report.columns(TIMES, "engine", "dump size", "operation", "bare: wall s (median / min)",
                   "dbpipe: wall s (median / min)", "wall ratio", "CPU s bare / dbpipe",
                   "CPU ratio", "target", "result")
    report.columns(MEMORY, "engine", "process", *_size_columns(results), "growth", "target", "result")
    verdicts = []
    for engine in results:
        if engine.error:
            report.note(TIMES, f"{engine.kind}: benchmark failed: {engine.error}")
        for size in engine.sizes:
            for comparison in size.comparisons:
                verdicts += _time_row(report, engine, size, comparison)
        verdicts += _memory_rows(report, engine)
    _notes(report)
    return verdicts


def _time_row(report, engine: EngineResult, size: SizeResult, comparison: Comparison) -> list[bool]:
    bare, ours = comparison.bare, comparison.dbpipe
    target = READER_WALL_TARGET if comparison.operation == "dump" else RESTORE_WALL_TARGET
    judged = size.label == "large"
    ratio = comparison.ratio("wall")
    ok = ratio <= target
    operation = ("dump: dbpipe-dump vs " + f"{DUMP_TOOLS[engine.kind]} | cat"
                 if comparison.operation == "dump"
                 else f"restore: dbpipe-restore vs {LOADS[engine.kind]}")
    report.row(TIMES, engine.version or engine.kind, f"{size.stream_bytes / MIB:.0f} MiB", operation,
               f"{bare.median('wall'):.2f} / {bare.minimum('wall'):.2f}",
               f"{ours.median('wall'):.2f} / {ours.minimum('wall'):.2f}", f"{ratio:.3f}",
               f"{bare.median('cpu'):.2f} / {ours.median('cpu'):.2f}", f"{comparison.ratio('cpu'):.2f}",
               f"≤ {target:.2f}" if judged else "(info)",
               ("pass" if ok else "MISS") if judged else "")
    return [ok] if judged else []


def _size_columns(results) -> list[str]:
    labels = []
    for engine in results:
        for size in engine.sizes:
            if size.label not in labels:
                labels.append(size.label)
    return [f"peak RSS, {label} dump" for label in labels] or ["peak RSS"]


def _memory_rows(report, engine: EngineResult) -> list[bool]:
    if not engine.sizes:
        return []
    verdicts = []
    rows = [("reader: dbpipe-dump", [max(s.reader_rss) for s in engine.sizes], True),
            ("writer: dbpipe-restore", [max(s.writer_rss(), default=0) for s in engine.sizes], True),
            (f"for reference: {DUMP_TOOLS[engine.kind]}", [s.tool_rss("dump") for s in engine.sizes], False),
            (f"for reference: {CLIENTS[engine.kind]} client", [s.tool_rss("restore") for s in engine.sizes],
             False)]
    for name, peaks, judged in rows:
        growth = peaks[-1] - peaks[0]
        ok = max(peaks) <= RSS_TARGET and abs(growth) <= RSS_SAME
        cells = [f"{peak / MIB:.1f} MiB ({size.stream_bytes / MIB:.0f} MiB)"
                 for peak, size in zip(peaks, engine.sizes)]
        report.row(MEMORY, engine.version or engine.kind, name, *cells, f"{growth / MIB:+.1f} MiB",
                   "≤ 64 MiB, same at both sizes" if judged else "",
                   ("pass" if ok else "MISS") if judged else "")
        verdicts += [ok] if judged else []
    return verdicts


def _notes(report) -> None:
    report.note(TIMES, "bare dump: the dump tool with exactly the flags dbpipe-dump gives it, piped "
                "to cat > /dev/null (cat stands for dbpipe's relay process); dbpipe-dump > /dev/null")
    report.note(TIMES, "bare restore: `mariadb --batch DB < stream` / `psql -X -q -v ON_ERROR_STOP=1 "
                "--single-transaction -f stream` into an empty database; dbpipe-restore < stream does its "
                "full verified, atomic restore (mysql: staging database + RENAME TABLE; pgsql: one "
                "transaction committed after verification); the target is reset identically before each run")
    report.note(TIMES, "wall ratio = dbpipe median / bare median (target checked at the large size); "
                "CPU = user+system seconds of the client side (tool, relay, dbpipe and its children), "
                "the database server's own CPU is excluded (it is in latest.json)")
    report.note(MEMORY, "RSS of the dbpipe process itself (VmHWM at its exit, max over all runs), "
                "not of the dump tool or client it starts; those are listed for reference")
