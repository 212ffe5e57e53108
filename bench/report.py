"""The benchmark report: named sections, rendered as Markdown that pastes into the README.

A section holds any of: a multi-column table (columns + rows), name/value
rows (BenchReport.add), and notes.  Sections render in the order they were first
used.  See the interface description at the top of bench/run-bench.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Context:
    """What a bench_*.py module may use besides the report."""

    root: Path              # the repository
    workdir: Path           # a scratch directory, removed after the run
    size_mb: int            # the large dump size (MiB) the core section measured
    small_mb: int           # the small dump size (MiB)
    runs: int               # runs per side of each comparison
    env: dict               # the bare Bareos-like environment for commands


@dataclass
class Section:
    title: str
    columns: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        parts = [f"### {self.title}", ""]
        if self.columns:
            parts += _table(self.columns, self.rows) + [""]
        if self.pairs:
            parts += _table(("measurement", "value"), self.pairs) + [""]
        parts += [f"- {note}" for note in self.notes] + ([""] if self.notes else [])
        return "\n".join(parts)


class BenchReport:
    def __init__(self, context: Context, title: str = "Benchmark"):
        self.context = context
        self.title = title
        self._sections: dict[str, Section] = {}

    def section(self, name: str) -> Section:
        return self._sections.setdefault(name, Section(name))

    def add(self, section: str, name: str, value) -> None:
        """One 'name | value' row in section."""
        self.section(section).pairs.append((str(name), fmt(value)))

    def columns(self, section: str, *names: str) -> None:
        """Give section a multi-column table (rows then come from row())."""
        self.section(section).columns = tuple(names)

    def row(self, section: str, *cells) -> None:
        current = self.section(section)
        if len(cells) != len(current.columns):
            raise ValueError(f"{section}: {len(cells)} cells for {len(current.columns)} columns")
        current.rows.append(tuple(fmt(cell) for cell in cells))

    def note(self, section: str, text: str) -> None:
        self.section(section).notes.append(" ".join(str(text).split()))

    def render(self) -> str:
        body = "\n".join(section.render() for section in self._sections.values())
        return f"## {self.title}\n\n{body}".rstrip() + "\n"


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(columns, rows) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def run_standalone(title: str, root: Path, size_mb: int, small_mb: int, env: dict,
                   body: Callable[["BenchReport"], None]) -> int:
    """A bench_*.py run on its own (not from run-bench): its report on
    stdout, its scratch directory removed whatever happens."""
    workdir = Path(tempfile.mkdtemp(prefix="dbpipe-bench-"))
    try:
        report = BenchReport(Context(root, workdir, size_mb, small_mb, 1, env), title)
        body(report)
        sys.stdout.write(report.render())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
