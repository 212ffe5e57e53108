"""Disaster recovery onto a new machine, on the multi-host test bed: the
backup server (director, storage daemon, catalog), the Nextcloud host (file
daemon bareos-fd with bpipe, dbpipe, the database server) and a replacement
host (file daemon nextcloud-new-fd: its own name, port, password, config
directory, state directory, and dbpipe installed from the package into its
own root).

After a backup the Nextcloud host is gone: config, data, themes and apps,
the database and its user, dbpipe's state.  The Nextcloud code is installed
again and one restore job goes to the replacement host (restoreclient=) onto
the database server that no longer knows the database: the job ends T,
Nextcloud is open with the database of the backup moment, every file back
and a new data fingerprint.  Without the server's administrative account the
job fails before anything changes, with the statements in one line; after
running them, the command that line names finishes the restore.  The time
from `restore` to Nextcloud open is printed as the RTO (docs/disaster-recovery.md)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from testkit import package, servers
from ..helpers import BARE_PATH, ROOT, bareos_env
from ..nextcloud.test_new_machine import owned_by_nextcloud
from .runbook import HEADER, Runner, blocks
from testkit.testbed import STOCK_MESSAGES, FileDaemon

REPLACEMENT = "nextcloud-new-fd"
GONE = ("config", "data", "themes", "custom_apps")


@pytest.fixture(scope="module")
def db_server():
    """The Nextcloud host's MariaDB, root by unix_socket as Debian installs it."""
    server = servers.local_mariadb()
    server.sql("ALTER USER root@localhost IDENTIFIED VIA unix_socket")
    yield server
    servers.destroy(server)


@pytest.fixture(scope="module")
def replacement(bed):
    workdir = bed.base / "replacement-host"
    dirs = {name: workdir / name for name in ("state", "tmp", "profiles")}
    for path in dirs.values():
        path.mkdir(mode=0o700, parents=True)
    env = bareos_env(DBPIPE_SYSLOG_SOCKET=bed.syslog.path, TMPDIR=str(dirs["tmp"]),
                     DBPIPE_CONFIG_DIR=str(dirs["profiles"]), DBPIPE_STATE_DIR=str(dirs["state"]),
                     PATH=f"{bed.shims}:{BARE_PATH}")
    root = package.unpack(bed.deb, workdir / "root")
    return bed.bareos.add_client(FileDaemon(REPLACEMENT, workdir, env, root), bed.shipped(bed.base / "no-nextcloud"))


def machine_gone(site, bed) -> None:
    """Everything the backup holds is lost, the database and its user too;
    the Nextcloud code is there again (installed by the admin)."""
    for top in GONE:
        shutil.rmtree(site.path(top) if top != "data" else site.data, ignore_errors=True)
    for entry in bed.state.iterdir():
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def drop_database_and_user(server, name: str, user: str) -> None:
    server.sql(f"DROP DATABASE `{name}`; DROP USER IF EXISTS '{user}'@'%', '{user}'@'localhost'")


def lost_after_backup(site, bed, db_server, config):
    """A good backup, then the machine is gone with the database and its user."""
    backup = site.backup()
    assert backup.ok, backup
    machine_gone(site, bed)
    drop_database_and_user(db_server, config["dbname"], config["dbuser"])
    return backup


def restore_to_replacement(site, backup):
    """The one restore job onto the replacement host; its result and the RTO."""
    started = time.monotonic()
    result = site.bareos.restore(backup.job_id, "restore-nextcloud", restoreclient=REPLACEMENT)
    return result, time.monotonic() - started


def prepared(make_site, db_server):
    site = make_site("mysql", server=db_server)
    owned_by_nextcloud("mysql", db_server, site.install)
    config = site.install.config()
    return site, config, site.db.fingerprint(), site.snapshot()


def test_disaster_recovery_onto_the_replacement_host(bed, make_site, db_server, replacement):
    site, config, database, files = prepared(make_site, db_server)
    backup = lost_after_backup(site, bed, db_server, config)

    result, rto = restore_to_replacement(site, backup)

    assert result.ok, result
    assert re.search(rf"Client:\s+\"?{REPLACEMENT}", result.log), result
    # its file daemon ran the package's commands from its own root, at the path the resources name
    mounts = Path(f"/proc/{replacement.proc.pid}/mountinfo").read_text().splitlines()
    assert str(bed.root) in [line.split()[4] for line in mounts], mounts
    assert site.db.fingerprint() == database
    assert site.snapshot() == files
    assert not site.install.maintenance
    assert site.install.config()["data-fingerprint"] != config.get("data-fingerprint")
    assert config["dbpassword"] not in result.log
    print(f"\nRTO (restore to Nextcloud open, test installation): {rto:.1f} s")


def test_without_the_administrative_account_one_line_says_what_to_run_then_it_finishes(
        bed, make_site, db_server, replacement):
    site, config, database, files = prepared(make_site, db_server)
    backup = lost_after_backup(site, bed, db_server, config)
    db_server.sql("ALTER USER root@localhost IDENTIFIED BY 'only-the-dba-knows'")
    db_server.admin_password = "only-the-dba-knows"
    try:
        result = site.bareos.restore(backup.job_id, "restore-nextcloud", restoreclient=REPLACEMENT)

        assert result.status != "T", result
        assert "As the database server's administrator run:" in result.log, result
        assert config["dbpassword"] not in result.log
        assert not db_server.sql(f"SELECT 1 FROM mysql.user WHERE User='{config['dbuser']}'")
        assert site.install.maintenance      # the restored config.php keeps it closed
        line = next(ln for ln in reversed(bed.syslog.text().splitlines()) if "administrator run:" in ln)

        statements = line.split("administrator run: ", 1)[1].split("; (<password>", 1)[0]
        password = config["dbpassword"]
        db_server.sql(statements.replace("'<password>'", "'" + password.replace("\\", "\\\\").replace("'", "\\'")
                                         + "'") + ";")
        finish = re.search(r"then: (.*)$", line).group(1).split()
        done = subprocess.run([str(replacement.root / "usr/bin" / finish[0]), *finish[1:]], capture_output=True,
                              cwd="/", env=replacement.env, timeout=300)

        assert done.returncode == 0, done.stderr.decode()
        assert site.db.fingerprint() == database
        assert site.snapshot() == files
        assert not site.install.maintenance
    finally:
        db_server.sql("ALTER USER root@localhost IDENTIFIED VIA unix_socket")
        db_server.admin_password = None


@pytest.mark.skipif(not os.environ.get("DBPIPE_RTO_MB"), reason="a measurement: set DBPIPE_RTO_MB=500 to run it")
def test_rto_with_a_large_database(bed, make_site, db_server, replacement):
    """The RTO figure of docs/disaster-recovery.md for a database of DBPIPE_RTO_MB megabytes."""
    megabytes = int(os.environ["DBPIPE_RTO_MB"])
    site, config, _, files = prepared(make_site, db_server)
    db_server.sql("CREATE TABLE oc_bulk (id INT PRIMARY KEY, payload LONGTEXT) ENGINE=InnoDB; "
                  "INSERT INTO oc_bulk WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s "
                  f"WHERE n < {megabytes}) SELECT n, REPEAT(MD5(n), 32768) FROM s", database=config["dbname"])
    database = site.db.fingerprint()
    backup = lost_after_backup(site, bed, db_server, config)

    result, rto = restore_to_replacement(site, backup)

    assert result.ok, result
    assert site.db.fingerprint() == database
    assert not site.install.maintenance
    print(f"\nRTO (restore to Nextcloud open, {megabytes} MB database): {rto:.1f} s")


RUNBOOK = ROOT / "docs" / "disaster-recovery.md"
INSTALL = re.compile(r"`(apt install [^`]+)`")


def test_the_runbook_as_written(bed, make_site, db_server):
    """docs/disaster-recovery.md's blocks, in order, on a host the runbook
    itself sets up (its bareos-fd.d and the director's Client resource
    from the doc); then the data directory moved as the runbook says."""
    site, config, database, files = prepared(make_site, db_server)
    lost_after_backup(site, bed, db_server, config)
    workdir = bed.base / "runbook-host"
    for name in ("state", "tmp", "profiles"):
        (workdir / name).mkdir(mode=0o700, parents=True)
    host = FileDaemon("runbook-new-fd", workdir, bareos_env(
        DBPIPE_SYSLOG_SOCKET=bed.syslog.path, TMPDIR=str(workdir / "tmp"), DBPIPE_CONFIG_DIR=str(workdir / "profiles"),
        DBPIPE_STATE_DIR=str(workdir / "state"), PATH=f"{bed.shims}:{BARE_PATH}"), workdir / "root")
    moved = bed.base / f"srv-nextcloud-data-{site.label}"
    added = {"client/myself.conf": f'  FD Port = {host.port}\n  FD Address = 127.0.0.1\n'
                                   f'  Working Directory = "{workdir / "work"}"\n',
             f"client/{host.name}.conf": f"  FD Port = {host.port}\n"}
    runner = Runner(site.bareos, host, {
        "<new-host>-fd": host.name, "<new password>": host.password, "<new host's address>": "127.0.0.1",
        "/usr/lib/bareos/plugins": site.bareos.plugin_dir, "/var/www/nextcloud": str(site.install.root),
        "/srv/nextcloud-data": str(moved)}, env={"PWD": str(bed.deb.parent)}, roots=[host.root], added=added)
    site.bareos.write_client(host, {"messages/Standard.conf": STOCK_MESSAGES})    # as bareos-filedaemon installs it
    runner.run(INSTALL.search(RUNBOOK.read_text()).group(1))    # section 2's "and dbpipe (`apt install ...`)"
    try:
        for language, text in blocks(RUNBOOK):
            if HEADER.search(text):
                runner.write(text)
            elif language == "sh":
                runner.run(text)
            if "restoreclient=" in text:
                restored = site.bareos.job(runner.last_job)
                assert restored.ok, restored
                assert site.db.fingerprint() == database
                assert site.snapshot() == files
                assert not site.install.maintenance
    finally:
        site.data = moved if moved.exists() else site.data
    assert site.install.config()["datadirectory"] == str(moved)
    assert (moved / ".ocdata").exists() and not (site.install.root / "data").exists()
    assert not site.install.maintenance
    assert site.db.fingerprint() == database
