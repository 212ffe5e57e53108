"""Private MariaDB services for the physical-backup tests.

Each service is a real mariadbd with its own directory, my.cnf, socket and
port, stopped and started only through testkit/private-service,
which dbpipe-mariabackup-restore copy-back also uses as its service manager
(--service-manager).  So the copy-back really stops, swaps and restarts a
server process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from dbpipe.bareos import BpipePlugin, plugin_strings

from ..helpers import ROOT, bareos_argv, bareos_env
from testkit.mariadb_service import PrivateService

FILESET = ROOT / "bareos-config" / "bareos-dir.d" / "fileset" / "mariadb-physical.conf"
JOB = ROOT / "bareos-config" / "bareos-dir.d" / "job" / "backup-mariadb-physical.conf"
INSTALLED_BIN = "/usr/local/bin/"
STATE_DIR = "/var/lib/dbpipe/mariabackup/default"


@pytest.fixture(scope="session")
def source():
    service = PrivateService("source").install().start()
    yield service
    service.destroy()


@pytest.fixture(params=("30", "31", "32", "pr56754"))
def nextcloud(request):
    """A sample Nextcloud installation (the tests' occ double as each
    Nextcloud line: testkit/installs.OCC_VARIANTS) and a private
    state directory for its record."""
    from testkit import installs
    assert request.param in installs.OCC_VARIANTS
    base = tempfile.mkdtemp(prefix="dbpipe-mb-nc-")
    os.chmod(base, 0o755)
    root = Path(base) / "nextcloud"
    _, values = installs.sqlite_database(root)
    install = installs.build(root, values, variant=request.param)
    install.state_dir = Path(base) / "state"
    install.args = ("--nextcloud", str(root), "--nextcloud-state-dir", str(install.state_dir),
                    "--settle", "0")
    yield install
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def new_service():
    """A service whose data directory does not exist yet (a fresh restore target)."""
    services = []

    def make(label: str = "restored") -> PrivateService:
        services.append(PrivateService(label))
        return services[-1]

    yield make
    for service in services:
        service.destroy()


# --- the data --------------------------------------------------------------------------

DATABASE = "nc"
SETUP = """
CREATE DATABASE nc CHARACTER SET utf8mb4;
USE nc;
CREATE TABLE oc_filecache (fileid BIGINT AUTO_INCREMENT PRIMARY KEY, path VARCHAR(400),
  size BIGINT NOT NULL, etag CHAR(32), data BLOB, name VARCHAR(100)) ENGINE=InnoDB;
INSERT INTO oc_filecache (path, size, etag, data, name) SELECT CONCAT('files/Ordner 📁/', seq),
  seq * 7, MD5(seq), REPEAT(MD5(seq), 8), CONCAT('Zürich ', seq) FROM seq_1_to_3000;
CREATE TABLE oc_share (id INT AUTO_INCREMENT PRIMARY KEY, fileid BIGINT, who VARCHAR(64)) ENGINE=InnoDB;
INSERT INTO oc_share (fileid, who) SELECT seq, CONCAT('user', seq % 17) FROM seq_1_to_500;
CREATE TABLE oc_counters (name VARCHAR(64) PRIMARY KEY, value BIGINT) ENGINE=Aria;
INSERT INTO oc_counters VALUES ('files', 3000), ('shares', 500);
CREATE TABLE oc_legacy (id INT PRIMARY KEY, note TEXT) ENGINE=MyISAM;
INSERT INTO oc_legacy SELECT seq, CONCAT('note ', seq) FROM seq_1_to_200;
"""

CHANGES = {
    1: """UPDATE oc_filecache SET size = size + 1, etag = MD5(CONCAT(etag, 'x')) WHERE fileid % 10 = 0;
          INSERT INTO oc_filecache (path, size, etag, data, name) SELECT CONCAT('new/', seq), seq,
            MD5(seq), NULL, 'neu' FROM seq_1_to_300;
          UPDATE oc_legacy SET note = 'changed' WHERE id < 50;
          UPDATE oc_counters SET value = value + 300 WHERE name = 'files';""",
    2: """DELETE FROM oc_filecache WHERE fileid % 7 = 0;
          CREATE TABLE oc_added (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB;
          INSERT INTO oc_added SELECT seq, CONCAT('v', seq) FROM seq_1_to_100;
          INSERT INTO oc_legacy VALUES (1000, 'late');""",
    3: """UPDATE oc_share SET who = 'admin' WHERE id % 3 = 0;
          DROP TABLE oc_share;
          RENAME TABLE oc_added TO oc_renamed;
          UPDATE oc_counters SET value = 0 WHERE name = 'shares';""",
    4: """ALTER TABLE oc_filecache ADD COLUMN mtime INT NOT NULL DEFAULT 42;
          INSERT INTO oc_renamed SELECT seq, 'after diff' FROM seq_1000_to_1100;
          DELETE FROM oc_legacy WHERE id > 150;""",
}


def populate(service: PrivateService) -> None:
    service.sql(SETUP)


def change(service: PrivateService, step: int) -> None:
    service.sql(CHANGES[step], DATABASE)


def snapshot(service: PrivateService) -> dict[str, str]:
    """Per-table CHECKSUM TABLE and row count of the test database."""
    tables = service.sql("SELECT TABLE_NAME FROM information_schema.TABLES "
                         f"WHERE TABLE_SCHEMA = '{DATABASE}' ORDER BY TABLE_NAME").split()
    names = ", ".join(f"`{DATABASE}`.`{table}`" for table in tables)
    counts = " UNION ALL ".join(f"SELECT '{DATABASE}.{table}', COUNT(*) FROM `{DATABASE}`.`{table}`"
                                for table in tables)
    lines = [line.split("\t") for line in
             service.sql(f"CHECKSUM TABLE {names} EXTENDED; {counts};").splitlines()]
    checksums, rows = dict(lines[:len(tables)]), dict(lines[len(tables):])
    return {name.split(".", 1)[1]: f"{checksums[name]}/{rows[name]}" for name in checksums}


# --- the executables, as Bareos runs them ----------------------------------------------------

def plugin_commands(state_dir) -> tuple[str, str]:
    """reader= and writer= of the shipped FileSet, pointing at this checkout and
    at a private chain state."""
    plugin = BpipePlugin.parse(plugin_strings(FILESET.read_text())[0])
    return _local(plugin.reader, state_dir), _local(plugin.writer, state_dir)


def forget_command(state_dir, job_id: int) -> list[str]:
    """The job's on-failure RunScript, as the file daemon runs it for job_id."""
    command = re.search(r'Command = "([^"]*)"', JOB.read_text()).group(1)
    return bareos_argv(_local(command, state_dir).replace("%i", str(job_id)))


def _local(command: str, state_dir) -> str:
    return command.replace(INSTALLED_BIN, str(ROOT / "bin") + "/").replace(STATE_DIR, str(state_dir))


def profile_dir(directory: Path, service: PrivateService) -> str:
    """DBPIPE_CONFIG_DIR with the FileSet's profile (mariabackup.conf) for service."""
    directory.mkdir(exist_ok=True)
    path = directory / "mariabackup.conf"
    path.write_text(f"[database]\ntype = mysql\nsocket = {service.socket}\nuser = root\n")
    path.chmod(0o600)
    return str(directory)


def run_reader(env: dict, out_path, state_dir, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
    reader, _ = plugin_commands(state_dir)
    with open(out_path, "wb") as out:
        return subprocess.run(bareos_argv(reader) + list(extra), stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.PIPE, cwd="/", env=env, timeout=timeout)


def run_writer(env: dict, in_path, *extra: str) -> subprocess.CompletedProcess:
    _, writer = plugin_commands(STATE_DIR)
    with open(in_path, "rb") as stdin:
        return subprocess.run(bareos_argv(writer) + list(extra), stdin=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd="/", env=env, timeout=120)


def job_env(base: dict, level: str | None = None, job_id: int | None = None, **extra) -> dict:
    env = dict(base)
    if level is not None:
        env.update(BareosJobLevel=level, BareosJobType="B" if level.strip() else "R",
                   BareosJobId=str(job_id))
    env.update({key: value for key, value in extra.items() if value is not None})
    return bareos_env(**env)
