"""Point-in-time restore time (RTO) of PostgreSQL against a logical restore.

A private PostgreSQL archiving with dbpipe-wal-archive holds a database of
--size-mb MiB (one table, 200-byte rows); a base backup is streamed and
stored (dbpipe-pg-basebackup); then --write-seconds of writes (batched
updates and inserts) produce WAL.  Measured:

  pitr      dbpipe-pitr-restore --beside --to <1 s before the writes ended>:
            plan (checksums, pg_waldump), extract, replay, promote, verify
  logical   dbpipe-dump of the database at that point, then dbpipe-restore
            of it into a new database (what a nightly dump gives back)

Run:  .venv/bin/python bench/bench_pitr.py [--size-mb 200] [--write-seconds 60]
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from fixtures import ROOT, bareos_env, servers  # the bench's door to dbpipe and testkit
from testkit.pitr import archive_command, base_backup, configure, owned_dir, switch_wal, wait_archived

ENV = bareos_env()


def timed(argv, **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    kwargs.setdefault("stdout", subprocess.PIPE)
    result = subprocess.run(argv, env=ENV, cwd="/", stderr=subprocess.PIPE, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode()[-800:]}")
    return time.perf_counter() - started, result


def populate(server, size_mb: int) -> None:
    rows = size_mb * (1 << 20) // 250
    server.create_database("app")
    server.sql("CREATE TABLE items (id bigserial PRIMARY KEY, owner int, filler text, ts timestamptz DEFAULT now())",
               database="app")
    for start in range(0, rows, 200_000):
        server.sql(f"INSERT INTO items (owner, filler) SELECT g % 1000, repeat(md5(g::text), 6) "
                   f"FROM generate_series({start}, {min(rows, start + 200_000) - 1}) g", database="app")
    server.sql("CHECKPOINT")


def write_for(server, seconds: float) -> int:
    deadline, batches = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        server.sql(f"UPDATE items SET owner = owner + 1 WHERE id % 97 = {batches % 97}; "
                   "INSERT INTO items (owner, filler) SELECT 1, repeat('x', 190) FROM generate_series(1, 2000)",
                   database="app")
        batches += 1
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--write-seconds", type=float, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dbpipe-bench-pitr-"))
    os.chmod(work, 0o755)
    server = servers.local_postgres()
    try:
        spool, bases = owned_dir(work / "spool"), work / "bases"
        configure(server, {"archive_mode": "on", "archive_command": archive_command(spool)})
        populate(server, args.size_mb)
        db_bytes = int(server.sql("SELECT pg_database_size('app')"))
        started = time.perf_counter()
        base_backup(server, bases)
        base_seconds = time.perf_counter() - started
        batches = write_for(server, args.write_seconds)
        target = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
        server.sql("INSERT INTO items (owner) VALUES (-1)", database="app")
        wait_archived(server, switch_wal(server), timeout=600)
        segments = len([p for p in spool.iterdir() if len(p.name) == 24])
        pitr, result = timed([str(ROOT / "bin" / "dbpipe-pitr-restore"), "--to", target.isoformat(), "--beside",
                              "--datadir", str(Path(server.workdir) / "data"), "--wal", str(spool),
                              "--bases", str(bases)])
        new = result.stdout.decode().split("data directory ", 1)[1].split(",", 1)[0]
        subprocess.run(["runuser", "-u", "postgres", "--", servers._pg_bin("pg_ctl"), "-D", new, "-m", "fast",
                        "-w", "stop"], capture_output=True)
        for suffix in ("", ".wal", ".run"):
            shutil.rmtree(new + suffix, ignore_errors=True)
        dump = work / "app.sql"
        with open(dump, "wb") as out:
            dump_seconds = timed([str(ROOT / "bin" / "dbpipe-dump"), *server.args("app")], stdout=out)[0]
        with open(dump, "rb") as stdin:
            load_seconds = timed([str(ROOT / "bin" / "dbpipe-restore"), *server.args("app_logical")], stdin=stdin)[0]
        print(f"database {db_bytes / (1 << 20):.0f} MiB; base backup {base_seconds:.1f} s "
              f"({sum(p.stat().st_size for p in bases.iterdir()) / (1 << 20):.0f} MiB stored); "
              f"{args.write_seconds:.0f} s of writes ({batches} batches) = {segments} WAL segments archived")
        print("| restore | seconds |\n|---|---|")
        print(f"| point in time (`dbpipe-pitr-restore --beside`, {segments} segments replayed) | {pitr:.1f} |")
        print(f"| logical: `dbpipe-restore` of a dump of the same data | {load_seconds:.1f} "
              f"(+ {dump_seconds:.1f} s to dump) |")
    finally:
        servers.destroy(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
