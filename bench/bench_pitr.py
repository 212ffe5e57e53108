"""Point-in-time recovery: restore time (RTO) and data loss (RPO), measured.

RTO, per engine, on the Nextcloud-like benchmark data (bench/databases.py):
the database is filled to --pg-size-mb / --mariadb-size-mb on disk, a base is
taken (PostgreSQL: dbpipe-pg-basebackup; MariaDB: a physical Full with
dbpipe-mariabackup), then "an hour of writes" runs compressed in time (see
HOUR below) while the archive works as shipped (dbpipe-wal-archive;
dbpipe-binlog-collect every 15 minutes of the hour).  Back to back, on the
same server and data:

  pitr      dbpipe-pitr-restore --beside --to <the end of the hour>: plan
            (checksums), extract or prepare + copy-back, replay, verify;
            the recovered server is then checked (every transaction there)
  logical   dbpipe-dump of the same data (the database after the hour),
            then dbpipe-restore of it into an empty database

RPO, measured with the shipped settings: a quiet PostgreSQL (one commit every
5 s) with archive_timeout = 300 is asked every 30 s for the newest
recoverable commit (dbpipe-pitr-restore --check --to latest) - the loss if
the server's disk died then with the machine's spool intact; then an
accident (DROP TABLE) followed by the documented pg_switch_wal(): the gap
between the accident and the newest recoverable commit.  MariaDB: an
accident, dbpipe-binlog-collect, --check: the same gap.

HOUR: a busy Nextcloud doing --rate file changes per second for an hour
(default 10/s = 36,000).  One change is one transaction, as Nextcloud's file
cache does it: the file's oc_filecache row inserted (an upload, 1 in 3) or
updated (size, mtime, etag), its parent, grandparent and root folder rows
updated (etag/mtime/size propagation) and one oc_activity row inserted.  The
hour is cut into 12 five-minute parts; after each, PostgreSQL checkpoints
(checkpoint_timeout = 5min: the full-page writes of a real hour) and every
third part the binary logs are collected (the 15-minute spool job).  The
live PostgreSQL runs durably here (fsync, full_page_writes, synchronous
commit on), unlike the tests' bulk-load servers.  So the WAL or binary log
written is what that hour writes; only the wall time is shorter.

Run:  .venv/bin/python bench/bench_pitr.py [--pg-size-mb 400] [--mariadb-size-mb 480] [--rate 10]
      [--engine pgsql|mysql] [--no-rpo]
(also part of bench/run-bench).  Prints a Markdown report; `uptime` load is
recorded with each figure (the machine is shared).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import pwd
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fixtures import ROOT, private_service, servers  # the bench's door to dbpipe and testkit

import databases
from bench_mariabackup import _checkpoint, _fill
from measure import MIB, bare_env, dbpipe_command, progress, run_pipeline
from testkit.pitr import archive_command, base_backup, configure, owned_dir, switch_wal, wait_archived

SECTION_RTO = "Point-in-time restore (RTO) against a logical restore"
SECTION_HOUR = "Point-in-time: the hour of writes replayed"
SECTION_RPO = "Point-in-time: data loss (RPO), measured"
PARTS = 12                  # five-minute parts of the hour
COLLECT_EVERY = 3           # parts between binary log collections (15 minutes)
QUIET_COMMIT = 5.0          # seconds between commits of the "quiet" server
ARCHIVE_TIMEOUT = 300       # the shipped setting (docs/pitr.md)
ACTIVITY = {
    "pgsql": """CREATE TABLE oc_activity (activity_id BIGSERIAL PRIMARY KEY, timestamp INT NOT NULL DEFAULT 0,
  priority INT NOT NULL DEFAULT 0, type VARCHAR(255), "user" VARCHAR(64), affecteduser VARCHAR(64) NOT NULL,
  app VARCHAR(32) NOT NULL, subject VARCHAR(255) NOT NULL, subjectparams TEXT NOT NULL, message VARCHAR(255),
  messageparams TEXT, file VARCHAR(4000), link VARCHAR(4000), object_type VARCHAR(255),
  object_id BIGINT NOT NULL DEFAULT 0);
CREATE INDEX activity_user_time ON oc_activity (affecteduser, timestamp);
CREATE INDEX activity_filter ON oc_activity (affecteduser, type, app, timestamp);
CREATE INDEX activity_object ON oc_activity (object_type, object_id);""",
    "mysql": """CREATE TABLE oc_activity (activity_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  timestamp INT NOT NULL DEFAULT 0, priority INT NOT NULL DEFAULT 0, type VARCHAR(255), `user` VARCHAR(64),
  affecteduser VARCHAR(64) NOT NULL, app VARCHAR(32) NOT NULL, subject VARCHAR(255) NOT NULL,
  subjectparams LONGTEXT NOT NULL, message VARCHAR(255), messageparams LONGTEXT, file VARCHAR(4000),
  link VARCHAR(4000), object_type VARCHAR(255), object_id BIGINT NOT NULL DEFAULT 0,
  KEY activity_user_time (affecteduser, timestamp), KEY activity_filter (affecteduser, type, app, timestamp),
  KEY activity_object (object_type, object_id)) ENGINE=InnoDB ROW_FORMAT=DYNAMIC""",
}


# --- the hour of writes ---------------------------------------------------------------

class Hour:
    """The SQL of one hour of a busy Nextcloud's file activity, in PARTS parts."""

    def __init__(self, kind: str, files: int, rate: float, seed: int = 15):
        self.kind, self.files, self.rng = kind, files, random.Random(seed)
        self.transactions = int(rate * 3600)
        self.next_id = files + 1

    def part(self, index: int) -> str:
        count = self.transactions // PARTS + (index < self.transactions % PARTS)
        begin = "BEGIN" if self.kind == "pgsql" else "START TRANSACTION"
        return "".join(f"{begin};\n{self._change()}COMMIT;\n" for _ in range(count))

    def _change(self) -> str:
        now = 1_760_000_000 + self.rng.randrange(3600)
        etag = f"{self.rng.getrandbits(52):013x}"
        if self.rng.randrange(3) == 0:
            fileid, self.next_id = self.next_id, self.next_id + 1
            parent = self.rng.randrange(1, self.files // 250)
            name = f"upload-{fileid}.jpg"
            sql = ("INSERT INTO oc_filecache (fileid, storage, path, path_hash, parent, name, mimetype, mimepart, "
                   "size, mtime, storage_mtime, etag, permissions, checksum) VALUES "
                   f"({fileid}, 1, 'files/Photos/{parent:07d}/{name}', '{_md5(name)}', {parent}, '{name}', 4, 2, "
                   f"{self.rng.randrange(1 << 22)}, {now}, {now}, '{etag}', 27, '');\n")
        else:
            fileid = self.rng.randrange(1, self.files)
            parent = max(1, fileid // 250)
            sql = (f"UPDATE oc_filecache SET size = {self.rng.randrange(1 << 22)}, mtime = {now}, "
                   f"storage_mtime = {now}, etag = '{etag}' WHERE fileid = {fileid};\n")
        ancestors = sorted({parent, max(2, parent // 250), 1})
        sql += (f"UPDATE oc_filecache SET mtime = {now}, etag = '{etag}', size = size + 1 "
                f"WHERE fileid IN ({', '.join(map(str, ancestors))});\n")
        user = f"user{self.rng.randrange(300)}"
        params = '{"0":{"' + str(fileid) + '":"/Photos/file-' + str(fileid) + '"},"1":"' + user + '"}'
        return sql + ("INSERT INTO oc_activity (timestamp, priority, type, " + self._user() + ", affecteduser, "
                      "app, subject, subjectparams, message, messageparams, file, link, object_type, object_id) "
                      f"VALUES ({now}, 30, 'file_changed', '{user}', '{user}', 'files', 'changed_self', "
                      f"'{params}', '', '[]', '/Photos/file-{fileid}', "
                      f"'https://cloud.example.org/apps/files/?dir=/Photos', 'files', {fileid});\n")

    def _user(self) -> str:
        return '"user"' if self.kind == "pgsql" else "`user`"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


# --- PostgreSQL -----------------------------------------------------------------------

def durable(server) -> None:
    """Start the server from now on as a real one runs: the test server's fsync,
    full_page_writes and synchronous_commit = off (for fast fills) would
    leave out most of a real hour's WAL, the full-page writes."""
    account = pwd.getpwnam("postgres")
    options = f"-k {server.workdir} -p {server.port} -c listen_addresses=127.0.0.1"
    argv = [servers._pg_bin("pg_ctl"), "-D", os.path.join(server.workdir, "data"), "-o", options,
            "-l", os.path.join(server.workdir, "server.log"), "-w", "start"]
    server._start = lambda: servers._setup(argv, env={"PATH": servers.BARE_PATH, "LC_ALL": "C.UTF-8"},
                                           cwd=server.workdir, user=account.pw_uid, group=account.pw_gid,
                                           extra_groups=[])


def pg_rto(report, work: Path, size_mb: int, rate: float) -> None:
    db = databases.PostgreSQL()
    try:
        db.start()
        server = db.server
        _fill_pg(db, size_mb)
        durable(server)
        spool, bases = owned_dir(work / "pg-spool"), work / "pg-bases"
        configure(server, {"archive_mode": "on", "archive_command": archive_command(spool),
                           "archive_timeout": str(ARCHIVE_TIMEOUT)})
        server.sql(ACTIVITY["pgsql"], databases.SOURCE)
        size = int(server.sql(f"SELECT pg_database_size('{databases.SOURCE}')"))
        started = time.monotonic()
        base_backup(server, bases)
        base = (time.monotonic() - started, sum(p.stat().st_size for p in bases.iterdir()))
        hour = Hour("pgsql", db.units * databases.FILES_PER_UNIT, rate)
        wal_before = server.sql("SELECT pg_current_wal_lsn()")
        wall = _run_hour(hour, lambda part: server.sql(part, databases.SOURCE), lambda _: server.sql("CHECKPOINT"))
        wal = int(server.sql(f"SELECT pg_current_wal_lsn() - '{wal_before}'::pg_lsn"))
        target = _pg_target(server)
        segments = len([p for p in spool.iterdir() if len(p.name) == 24])
        _report_hour(report, "PostgreSQL", hour, wall, f"{wal / MIB:.0f} MiB of WAL, {segments} segments "
                     f"archived in all ({segments * 16} MiB in the archive)")
        pitr, recovered = _pg_pitr(server, spool, bases, target)
        logical, dump, dump_size = _logical(db, work)
        _report_rto(report, "PostgreSQL", size, base, pitr, logical, dump, dump_size,
                    f"{segments} WAL segments replayed", recovered == hour.transactions)
    finally:
        db.destroy()


def _fill_pg(db, size_mb: int) -> None:
    progress(f"pitr: filling PostgreSQL to {size_mb} MiB")
    db.add_units(20)
    size = lambda: int(db.server.sql(f"SELECT pg_database_size('{databases.SOURCE}')"))  # noqa: E731
    while size() < size_mb * MIB:
        db.add_units(max(1, int((size_mb * MIB - size()) / (size() / db.units) * 1.02)))
    db.server.sql("VACUUM ANALYZE; CHECKPOINT", databases.SOURCE)


def _pg_target(server) -> str:
    """The end of the hour: a moment after its last commit, then one commit
    after it (recovery stops before the first commit after the target)."""
    time.sleep(1.2)
    target = datetime.datetime.now(datetime.timezone.utc).isoformat()
    time.sleep(0.2)
    server.sql("CREATE TABLE after_the_hour (x int)", databases.SOURCE)
    wait_archived(server, switch_wal(server), timeout=900)
    return target


def _pg_pitr(server, spool: Path, bases: Path, target: str) -> tuple[float, int]:
    progress("pitr: PostgreSQL point-in-time restore")
    out = spool.parent / "pg-pitr.out"
    sample = run_pipeline([dbpipe_command("dbpipe-pitr-restore", "--to", target, "--beside", "--datadir",
                                          str(Path(server.workdir) / "data"), "--wal", str(spool),
                                          "--bases", str(bases))], stdout=str(out))
    said = out.read_text()
    new = said.split("data directory ", 1)[1].split(",", 1)[0]
    sock, port = re.search(r"socket (\S+), port (\d+)", said).groups()
    psql = [servers._pg_bin("psql"), "-X", "-A", "-t", "-h", sock, "-p", port, "-U", "postgres",
            "-d", databases.SOURCE, "-c", "SELECT count(*) FROM oc_activity"]
    counted = subprocess.run(["runuser", "-u", "postgres", "--", *psql], capture_output=True, text=True)
    subprocess.run(["runuser", "-u", "postgres", "--", servers._pg_bin("pg_ctl"), "-D", new, "-m", "fast",
                    "-w", "stop"], capture_output=True)
    for suffix in ("", ".wal", ".run"):
        shutil.rmtree(new + suffix, ignore_errors=True)
    return sample.wall, int(counted.stdout.strip() or -1)


# --- MariaDB --------------------------------------------------------------------------

class BinlogMariaDB(databases.MariaDB):
    """The benchmark MariaDB with binary logging (ROW), run as a private service
    (the restore needs its data directory); the fill itself is not logged
    (sql_log_bin = 0): it happens before the base backup."""

    def start(self) -> None:
        PrivateService, _ = private_service()
        self.service = PrivateService("bench-pitr")
        cnf = Path(self.service.cnf)
        binlog = Path(self.service.root) / "binlog"
        binlog.mkdir()
        cnf.write_text(cnf.read_text().replace("skip-log-bin\n", f"log-bin={binlog}/mysql-bin\nserver-id=1\n"
                                               "binlog-format=ROW\nmax-allowed-packet=64M\n"))
        self.service.install().start()
        self.server = servers.Server("mysql", "MariaDB (binary log)", "127.0.0.1", self.service.port,
                                     self.service.socket, "root", None, self.service.root)
        for setting in self.tuning:
            name, value = setting.split("=")
            self.server.sql(f"SET GLOBAL {name} = {databases._bytes(value)}")
        self.server.sql(f"CREATE DATABASE {databases.SOURCE} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        self.server.sql(databases.MARIADB_SCHEMA, databases.SOURCE)

    def _insert(self, first_file, last_file, first_card, last_card) -> None:
        self.server.sql("SET sql_log_bin = 0;" + databases.MARIADB_FILES.format(a=first_file, b=last_file) + ";"
                        + databases.MARIADB_CARDS.format(a=first_card, b=last_card), databases.SOURCE)

    def destroy(self) -> None:
        if self.server is not None:
            self.service.destroy()
            self.server = None


def mariadb_rto(report, work: Path, size_mb: int, rate: float) -> None:
    db = BinlogMariaDB()
    try:
        db.start()
        server = db.server
        size = _fill(db, size_mb * MIB)
        server.sql(ACTIVITY["mysql"], databases.SOURCE)
        spool, pieces = work / "mb-spool", work / "mb-pieces"
        spool.mkdir(mode=0o700)
        started = time.monotonic()
        _mariabackup_full(db, pieces, work / "mb-state")
        base = (time.monotonic() - started, sum(p.stat().st_size for p in pieces.rglob("*") if p.is_file()))
        collect = lambda: _collect(server, spool)  # noqa: E731
        collect()
        hour = Hour("mysql", db.units * databases.FILES_PER_UNIT, rate)
        wall = _run_hour(hour, lambda part: server.sql(part, databases.SOURCE),
                         lambda index: collect() if (index + 1) % COLLECT_EVERY == 0 else None)
        target = _mariadb_target(server, collect)
        logs = sorted(p for p in spool.iterdir() if p.name.startswith("mysql-bin.") and p.suffix != ".sha256")
        volume = sum(p.stat().st_size for p in logs)
        _report_hour(report, "MariaDB", hour, wall, f"{volume / MIB:.0f} MiB of binary logs in "
                     f"{len(logs)} files (collected every 15 minutes of the hour)")
        pitr, recovered = _mariadb_pitr(db, spool, pieces, target)
        logical, dump, dump_size = _logical(db, work)
        _report_rto(report, "MariaDB", size, base, pitr, logical, dump, dump_size,
                    f"{volume / MIB:.0f} MiB of binary logs replayed", recovered == hour.transactions)
        mariadb_rpo(report, server, spool, pieces, db.service.datadir)
    finally:
        db.destroy()


def _mariabackup_full(db, pieces: Path, state: Path) -> None:
    progress("pitr: MariaDB physical full backup")
    _checkpoint(db)
    run_pipeline([dbpipe_command("dbpipe-mariabackup", "--socket", db.server.socket, "--user", "root",
                                 "--level", "full", "--state-dir", str(state), env=bare_env(TMPDIR=str(state.parent))),
                  dbpipe_command("dbpipe-mariabackup-restore", "--from-stdin", "--into", str(pieces))])


def _collect(server, spool: Path) -> None:
    run_pipeline([dbpipe_command("dbpipe-binlog-collect", "--socket", server.socket, "--user", "root",
                                 "--spool", str(spool))])


def _mariadb_target(server, collect) -> str:
    """The whole second after the hour's last commit (binary log events have whole
    seconds; the restore replays every event of the target second)."""
    ended = int(time.time())
    while time.time() < ended + 2.05:
        time.sleep(0.05)
    server.sql("CREATE TABLE after_the_hour (x int)", databases.SOURCE)
    collect()
    return datetime.datetime.fromtimestamp(ended + 1).strftime("%Y-%m-%d %H:%M:%S")


def _mariadb_pitr(db, spool: Path, pieces: Path, target: str) -> tuple[float, int]:
    progress("pitr: MariaDB point-in-time restore")
    out = spool.parent / "mb-pitr.out"
    sample = run_pipeline([dbpipe_command("dbpipe-pitr-restore", "--engine", "mysql", "--to", target, "--beside",
                                          "--datadir", db.service.datadir, "--wal", str(spool),
                                          "--bases", str(pieces))], stdout=str(out))
    sock = re.search(r"socket (\S+);", out.read_text()).group(1)
    client = ["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "--batch", "--skip-column-names"]
    counted = subprocess.run([*client, "-e", f"SELECT count(*) FROM {databases.SOURCE}.oc_activity"],
                             capture_output=True, text=True, env=bare_env())
    subprocess.run(["mariadb-admin", "--no-defaults", f"--socket={sock}", "-uroot", "shutdown"],
                   capture_output=True, env=bare_env())
    new = os.path.dirname(sock).removesuffix(".run")
    for path in (new, new + ".run"):
        shutil.rmtree(path, ignore_errors=True)
    return sample.wall, int(counted.stdout.strip() or -1)


# --- shared ---------------------------------------------------------------------------

def _run_hour(hour: Hour, execute, after_part) -> float:
    progress(f"pitr: {hour.kind}: the hour of writes ({hour.transactions} transactions)")
    started = time.monotonic()
    for index in range(PARTS):
        execute(hour.part(index))
        after_part(index)
    return time.monotonic() - started


def _logical(db, work: Path) -> tuple[float, float, int]:
    """dbpipe-dump of the database as it is after the hour, dbpipe-restore of it
    into an empty database: (restore wall, dump wall, dump bytes)."""
    progress(f"pitr: {db.kind}: logical dump and restore of the same data")
    dump = work / f"{db.kind}-logical.sql"
    dumped = run_pipeline([dbpipe_command("dbpipe-dump", *db.dbpipe_args(databases.SOURCE))], stdout=str(dump),
                          server_cpu=db.server_cpu)
    db.reset(databases.RESTORED)
    loaded = run_pipeline([dbpipe_command("dbpipe-restore", *db.dbpipe_args(databases.RESTORED))], stdin=str(dump),
                          server_cpu=db.server_cpu)
    size = dump.stat().st_size
    dump.unlink()
    return loaded.wall, dumped.wall, size


def _report_hour(report, engine: str, hour: Hour, wall: float, volume: str) -> None:
    report.columns(SECTION_HOUR, "engine", "transactions (file changes)", "written", "wall time here")
    report.row(SECTION_HOUR, engine, f"{hour.transactions}", volume, f"{wall:.0f} s ({load()})")


def _report_rto(report, engine, size, base, pitr, logical, dump, dump_size, replayed, complete) -> None:
    report.columns(SECTION_RTO, "engine", "database", "base (time, stored)", "point-in-time restore",
                   "logical restore", "load")
    report.row(SECTION_RTO, engine, f"{size / MIB:.0f} MiB", f"{base[0]:.0f} s, {base[1] / MIB:.0f} MiB",
               f"{pitr:.0f} s ({replayed}; every transaction there: {'yes' if complete else 'NO'})",
               f"{logical:.0f} s (+ {dump:.0f} s to dump {dump_size / MIB:.0f} MiB)", load())


# --- RPO ------------------------------------------------------------------------------

def pg_rpo(report, work: Path, seconds: float) -> None:
    """A quiet server with the shipped archive_timeout: how old is the newest
    recoverable commit, sampled every 30 s; then an accident and the documented
    pg_switch_wal() before restoring."""
    server = servers.local_postgres()
    try:
        spool, bases = owned_dir(work / "rpo-spool"), work / "rpo-bases"
        configure(server, {"archive_mode": "on", "archive_command": archive_command(spool),
                           "archive_timeout": str(ARCHIVE_TIMEOUT)})
        server.sql("CREATE TABLE quiet (id serial PRIMARY KEY, ts timestamptz DEFAULT clock_timestamp())")
        base_backup(server, bases)
        progress(f"pitr: quiet PostgreSQL for {seconds:.0f} s (archive_timeout = {ARCHIVE_TIMEOUT})")
        gaps = _quiet_gaps(server, spool, bases, seconds)
        accident = server.sql("SELECT extract(epoch FROM clock_timestamp()); DROP TABLE quiet")
        wait_archived(server, server.sql("SELECT pg_walfile_name(pg_switch_wal())"))
        after = float(accident) - _pg_newest(server, spool, bases)
        report.columns(SECTION_RPO, "case", "measured", "how")
        report.row(SECTION_RPO, "PostgreSQL, database accident, spool on the machine, nothing done first",
                   f"{min(gaps):.0f} .. {max(gaps):.0f} s ({len(gaps)} samples, {load()})",
                   f"newest recoverable commit (--check --to latest) against the clock, every 30 s for "
                   f"{seconds:.0f} s, one commit every {QUIET_COMMIT:.0f} s, archive_timeout = {ARCHIVE_TIMEOUT}")
        report.row(SECTION_RPO, "PostgreSQL, database accident, after `SELECT pg_switch_wal()`",
                   f"{max(0.0, after - 1):.0f} s (the accident's second is covered: {'yes' if after < 1 else 'NO'})",
                   "the accident (DROP TABLE) against the newest recoverable commit (--check --to latest, "
                   "shown to the second)")
    finally:
        servers.destroy(server)


def _quiet_gaps(server, spool: Path, bases: Path, seconds: float) -> list[float]:
    gaps, deadline, next_sample = [], time.monotonic() + seconds, time.monotonic() + 30
    while time.monotonic() < deadline:
        server.sql("INSERT INTO quiet DEFAULT VALUES")
        time.sleep(QUIET_COMMIT)
        if time.monotonic() >= next_sample:
            gaps.append(time.time() - _pg_newest(server, spool, bases))
            next_sample += 30
    return gaps


def _pg_newest(server, spool: Path, bases: Path) -> float:
    checked = subprocess.run([str(ROOT / "bin" / "dbpipe-pitr-restore"), "--check", "--to", "latest", "--datadir",
                              str(Path(server.workdir) / "data"), "--wal", str(spool), "--bases", str(bases)],
                             capture_output=True, text=True, env=bare_env(), cwd="/")
    found = (re.search(r"newest recoverable commit (\S+ \S+)", checked.stdout)
             or re.search(r"holds no commit after the base backup of (\S+ \S+);", checked.stderr))
    if not found:
        raise RuntimeError(f"dbpipe-pitr-restore --check: {checked.stderr[-500:]}")
    return datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S%z").timestamp()


def mariadb_rpo(report, server, spool: Path, pieces: Path, datadir: str) -> None:
    """An accident, then dbpipe-binlog-collect (the documented first step): the gap
    between the accident and the end of what the archive covers."""
    accident = float(server.sql("SELECT UNIX_TIMESTAMP(NOW(6)); DROP TABLE nextcloud.after_the_hour"))
    _collect(server, spool)
    checked = subprocess.run([str(ROOT / "bin" / "dbpipe-pitr-restore"), "--engine", "mysql", "--check", "--to",
                              "latest", "--datadir", datadir, "--wal", str(spool), "--bases", str(pieces)],
                             capture_output=True, text=True, env=bare_env(), cwd="/")
    end = re.search(r"available: .* \.\. (\S+ \S+)", checked.stdout)
    if not end:
        raise RuntimeError(f"dbpipe-pitr-restore --check: {checked.stderr[-500:]}")
    newest = datetime.datetime.strptime(end.group(1), "%Y-%m-%d %H:%M:%S%z").timestamp()
    report.columns(SECTION_RPO, "case", "measured", "how")
    report.row(SECTION_RPO, "MariaDB, database accident, after `dbpipe-binlog-collect`",
               f"{max(0.0, accident - newest - 1):.0f} s (the accident's second is covered: "
               f"{'yes' if newest >= int(accident) else 'NO'})",
               "the accident (DROP TABLE) against the end of the archive (--check --to latest); "
               "binary log events have whole seconds")


# --- entry points ---------------------------------------------------------------------

def measure(report, engines: list[str], pg_mb: int, mariadb_mb: int, rate: float, rpo_seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="dbpipe-bench-pitr-"))   # not below a 0700 directory:
    os.chmod(work, 0o755)                                         # the archive command runs as postgres
    try:
        if "pgsql" in engines:
            pg_rto(report, work, pg_mb, rate)
        if "mysql" in engines:
            mariadb_rto(report, work, mariadb_mb, rate)
        if rpo_seconds:
            pg_rpo(report, work, rpo_seconds)
        report.note(SECTION_RTO, "point-in-time = `dbpipe-pitr-restore --beside` (plan with checksums, base "
                                 "extracted or chain prepared and copied back, the hour replayed, the server "
                                 "verified and left running beside); logical = `dbpipe-restore` of a "
                                 "`dbpipe-dump` of the same data into an empty database of the running server; "
                                 "run back to back on a shared 2-core machine (load = `uptime` afterwards)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(report) -> None:
    context = report.context
    measure(report, ["pgsql", "mysql"], context.size_mb, context.size_mb * 6 // 5, 10, 330)


def main(argv) -> int:
    from report import run_standalone
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("pgsql", "mysql"), action="append")
    parser.add_argument("--pg-size-mb", type=int, default=400, help="PostgreSQL database on disk (default 400)")
    parser.add_argument("--mariadb-size-mb", type=int, default=480, help="InnoDB files (default 480)")
    parser.add_argument("--rate", type=float, default=10, help="file changes per second of the hour (default 10)")
    parser.add_argument("--rpo-seconds", type=float, default=330, help="quiet-server observation (0: none)")
    parser.add_argument("--rpo-only", action="store_true", help="only the RPO measurement")
    args = parser.parse_args(argv)
    engines = [] if args.rpo_only else args.engine or ["pgsql", "mysql"]
    return run_standalone("Benchmark: point-in-time recovery", ROOT, args.pg_size_mb, 1, bare_env(),
                          lambda report: measure(report, engines, args.pg_size_mb, args.mariadb_size_mb,
                                                 args.rate, args.rpo_seconds))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
