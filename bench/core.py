"""The core comparison: dbpipe-dump / dbpipe-restore against the bare tools, like for like.

Per engine and dump size, both sides with the same plumbing - a pipe read by
`cat`, which stands for the Bareos file daemon on either side:
  dump     A: <dump tool> | cat > /dev/null      (the tool as dbpipe-dump starts it)
           B: dbpipe-dump | cat > /dev/null      (dbpipe's relay between the two)
  restore  A: cat stream | mariadb DB   or   cat stream | psql -1 -v ON_ERROR_STOP=1 -f -
           B: cat stream | dbpipe-restore        (full atomic restore, default options)
Both restore sides load the same dbpipe stream into a freshly reset database.
Runs are paired (AB, BA, AB, ...: each pair one bare and one dbpipe run, the
server left to settle before each); ratios are taken pair by pair and their
median reported, so a machine whose speed drifts still compares like with like.
After every pair, SHA-256 alone over the stream's bytes is timed
(sha256_cost.py): the yardstick for the relay's CPU.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import traceback
from dataclasses import dataclass, field

import databases
from measure import (BIN, MIB, SYSTEM_PYTHON, BenchError, Command, Sample, Series, bare_env,
                     dbpipe_command, progress, run_pipeline)

CALIBRATION_UNITS = 5
OVERSHOOT = 1.03
# issue 12: wall ratio of the reader (dump) per engine, relay CPU against SHA-256 alone
DUMP_WALL_TARGET = {"mysql": 1.05, "pgsql": 1.15}
RESTORE_WALL_TARGET = 1.10
RELAY_CPU_TARGET = 1.2
# peak RSS before issue 12 (README, VmHWM via peak_rss.py): must not grow
RSS_BEFORE = {("reader", "mysql"): 20.4 * MIB, ("reader", "pgsql"): 20.4 * MIB,
              ("writer", "mysql"): 28.9 * MIB, ("writer", "pgsql"): 30.1 * MIB}
RSS_TOLERANCE = 0.5 * MIB
RSS_SAME = 2 * MIB
STARTUP_RUNS = 15
SHA256_COST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sha256_cost.py")
DUMP_TOOLS = {"mysql": "mariadb-dump", "pgsql": "pg_dump"}
CLIENTS = {"mysql": "mariadb", "pgsql": "psql"}
LOADS = {"mysql": "cat | mariadb", "pgsql": "cat | psql -1 -f -"}


@dataclass
class Comparison:
    operation: str           # dump | restore
    bare: Series
    dbpipe: Series
    sha256: list[float] = field(default_factory=list)   # CPU s of SHA-256 alone, one per pair

    def ratio(self, attr: str) -> float:
        """Ratio of the medians (dbpipe / bare)."""
        return self.dbpipe.median(attr) / max(self.bare.median(attr), 1e-9)

    def pair_ratios(self, attr: str = "wall") -> list[float]:
        return [getattr(b, attr) / max(getattr(a, attr), 1e-9)
                for a, b in zip(self.bare.samples, self.dbpipe.samples, strict=False)]

    def relay_cpu(self) -> list[float]:
        """CPU dbpipe's side spent beyond the bare side, pair by pair."""
        return [b.cpu - a.cpu for a, b in zip(self.bare.samples, self.dbpipe.samples, strict=False)]

    def relay_per_sha(self) -> list[float]:
        return [cpu / max(sha, 1e-9) for cpu, sha in zip(self.relay_cpu(), self.sha256, strict=False)]

    def own_per_sha(self) -> list[float]:
        """The dbpipe process' own CPU (not its tool or client) against SHA-256, pair by pair."""
        return [s.own_cpu / max(sha, 1e-9) for s, sha in zip(self.dbpipe.samples, self.sha256, strict=False)]


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


@dataclass
class StartUp:
    """dbpipe-dump --version against the bare interpreter, paired."""

    dbpipe: Series = field(default_factory=lambda: Series("dbpipe-dump --version"))
    python: Series = field(default_factory=lambda: Series("python3 -c pass"))


class EngineBench:
    """Builds one engine's database size by size and runs both comparisons."""

    def __init__(self, db: databases.BenchDatabase, runs: int, dump_runs: int, workdir: str):
        self.db, self.runs, self.dump_runs, self.workdir = db, runs, dump_runs, workdir
        self.stream = os.path.join(workdir, f"{db.kind}-stream.sql")

    def measure_size(self, label: str, target_bytes: int) -> SizeResult:
        size, sample = self.build(target_bytes)
        result = SizeResult(label, size, [sample.rss])
        progress(f"{self.db.kind}: {label} dump is {size / MIB:.1f} MiB; comparing dumps")
        dump = self.compare("dump", self.bare_dump, self.dbpipe_dump, runs=self.dump_runs)
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

    def compare(self, operation: str, bare, dbpipe, before=None, after=None,
                runs: int | None = None) -> Comparison:
        result = Comparison(operation, Series("bare"), Series("dbpipe"))
        for run in range(runs or self.runs):
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
                         f"{sample.rss / MIB:.1f} MiB RSS, others {sample.others:.2f} s CPU")
            result.sha256.append(sha256_cost(self.stream))
        return result

    # --- the four sides: the same plumbing on both, cat standing for the file daemon ---
    def bare_dump(self) -> Sample:
        return self._run([self.db.bare_dump(), Command(["cat"])])

    def dbpipe_dump(self) -> Sample:
        return self._run([dbpipe_command("dbpipe-dump", *self.db.dbpipe_args(databases.SOURCE)),
                          Command(["cat"])])

    def bare_restore(self) -> Sample:
        return self._run([Command(["cat", self.stream]), self.db.bare_load(databases.RESTORED)],
                         rss_of=1)

    def dbpipe_restore(self) -> Sample:
        return self._run([Command(["cat", self.stream]),
                          dbpipe_command("dbpipe-restore", *self.db.dbpipe_args(databases.RESTORED))],
                         rss_of=1)

    def _run(self, commands, rss_of: int = 0) -> Sample:
        return run_pipeline(commands, server_cpu=self.db.server_cpu, log_dir=self.workdir,
                            rss_of=rss_of)

    def check_restored(self) -> None:
        """A restore that loaded less than the source would make the timing meaningless."""
        got, want = self.db.counts(databases.RESTORED), self.db.counts(databases.SOURCE)
        if got != want:
            raise BenchError(f"restored row counts {got} differ from the source {want}")


def sha256_cost(path: str) -> float:
    """CPU seconds SHA-256 alone needs for the bytes of path (the relay's yardstick)."""
    result = subprocess.run([SYSTEM_PYTHON, SHA256_COST, path], capture_output=True, text=True,
                            env=bare_env(), check=True)
    return float(result.stdout)


def measure_startup(runs: int = STARTUP_RUNS) -> StartUp:
    """What a command costs before any work: dbpipe-dump --version against python3 -c pass."""
    result = StartUp()
    sides = [(result.dbpipe, Command([str(BIN / "dbpipe-dump"), "--version"])),
             (result.python, Command([SYSTEM_PYTHON, "-c", "pass"]))]
    for run in range(runs):
        for series, command in sides if run % 2 == 0 else reversed(sides):
            series.samples.append(run_pipeline([command]))
    return result


def run_engine(kind: str, sizes: list[tuple[str, int]], runs: int, dump_runs: int,
               workdir: str) -> EngineResult:
    db = databases.make(kind)
    result = EngineResult(kind)
    bench = EngineBench(db, runs, dump_runs, workdir)
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

TIMES = "Dump and restore: dbpipe vs the bare tools (wall time)"
CPU = "CPU: dbpipe's relay against SHA-256 alone"
MEMORY = "Peak memory (RSS) at two dump sizes"
STARTUP = "Start-up"
NOISE = "How busy the machine was"


def render(report, results: list[EngineResult], startup: StartUp | None = None) -> list[bool]:
    """Add the core tables to the report; returns one verdict per target checked."""
    report.columns(TIMES, "engine", "dump size", "operation", "bare: wall s median (min–max)",
                   "dbpipe: wall s median (min–max)", "wall ratio, median of pairs (min–max)",
                   "target", "result")
    report.columns(CPU, "engine", "dump size", "operation", "pipeline CPU s bare / dbpipe",
                   "relay CPU s (dbpipe − bare)", "dbpipe process alone s", "SHA-256 alone s",
                   "relay / SHA-256 (min–max)", "dbpipe process / SHA-256 (min–max)",
                   "target (relay / SHA-256)", "result")
    report.columns(MEMORY, "engine", "process", *_size_columns(results), "growth", "target", "result")
    verdicts = []
    for engine in results:
        if engine.error:
            report.note(TIMES, f"{engine.kind}: benchmark failed: {engine.error}")
        for size in engine.sizes:
            for comparison in size.comparisons:
                verdicts += _time_row(report, engine, size, comparison)
                verdicts += _cpu_row(report, engine, size, comparison)
        verdicts += _memory_rows(report, engine)
    if startup is not None:
        _startup_rows(report, startup)
    _noise_rows(report, results)
    _notes(report)
    return verdicts


def _operation(engine: EngineResult, comparison: Comparison) -> str:
    if comparison.operation == "dump":
        return f"dump: dbpipe-dump | cat vs {DUMP_TOOLS[engine.kind]} | cat"
    return f"restore: cat | dbpipe-restore vs {LOADS[engine.kind]}"


def _spread(series: Series, attr: str = "wall") -> str:
    return f"{series.median(attr):.2f} ({series.minimum(attr):.2f}–{series.maximum(attr):.2f})"


def _time_row(report, engine: EngineResult, size: SizeResult, comparison: Comparison) -> list[bool]:
    target = (DUMP_WALL_TARGET[engine.kind] if comparison.operation == "dump"
              else RESTORE_WALL_TARGET)
    judged = size.label == "large"
    ratios = comparison.pair_ratios("wall")
    ratio = statistics.median(ratios)
    ok = ratio <= target
    report.row(TIMES, engine.version or engine.kind, f"{size.stream_bytes / MIB:.0f} MiB",
               _operation(engine, comparison), _spread(comparison.bare), _spread(comparison.dbpipe),
               f"**{ratio:.3f}** ({min(ratios):.3f}–{max(ratios):.3f})",
               f"≤ {target:.2f}" if judged else "(info)",
               ("pass" if ok else f"MISS by {ratio - target:.3f}") if judged else "")
    return [ok] if judged else []


def _cpu_row(report, engine: EngineResult, size: SizeResult, comparison: Comparison) -> list[bool]:
    judged = size.label == "large" and comparison.operation == "dump"
    relay = statistics.median(comparison.relay_cpu())
    sha = statistics.median(comparison.sha256)
    per_sha, own = comparison.relay_per_sha(), comparison.own_per_sha()
    ratio = statistics.median(per_sha)
    ok = ratio <= RELAY_CPU_TARGET
    report.row(CPU, engine.version or engine.kind, f"{size.stream_bytes / MIB:.0f} MiB",
               _operation(engine, comparison),
               f"{comparison.bare.median('cpu'):.2f} / {comparison.dbpipe.median('cpu'):.2f}",
               f"{relay:.3f}", f"{comparison.dbpipe.median('own_cpu'):.3f}", f"{sha:.3f}",
               f"**{ratio:.2f}** ({min(per_sha):.2f}–{max(per_sha):.2f})",
               f"{statistics.median(own):.2f} ({min(own):.2f}–{max(own):.2f})",
               f"≤ {RELAY_CPU_TARGET:.1f} × SHA-256" if judged else "(info)",
               ("pass" if ok else f"MISS by {ratio - RELAY_CPU_TARGET:.2f} × SHA-256") if judged else "")
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
    rows = [("reader: dbpipe-dump", [max(s.reader_rss) for s in engine.sizes], "reader"),
            ("writer: dbpipe-restore", [max(s.writer_rss(), default=0) for s in engine.sizes], "writer"),
            (f"for reference: {DUMP_TOOLS[engine.kind]}", [s.tool_rss("dump") for s in engine.sizes], ""),
            (f"for reference: {CLIENTS[engine.kind]} client", [s.tool_rss("restore") for s in engine.sizes],
             "")]
    for name, peaks, role in rows:
        growth = peaks[-1] - peaks[0]
        before = RSS_BEFORE.get((role, engine.kind), 0)
        ok = max(peaks) <= before + RSS_TOLERANCE and abs(growth) <= RSS_SAME
        cells = [f"{peak / MIB:.1f} MiB ({size.stream_bytes / MIB:.0f} MiB)"
                 for peak, size in zip(peaks, engine.sizes, strict=False)]
        report.row(MEMORY, engine.version or engine.kind, name, *cells, f"{growth / MIB:+.1f} MiB",
                   f"≤ {before / MIB:.1f} MiB (before) + {RSS_TOLERANCE / MIB:.1f}, same at both sizes"
                   if role else "", ("pass" if ok else "MISS") if role else "")
        verdicts += [ok] if role else []
    return verdicts


def _startup_rows(report, startup: StartUp) -> None:
    report.columns(STARTUP, "command", "wall s median (min–max)", "CPU s median (min–max)")
    for series in (startup.dbpipe, startup.python):
        report.row(STARTUP, series.label, _spread(series), _spread(series, "cpu"))
    extra = [b.cpu - a.cpu for a, b in zip(startup.python.samples, startup.dbpipe.samples, strict=False)]
    report.note(STARTUP, f"{len(extra)} pairs; dbpipe's own start-up (imports, parser, logging) "
                f"beyond the interpreter's: {statistics.median(extra):.3f} s CPU (median of pairs)")


def _noise_rows(report, results: list[EngineResult]) -> None:
    """Other jobs' CPU during the measured runs, as a share of the machine."""
    cores = os.cpu_count() or 1
    report.columns(NOISE, "engine", "dump size", "operation",
                   "other processes' CPU during a run, median (max), share of all cores",
                   "bare side's wall spread (max / min)")
    for engine in results:
        for size in engine.sizes:
            for comparison in size.comparisons:
                samples = comparison.bare.samples + comparison.dbpipe.samples
                shares = [s.others / max(s.wall * cores, 1e-9) for s in samples]
                spread = comparison.bare.maximum("wall") / max(comparison.bare.minimum("wall"), 1e-9)
                report.row(NOISE, engine.version or engine.kind, f"{size.stream_bytes / MIB:.0f} MiB",
                           comparison.operation, f"{statistics.median(shares):.0%} ({max(shares):.0%})",
                           f"{spread:.2f}")


def _notes(report) -> None:
    report.note(TIMES, "like for like: on both sides the data ends in a pipe read by `cat`, which "
                "stands for the Bareos file daemon; the dump tool gets exactly the flags dbpipe-dump "
                "gives it, and dbpipe-dump's relay is the extra process on its side")
    report.note(TIMES, "restore: both sides read the same stream from `cat` (the file daemon) into an "
                "empty database; dbpipe-restore does its full verified, atomic restore (mysql: staging "
                "database + RENAME TABLE; pgsql: one transaction committed after verification)")
    report.note(TIMES, "wall ratio = dbpipe / bare pair by pair, median over the pairs (targets "
                "checked at the large size); runs alternate AB, BA, AB, ...")
    report.note(CPU, "CPU = user+system seconds of every process of the pipeline (tool, cat, dbpipe "
                "and its children); relay CPU = dbpipe side − bare side pair by pair, median; the "
                "database server's own CPU is excluded (it is in latest.json)")
    report.note(CPU, "dbpipe process alone = user+system seconds of the dbpipe process itself (all "
                "its threads, not the dump tool or client it waits for; getrusage at its exit): "
                "the relay without the noise of the tool's own CPU, which the difference carries")
    report.note(CPU, "SHA-256 alone = CPU of hashlib.sha256 over the stream's bytes in 1 MiB blocks, "
                "no reading, no start-up (bench/sha256_cost.py, after every pair); relay / SHA-256 "
                "is taken pair by pair; the target applies to the dump relay")
    report.note(MEMORY, "RSS of the dbpipe process itself (VmHWM at its exit, max over all runs), "
                "not of the dump tool or client it starts; those are listed for reference")
    report.note(NOISE, "other processes' CPU = CPU the whole machine spent during a run (/proc/stat) "
                "minus the measured pipeline and the database server; a share near 0 % means a "
                "quiet machine")
