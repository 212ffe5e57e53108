"""dbpipe-verify --test-restore --nextcloud (the restore drill's check) needs no
grant for Nextcloud's user: the scratch database comes from the server's
administrative account as Debian sets it up - MariaDB root by unix_socket
authentication only, PostgreSQL postgres by peer authentication only - and run
by another user than root the check stops with one line (77)."""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest

from testkit import servers
from ..bareos.runbook import Runner, blocks
from ..helpers import BARE_PATH, BIN, ROOT, bareos_env, dbpipe, last_line
from testkit import installs


@pytest.fixture(scope="module")
def mariadb_unix_socket():
    server = servers.local_mariadb()
    try:
        server.sql("ALTER USER root@localhost IDENTIFIED VIA unix_socket")
        yield server
    finally:
        servers.destroy(server)


@pytest.fixture(scope="module")
def postgres_peer():
    server = servers.local_postgres()
    yield server
    servers.destroy(server)


def only_peer(server) -> None:
    """pg_hba as Debian ships it for the postgres account: peer, nothing else."""
    with open(os.path.join(server.workdir, "data", "pg_hba.conf"), "w") as hba:
        hba.write("local all postgres peer\nlocal all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n")
    server.stop()
    server.start()


def nextcloud_on(engine: str, server, nc_root):
    db, values = (installs.mysql_database if engine == "mysql" else installs.pgsql_database)(server)
    if engine == "mysql":      # the installer's grant: its own database, nothing more
        for host in ("%", "localhost"):
            server.sql(f"REVOKE ALL PRIVILEGES ON *.* FROM '{values['dbuser']}'@'{host}'")
    else:
        only_peer(server)
    install = installs.build(nc_root, values)
    install.database = db
    return install


def dumped(install, directory) -> str:
    stream = directory / "nextcloud.sql"
    with open(stream, "wb") as out:
        result = dbpipe("dbpipe-dump", "--nextcloud", install.root, stdout=out)
    assert result.returncode == 0, result.stderr.decode()
    os.chmod(stream, 0o644)
    return str(stream)


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_the_scratch_database_comes_from_the_administrative_account(engine, mariadb_unix_socket, postgres_peer,
                                                                     nc_root):
    server = mariadb_unix_socket if engine == "mysql" else postgres_peer
    install = nextcloud_on(engine, server, nc_root)
    stream = dumped(install, nc_root)

    result = dbpipe("dbpipe-verify", "--test-restore", "--nextcloud", install.root, stream)

    assert result.returncode == 0, result.stderr.decode()
    assert "verdict:   intact, test restore passed" in result.stdout.decode()
    assert "oc_filecache=" in result.stdout.decode()
    assert not [name for name in databases(engine, server) if name.startswith("dbpipe_verify_")]


def databases(engine: str, server) -> list[str]:
    if engine == "mysql":
        return server.sql("SHOW DATABASES").split()
    account = pwd.getpwnam("postgres")     # only peer authentication is left for us too
    argv = ["psql", "-X", "-A", "-t", "-h", server.socket, "-p", str(server.port), "-U", "postgres",
            "-c", "SELECT datname FROM pg_database"]
    return subprocess.run(argv, capture_output=True, text=True, check=True, user=account.pw_uid,
                          group=account.pw_gid, extra_groups=[], env=bareos_env(), cwd="/").stdout.split()


def test_another_user_than_root_is_told_in_one_line(mariadb_unix_socket, nc_root):
    install = nextcloud_on("mysql", mariadb_unix_socket, nc_root)
    stream = dumped(install, nc_root)
    web = installs.web_account()

    result = subprocess.run([str(BIN / "dbpipe-verify"), "--test-restore", "--nextcloud", str(install.root), stream],
                            capture_output=True, cwd="/", env=bareos_env(), user=web.pw_uid, group=web.pw_gid,
                            extra_groups=[])

    assert result.returncode == 77, result.stderr.decode()
    assert "administrative account, which needs root" in last_line(result), result.stderr.decode()


def test_the_readme_shell_block_as_written(mariadb_unix_socket, nc_root, tmp_path):
    """README's "In a shell" lines, in order, with a profile `nextcloud` and
    only the Nextcloud path substituted (runbook.Runner)."""
    db, values = installs.mysql_database(mariadb_unix_socket)
    install = installs.build(nc_root, values)
    install.database = db
    profiles = tmp_path / "profiles"
    profiles.mkdir(mode=0o700)
    profile = profiles / "nextcloud.conf"
    profile.write_text(f"[database]\ntype = mysql\nsocket = {mariadb_unix_socket.socket}\n"
                       f"user = {values['dbuser']}\npassword = {values['dbpassword']}\n"
                       f"database = {values['dbname']}\n")
    profile.chmod(0o600)
    before = install.database.fingerprint()
    (block,) = [text for language, text in blocks(ROOT / "README.md")
                if language == "sh" and text.startswith("dbpipe-dump --profile nextcloud")]
    run = Runner(None, None, {"/var/www/nextcloud": str(install.root)}, env=bareos_env(
        PATH=f"{BIN}:{BARE_PATH}", DBPIPE_CONFIG_DIR=str(profiles), TMPDIR=str(tmp_path), PWD=str(tmp_path)))

    run.run(block)

    assert "verdict:   intact, test restore passed" in run.outputs[-1]
    assert install.database.fingerprint() == before
