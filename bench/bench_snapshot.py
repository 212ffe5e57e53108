"""How long is Nextcloud closed: snapshot mode vs the classic method 4.3.

A btrfs on a loop device (a sparse image in /var/tmp) holds a sample
Nextcloud (the occ double of tests/nextcloud, run by php-cli as www-data)
whose data/ is a subvolume of its own; its database is the benchmark's
Nextcloud-like MariaDB database (bench/databases.py), the same for every
size.  data/ is filled to --sizes GiB (default 1 and 8) in files of
FILE_SIZE: FILE_DATA real bytes and a hole ("sparse-ish": 8 GiB of files
need 1 GiB of disk).  For each size, alternating, --runs times:

  snapshot  nextcloud-before-backup --snapshot; then what the job does: read
            every byte of every file the FileSet names, from the snapshot
            view, with MD5 (as Signature = MD5 makes bareos-fd do), and the
            bpipe reader dbpipe-dump --from-snapshot; nextcloud-after-backup.
            Window: the before hook's 'maintenance window: N.N s'.
  classic   method 4.3 (backup-nextcloud): nextcloud-before-backup; the same
            reads from the live directories and the bpipe reader dbpipe-dump
            --nextcloud (it dumps while Nextcloud is closed);
            nextcloud-after-backup.  Window: the after hook's line, i.e. the
            whole job.

The job here is the client's share of a Bareos job (reading, hashing, the
reader); a real job adds sending to the storage daemon, so real classic
windows are longer.  Disk space: the window's database stream, what a fresh
snapshot costs, and what CHANGED_MIB MiB rewritten in place during the job
keep occupied until the after hook.  Before every job the live files are
dropped from the page cache (a fresh snapshot shares no cache with them, and
a large data/ is not cached anyway), so both sides read from the device.

Run as root:  make bench-snapshot     or
              .venv/bin/python bench/bench_snapshot.py --sizes 1,8 --runs 3 --settle 10
Results: printed as Markdown, and bench/results/snapshot.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

import databases  # noqa: E402
from fixtures import nextcloud_fixtures  # noqa: E402
from measure import BARE_PATH, BIN, MIB, bare_env  # noqa: E402

btrfs, installs = nextcloud_fixtures()

GIB = 1 << 30
FILE_SIZE = 512 * 1024
FILE_DATA = 64 * 1024
FILES_PER_DIR = 256
DB_UNITS = 40                      # x 1000 oc_filecache rows (+ cards)
CHANGED_MIB = 256
WINDOW = re.compile(r"^maintenance window: (\d+\.\d) s$", re.MULTILINE)
BREAKDOWN = re.compile(r"^window: (.*)$", re.MULTILINE)
PASSWORD = "bench-pw"


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="dbpipe-bench-snapshot-", dir="/var/tmp"))
        os.chmod(self.work, 0o755)
        self.state, self.view = self.work / "state", self.work / "view"
        self.fs: btrfs.LoopBtrfs | None = None
        self.db = databases.MariaDB()
        self.files = 0
        self.results: dict = {"settle": args.settle, "runs": args.runs, "sizes": {}}

    # --- setup -----------------------------------------------------------------
    def start(self) -> None:
        largest = max(self.args.sizes)
        image = f"{int(largest * 1.25 + 2)}G"      # sparse: only written blocks use disk
        self.fs = btrfs.LoopBtrfs(size=image, base=str(self.work))
        self.db.start()
        self.db.add_units(DB_UNITS)
        self.db.server.create_user("ncbench", PASSWORD, databases.SOURCE)
        root = self.fs.mount / "nextcloud"
        root.mkdir(mode=0o755)
        self.fs.subvolume(root / "data")
        values = {"dbtype": "mysql", "dbname": databases.SOURCE, "dbuser": "ncbench",
                  "dbpassword": PASSWORD, "dbhost": f"localhost:{self.db.server.socket}",
                  "dbport": "", "mysql.utf8mb4": True}
        self.install = installs.build(root, values)
        self.root = root

    def grow(self, gib: float) -> None:
        """Add files to data/ until it holds gib GiB (logical size)."""
        web = installs.web_account()
        block = os.urandom(FILE_DATA)
        wanted = int(gib * GIB) // FILE_SIZE
        while self.files < wanted:
            user = ("alice", "bob")[self.files % 2]
            directory = self.root / "data" / user / "files" / f"dir-{self.files // FILES_PER_DIR:04d}"
            if not directory.exists():
                directory.mkdir(parents=True)
                os.chown(directory, web.pw_uid, web.pw_gid)
            path = directory / f"file-{self.files:06d}.bin"
            with open(path, "wb") as handle:
                handle.write(self.files.to_bytes(8, "big") + block[8:])
                handle.truncate(FILE_SIZE)
            os.chown(path, web.pw_uid, web.pw_gid)
            self.files += 1
        subprocess.run(["sync"], check=True)

    # --- one job ------------------------------------------------------------------
    def job(self, mode: str) -> dict:
        env = bare_env(DBPIPE_STATE_DIR=str(self.state), DBPIPE_SYSLOG_SOCKET=str(self.work / "no-syslog"))
        common = ["--state-dir", str(self.state), "--settle", str(self.args.settle)]
        snapshot = ["--snapshot", "--snapshot-root", str(self.view)] if mode == "snapshot" else []
        evict(self.root)
        used_before = fs_used(self.fs.mount)
        phases = Phases()
        before = hook("nextcloud-before-backup", self.root, *common, *snapshot, env=env)
        phases.mark("before")
        used_snapshot = fs_used(self.fs.mount)
        listed = self.fileset(snapshot, env)
        read_bytes = read_like_bareos_fd(listed["include"], listed["exclude"])
        phases.mark("files")
        reader = ["--from-snapshot", "--state-dir", str(self.state)] if snapshot else []
        stream = run([str(BIN / "dbpipe-dump"), "--nextcloud", str(self.root), *reader], env)
        phases.mark("reader")
        changed = self.change_in_place() if mode == "snapshot" and self.args.measure_space else None
        used_changed = fs_used(self.fs.mount)
        phases.pause()                      # the users' changes are not the job's time
        after = hook("nextcloud-after-backup", self.root, *common, env=env)
        phases.mark("after")
        window_text = before if mode == "snapshot" else after
        result = {"window": float(WINDOW.search(window_text).group(1)), "job": round(phases.total(), 1),
                  "phases": phases.spent, "read_bytes": read_bytes, "stream_bytes": len(stream)}
        if mode == "snapshot":
            result["breakdown"] = BREAKDOWN.search(before).group(1)
            result["snapshot_cost"] = used_snapshot - used_before
            if changed is not None:
                subprocess.run(["btrfs", "subvolume", "sync", str(self.fs.mount)], check=True,
                               capture_output=True)
                result["changed_bytes"] = changed
                result["held_by_snapshot"] = used_changed - fs_used(self.fs.mount, sync=True)
        return result

    def fileset(self, snapshot: list[str], env) -> dict:
        lists = {}
        for name, extra in (("include", []), ("exclude", ["--exclude"])):
            out = run([str(BIN / "nextcloud-fileset"), *extra, *snapshot, str(self.root)], env)
            lists[name] = out.decode().split()
        return lists

    def change_in_place(self) -> int:
        """Users rewrite CHANGED_MIB of existing file data while the job runs."""
        block, done = os.urandom(FILE_DATA), 0
        for path in sorted((self.root / "data").rglob("file-*.bin")):
            if done >= CHANGED_MIB * MIB:
                break
            with open(path, "r+b") as handle:
                handle.write(block)
            done += FILE_DATA
        subprocess.run(["sync"], check=True)
        return done

    def stop(self) -> None:
        if self.fs is not None:
            self.fs.remove()
        self.db.destroy()
        shutil.rmtree(self.work, ignore_errors=True)


class Phases:
    """Seconds per part of a job, leaving out pauses."""

    def __init__(self):
        self.spent: dict[str, float] = {}
        self._last = time.monotonic()

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.spent[name] = round(now - self._last, 2)
        self._last = now

    def pause(self) -> None:
        self._last = time.monotonic()

    def total(self) -> float:
        return sum(self.spent.values())


def hook(name: str, root: Path, *args: str, env: dict) -> str:
    return run([str(BIN / name), str(root), *args], env).decode()


def run(argv: list[str], env: dict) -> bytes:
    result = subprocess.run(argv, capture_output=True, env=env, cwd="/")
    if result.returncode != 0:
        raise RuntimeError(f"{os.path.basename(argv[0])} exited {result.returncode}: "
                           f"{result.stderr.decode()[-2000:]}{result.stdout.decode()[-2000:]}")
    return result.stdout


def read_like_bareos_fd(include: list[str], exclude: list[str]) -> int:
    """Every byte of every regular file below include, MD5 as Signature = MD5."""
    skipped, total = set(exclude), 0
    for top in include:
        for directory, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if os.path.join(directory, d) not in skipped]
            for name in files:
                path = os.path.join(directory, name)
                if path in skipped or not os.path.isfile(path) or os.path.islink(path):
                    continue
                digest = hashlib.md5()
                with open(path, "rb", buffering=0) as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
                        total += len(chunk)
    return total


def evict(root: Path) -> None:
    """Drop the live files from the page cache: a fresh snapshot shares no
    cache with them (another subvolume), and a job on a large data/ finds
    nothing cached either; so both sides read from the device."""
    for directory, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def fs_used(mount: Path, sync: bool = False) -> int:
    if sync:
        subprocess.run(["btrfs", "filesystem", "sync", str(mount)], check=True, capture_output=True)
    out = subprocess.run(["btrfs", "filesystem", "usage", "-b", str(mount)], check=True,
                         capture_output=True, text=True, env={"PATH": BARE_PATH}).stdout
    return int(re.search(r"^\s*Used:\s+(\d+)", out, re.MULTILINE).group(1))


def median(values) -> float:
    return round(statistics.median(values), 1)


def report(results: dict) -> str:
    lines = [f"settle {results['settle']:g} s, {results['runs']} runs per cell (median), "
             f"database dump {results['stream_mib']:.1f} MiB",
             "", "| data/ | files | window: snapshot | window: classic 4.3 | job: snapshot | "
                 "job: classic | snapshot window breakdown (last run) |",
             "|---|---|---|---|---|---|---|"]
    for size, cell in results["sizes"].items():
        lines.append(f"| {size} GiB | {cell['files']} | {cell['snapshot_window']} s | "
                     f"{cell['classic_window']} s | {cell['snapshot_job']} s | {cell['classic_job']} s | "
                     f"{cell['breakdown']} |")
    lines += ["", "| data/ | mode | before hook | files read | bpipe reader | after hook |",
              "|---|---|---|---|---|---|"]
    for size, cell in results["sizes"].items():
        for mode in ("snapshot", "classic"):
            spent = cell["phases"][mode]
            lines.append(f"| {size} GiB | {mode} | " + " | ".join(
                f"{spent[name]} s" for name in ("before", "files", "reader", "after")) + " |")
    space = results.get("space")
    if space:
        lines += ["", f"disk: fresh snapshots {space['snapshot_cost'] / MIB:.1f} MiB; "
                      f"{space['changed_bytes'] / MIB:.0f} MiB rewritten during the job kept "
                      f"{space['held_by_snapshot'] / MIB:.0f} MiB until the after hook; "
                      f"database stream {results['stream_mib']:.1f} MiB in the state directory"]
    return "\n".join(lines)


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8", help="GiB in data/, comma-separated (default 1,8)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0, help="the hooks' --settle (default 10)")
    args = parser.parse_args(argv)
    args.sizes = [float(s) for s in args.sizes.split(",")]
    reason = btrfs.why_not()
    if reason:
        print(f"bench-snapshot: {reason}", file=sys.stderr)
        return 69
    bench = Bench(args)
    try:
        bench.start()
        for size in sorted(args.sizes):
            bench.grow(size)
            cell = {"files": bench.files, "snapshot": [], "classic": []}
            for run_number in range(args.runs):
                last = size == max(args.sizes) and run_number == args.runs - 1
                args.measure_space = last
                for mode in ("snapshot", "classic") if run_number % 2 == 0 else ("classic", "snapshot"):
                    sample = bench.job(mode)
                    cell[mode].append(sample)
                    print(f"{size:g} GiB {mode}: window {sample['window']} s, job {sample['job']} s",
                          file=sys.stderr)
                    if "held_by_snapshot" in sample:
                        bench.results["space"] = {k: sample[k] for k in
                                                  ("snapshot_cost", "changed_bytes", "held_by_snapshot")}
            bench.results["sizes"][f"{size:g}"] = {
                "files": cell["files"],
                "snapshot_window": median(s["window"] for s in cell["snapshot"]),
                "classic_window": median(s["window"] for s in cell["classic"]),
                "snapshot_job": median(s["job"] for s in cell["snapshot"]),
                "classic_job": median(s["job"] for s in cell["classic"]),
                "breakdown": cell["snapshot"][-1]["breakdown"],
                "phases": {mode: {name: median(s["phases"][name] for s in cell[mode])
                                  for name in ("before", "files", "reader", "after")}
                           for mode in ("snapshot", "classic")},
                "samples": cell}
            bench.results["stream_mib"] = cell["snapshot"][-1]["stream_bytes"] / MIB
    finally:
        bench.stop()
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / "snapshot.json").write_text(json.dumps(bench.results, indent=1))
    print(report(bench.results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
