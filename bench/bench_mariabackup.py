"""Physical (mariabackup) vs logical backups of a large MariaDB database.

On a private MariaDB holding the Nextcloud-like benchmark database
(bench/databases.py) of report.context.size_mb MiB on disk (default 400):

  backup   full, then ~1% of the rows changed, incremental 1, another ~1%
           changed, incremental 2 - each dbpipe-mariabackup > file (time, size);
           plus dbpipe-dump of the same data at that point, for reference.
  restore  physical: the writer stores the three pieces, prepare, copy-back
           into a fresh private server (stop, swap, start, check);
           logical: dbpipe-restore of the dbpipe-dump stream into an empty
           database on the running server.
The restored copies are compared with the source (CHECKSUM TABLE).

Run alone with a size of your choice:
    .venv/bin/python bench/bench_mariabackup.py --size-mb 40
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import databases  # noqa: E402
from fixtures import ROOT, private_service  # noqa: E402
from measure import MIB, Sample, bare_env, dbpipe_command, progress, run_pipeline  # noqa: E402

SECTION = "Physical backups (mariabackup) vs logical dumps"
CHANGED_SHARE = 100          # every 100th row: ~1 %
CALIBRATION_UNITS = 5


def run(report) -> None:
    context = report.context
    workdir = Path(tempfile.mkdtemp(prefix="mariabackup-", dir=context.workdir))
    db = databases.MariaDB()
    restored = None
    report.columns(SECTION, "operation", "stream size", "wall time", "CPU (our processes)")
    try:
        db.start()
        size = _fill(db, context.size_mb * MIB)
        report.add(SECTION, "database on disk (InnoDB files)",
                   f"{size / MIB:.0f} MiB, {db.units * 1000} oc_filecache rows")
        pieces = _backups(report, db, workdir)
        logical = _logical_dump(report, db, workdir)
        expected = _checksums(db.server, databases.SOURCE)
        restored = _physical_restore(report, pieces, workdir)
        _logical_restore(report, db, logical)
        _compare(report, expected, restored, db)
        report.note(SECTION, "physical restore = storing the pieces + prepare + copy-back (stop, "
                             "swap data directory, start, check every table); logical = dbpipe-restore "
                             "into an empty database of the running server")
    finally:
        if restored is not None:
            restored.destroy()
        db.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def _fill(db, wanted: int) -> int:
    """Add rows until the database's InnoDB files reach wanted bytes."""
    progress(f"mariabackup: filling the database to {wanted // MIB} MiB")
    db.add_units(CALIBRATION_UNITS)
    size = _disk_size(db)
    while size < wanted:
        per_unit = max(size / db.units, 1)
        db.add_units(max(1, int((wanted - size) / per_unit * 1.05)))
        size = _disk_size(db)
    _checkpoint(db)
    return size


def _disk_size(db) -> int:
    directory = os.path.join(db.server.workdir, "data", databases.SOURCE)
    db.server.sql("FLUSH TABLES")
    return sum(entry.stat().st_size for entry in os.scandir(directory) if entry.name.endswith(".ibd"))


def _backups(report, db, workdir: Path) -> list[Path]:
    state = workdir / "state"
    streams = []
    for step, level in enumerate(("full", "incremental", "incremental")):
        if step:
            _change(db, step)
        stream = workdir / f"{step}-{level}.dbpipe"
        sample = run_pipeline([_reader(db, state, level)], stdout=str(stream), server_cpu=db.server_cpu)
        streams.append(stream)
        name = ("full backup", "incremental 1 (after changing the newest ~1% of the rows)",
                "incremental 2 (after changing every 100th row, ~1%)")[step]
        report.row(SECTION, name, f"{stream.stat().st_size / MIB:.1f} MiB", f"{sample.wall:.1f} s",
                   f"{sample.cpu:.1f} s")
    return streams


def _reader(db, state: Path, level: str):
    return dbpipe_command("dbpipe-mariabackup", "--socket", db.server.socket, "--user",
                          db.server.admin_user, "--state-dir", str(state), "--level", level,
                          env=bare_env(TMPDIR=str(state.parent)))


def _change(db, step: int) -> None:
    """~1 % of the files and cards: first the newest rows (clustered, as when
    recent uploads change), then every 100th row (scattered, the worst case
    for a page-based incremental)."""
    files, cards = db.units * databases.FILES_PER_UNIT, db.units * databases.CARDS_PER_UNIT
    where = {1: (f"fileid > {files - files // CHANGED_SHARE}", f"id > {cards - cards // CHANGED_SHARE}"),
             2: (f"fileid % {CHANGED_SHARE} = 7", f"id % {CHANGED_SHARE} = 7")}[step]
    db.server.sql(f"UPDATE oc_filecache SET mtime = mtime + 1, etag = LEFT(MD5(CONCAT(etag, {step})), 13) "
                  f"WHERE {where[0]}; UPDATE oc_cards SET lastmodified = lastmodified + 1 WHERE {where[1]}",
                  databases.SOURCE)
    _checkpoint(db)


def _checkpoint(db) -> None:
    """Let InnoDB write its dirty pages, as a server does in the hours between
    two backups; otherwise every backup carries the redo log of the bulk load."""
    server = db.server
    server.sql("SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0.001; SET GLOBAL innodb_max_dirty_pages_pct = 0")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and int(server.sql(
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
            "WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'") or 0) > 0:
        time.sleep(0.5)
    time.sleep(2)  # the checkpoint follows the flush
    server.sql("SET GLOBAL innodb_max_dirty_pages_pct = 90; SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0")


def _logical_dump(report, db, workdir: Path) -> Path:
    stream = workdir / "logical.sql"
    sample = run_pipeline([dbpipe_command("dbpipe-dump", *db.dbpipe_args(databases.SOURCE))],
                          stdout=str(stream), server_cpu=db.server_cpu)
    report.row(SECTION, "logical dump (dbpipe-dump) of the same data", f"{stream.stat().st_size / MIB:.1f} MiB",
               f"{sample.wall:.1f} s", f"{sample.cpu:.1f} s")
    return stream


def _physical_restore(report, pieces: list[Path], workdir: Path):
    PrivateService, SERVICE_MANAGER = private_service()
    landed = workdir / "landed"
    samples = [run_pipeline([dbpipe_command("dbpipe-mariabackup-restore", "--from-stdin", "--into",
                                            str(landed))], stdin=str(piece)) for piece in pieces]
    store = Sample(sum(s.wall for s in samples), sum(s.cpu for s in samples), 0, 0)
    prepare = run_pipeline([dbpipe_command("dbpipe-mariabackup-restore", "prepare", str(landed))])
    target = PrivateService("bench")
    copy = run_pipeline([dbpipe_command(
        "dbpipe-mariabackup-restore", "copy-back", str(landed), "--datadir", target.datadir,
        "--service", target.root, "--service-manager", SERVICE_MANAGER, "--defaults-file", target.cnf,
        "--state-dir", str(workdir / "state"), "--start-timeout", "600")])
    total = store.wall + prepare.wall + copy.wall
    for label, sample in (("restore: store 3 pieces (writer)", store),
                          ("restore: prepare full + 2 incrementals", prepare),
                          ("restore: copy-back, start, check", copy)):
        report.row(SECTION, label, "", f"{sample.wall:.1f} s", f"{sample.cpu:.1f} s")
    report.row(SECTION, "physical restore, total", "", f"{total:.1f} s", "")
    return target


def _logical_restore(report, db, stream: Path) -> None:
    db.reset(databases.RESTORED)
    sample = run_pipeline([dbpipe_command("dbpipe-restore", *db.dbpipe_args(databases.RESTORED))],
                          stdin=str(stream), server_cpu=db.server_cpu)
    report.row(SECTION, "logical restore (dbpipe-restore), total", "", f"{sample.wall:.1f} s",
               f"{sample.cpu:.1f} s")


def _checksums(server, database: str) -> dict[str, str]:
    result = server.sql(f"CHECKSUM TABLE `{database}`.oc_filecache, `{database}`.oc_cards")
    return {line.split("\t")[0].split(".", 1)[1]: line.split("\t")[1] for line in result.splitlines()}


def _compare(report, expected: dict, restored, db) -> None:
    physical = _checksums(restored, databases.SOURCE)
    logical = _checksums(db.server, databases.RESTORED)
    same = physical == expected and logical == expected
    report.note(SECTION, "restored data equals the source (CHECKSUM TABLE): "
                         + ("yes, both" if same else f"NO: physical {physical == expected}, "
                                                     f"logical {logical == expected}"))


def main(argv) -> int:
    from report import run_standalone
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=400, help="database size on disk (default 400)")
    args = parser.parse_args(argv)
    return run_standalone("Benchmark: mariabackup", ROOT, args.size_mb, max(1, args.size_mb // 4),
                          bare_env(), run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
