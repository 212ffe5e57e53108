"""The cost of continuous archiving on the server: dbpipe-wal-archive per WAL segment.

PostgreSQL waits for archive_command once per 16 MiB segment (in its
archiver process, not in a backend, but a slow command lets pg_wal grow).
Measured here:

  command   dbpipe-wal-archive run N times on a 16 MiB segment into a spool
            on the disk of the test directory: wall time per segment as the
            archiver sees it (process start, copy, SHA-256, fsyncs, rename),
            median / 95th percentile / max; the same for `cp` + `sync -f`
            of the file, the least any durable archive_command does.
  server    a private PostgreSQL archiving with it under a write workload:
            segments per second the archiver kept up with, failures.
  spool     bytes per segment in the spool (segment + checksum record).

Run:  .venv/bin/python bench/bench_wal_archive.py [--segments 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from fixtures import ROOT, bareos_env, servers  # the bench's door to dbpipe and testkit
from testkit.pitr import archive_command, configure, owned_dir

SEGMENT = 16 << 20
ENV = bareos_env()


def timed(argv) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000


def summary(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return (f"| {label} | {statistics.median(ordered):.0f} | {p95:.0f} | {ordered[-1]:.0f} | {len(ordered)} |")


def command_latency(work: Path, count: int) -> list[str]:
    segment = work / "segment"
    segment.write_bytes(os.urandom(SEGMENT))
    spool, copies = work / "spool", work / "copies"
    copies.mkdir()
    ours = [timed([str(ROOT / "bin" / "dbpipe-wal-archive"), str(segment), f"0000000100000000000000{i:02X}",
                   "--spool", str(spool)]) for i in range(count)]
    plain = [timed(["sh", "-c", f"cp {segment} {copies}/{i} && sync -f {copies}/{i}"]) for i in range(count)]
    per_segment = sum(p.stat().st_size for p in spool.iterdir()) / count
    return [summary("dbpipe-wal-archive", ours), summary("cp + sync -f (floor)", plain),
            f"\nspool bytes per segment: {per_segment / (1 << 20):.3f} MiB (segment + SHA-256 record)"]


def server_rate(work: Path, count: int) -> str:
    spool = owned_dir(work / "server-spool")
    os.chmod(work, 0o755)
    server = servers.local_postgres()
    try:
        configure(server, {"archive_mode": "on", "archive_command": archive_command(spool)})
        server.sql("CREATE TABLE t (x int)")
        started = time.monotonic()
        for _ in range(count):
            server.sql("INSERT INTO t VALUES (1); SELECT pg_switch_wal()")
        while int(server.sql("SELECT archived_count FROM pg_stat_archiver")) < count:
            time.sleep(0.05)
        seconds = time.monotonic() - started
        failed = server.sql("SELECT failed_count FROM pg_stat_archiver")
        return (f"server: {count} segments switched and archived in {seconds:.1f} s "
                f"({count / seconds:.1f} segments/s, {count * 16 / seconds:.0f} MiB/s of WAL), failures: {failed}")
    finally:
        servers.destroy(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dbpipe-bench-wal-"))
    try:
        print("| per 16 MiB segment | median ms | p95 ms | max ms | runs |\n|---|---|---|---|---|")
        print("\n".join(command_latency(work, args.segments)))
        print(server_rate(work, args.segments))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
