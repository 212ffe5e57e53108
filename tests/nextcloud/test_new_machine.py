"""Disaster recovery onto a new machine: the database server is empty - no
database, no user.  The writer (dbpipe-restore --nextcloud, as the bpipe
plugin runs it, as root) creates both as Nextcloud's installer does, with
the server's administrative account (MariaDB root by unix_socket only,
PostgreSQL postgres by peer only), and loads the stream; a PostgreSQL 15
dump goes into an empty PostgreSQL 18.  Without that account nothing is
changed: one line names the statements (never the password) and the command
that finishes, which then works."""

from __future__ import annotations

import os
import pwd
import re
import subprocess

import pytest

from testkit import servers
from ..helpers import BARE_PATH, BIN, bareos_env, last_line
from testkit import installs
from . import test_scratch_account as scratch
from .test_scratch_account import dumped, nextcloud_on, only_peer

mariadb_unix_socket = scratch.mariadb_unix_socket    # the module's servers, shared
postgres_peer = scratch.postgres_peer


def owned_by_nextcloud(engine: str, server, install):
    """The test database's view and trigger as Nextcloud's own user would
    have created them (the sample makes them as root, whose DEFINER only
    root may restore); Nextcloud itself creates neither."""
    if engine == "mysql":
        definer = f"DEFINER='{install.config()['dbuser']}'@'localhost'"
        server.sql(f"CREATE OR REPLACE {definer} VIEW oc_big_files AS SELECT fileid, name FROM oc_filecache "
                   f"WHERE size > 50000; DROP TRIGGER oc_filecache_etag; CREATE {definer} TRIGGER oc_filecache_etag "
                   "BEFORE INSERT ON oc_filecache FOR EACH ROW SET NEW.etag = COALESCE(NEW.etag, MD5(NEW.path))",
                   database=install.database.name)
    return install


def fingerprint(engine: str, server, install) -> bytes:
    """The database's content, read with the test's own admin access (for
    PostgreSQL trust only while reading; peer only for everything else)."""
    if engine == "mysql":
        return install.database.fingerprint()
    with open(os.path.join(server.workdir, "data", "pg_hba.conf"), "w") as hba:
        hba.write("local all all trust\n")
    server.stop()
    server.start()
    try:
        return install.database.fingerprint()
    finally:
        only_peer(server)


def as_postgres(server, statement: str, database: str = "postgres") -> str:
    """psql as the local postgres account: peer is all the server allows."""
    account = pwd.getpwnam("postgres")
    argv = [server.tool("psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", server.socket,
            "-p", str(server.port), "-U", "postgres", "-d", database, "-c", statement]
    return subprocess.run(argv, capture_output=True, text=True, check=True, user=account.pw_uid,
                          group=account.pw_gid, extra_groups=[], env=bareos_env(), cwd="/").stdout.strip()


def content(server, database: str) -> dict[str, str]:
    """Every table's rows, compared as text (pg_dump 18 prints a dump otherwise than 15)."""
    tables = as_postgres(server, "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE n.nspname = 'public' AND c.relkind = 'r'", database).split()
    return {table: as_postgres(server, f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) "
                                       f'FROM "{table}" t', database) for table in tables}


@pytest.fixture
def postgres_15():
    server = servers.local_postgres()
    yield server
    servers.destroy(server)


def wipe(engine: str, server, install) -> None:
    """The database and its user gone, as on a freshly installed server."""
    name, user = install.database.name, install.config()["dbuser"]
    if engine == "mysql":
        server.sql(f"DROP DATABASE `{name}`; DROP USER IF EXISTS '{user}'@'%', '{user}'@'localhost'")
    else:
        as_postgres(server, f'DROP DATABASE "{name}"')
        as_postgres(server, f'DROP ROLE "{user}"')


def present(engine: str, server, install) -> tuple[bool, bool]:
    name, user = install.database.name, install.config()["dbuser"]
    if engine == "mysql":
        return (bool(server.sql(f"SELECT 1 FROM mysql.user WHERE User='{user}'")),
                bool(server.sql(f"SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='{name}'")))
    return (bool(as_postgres(server, f"SELECT 1 FROM pg_roles WHERE rolname='{user}'")),
            bool(as_postgres(server, f"SELECT 1 FROM pg_database WHERE datname='{name}'")))


def restore(install, stream: str, env: dict, user=None) -> subprocess.CompletedProcess:
    argv = [str(BIN / "dbpipe-restore"), "--nextcloud", str(install.root)]
    with open(stream, "rb") as source:
        return subprocess.run(argv, stdin=source, capture_output=True, cwd="/", env=env, timeout=300,
                              **({"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}))


@pytest.mark.parametrize("engine", ["mysql", "pgsql"])
def test_an_empty_server_gets_the_database_and_user_config_php_names(engine, mariadb_unix_socket, postgres_peer,
                                                                      nc_root, tmp_path):
    server = mariadb_unix_socket if engine == "mysql" else postgres_peer
    install = owned_by_nextcloud(engine, server, nextcloud_on(engine, server, nc_root))
    before = fingerprint(engine, server, install)
    stream = dumped(install, nc_root)
    wipe(engine, server, install)

    result = restore(install, stream, bareos_env(DBPIPE_STATE_DIR=str(tmp_path / "state")))

    assert result.returncode == 0, result.stderr.decode()
    assert present(engine, server, install) == (True, True)
    assert fingerprint(engine, server, install) == before
    assert install.config()["dbpassword"] not in result.stderr.decode()
    if engine == "mysql":
        grants = server.sql(f"SHOW GRANTS FOR '{install.config()['dbuser']}'@'localhost'")
        assert "ALL PRIVILEGES" not in grants and "*.*" in grants and "USAGE" in grants   # nothing global
        assert "LOCK TABLES" in grants and f"`{install.database.name}`.*" in grants


def test_without_the_administrative_account_nothing_changes_and_one_line_says_what_to_run(
        mariadb_unix_socket, nc_root):
    """As the web user (not root) the administrative account is out of reach."""
    server = mariadb_unix_socket
    install = owned_by_nextcloud("mysql", server, nextcloud_on("mysql", server, nc_root))
    before = install.database.fingerprint()
    stream = dumped(install, nc_root)
    wipe("mysql", server, install)
    web = installs.web_account()
    state = nc_root.parent / f"{nc_root.name}-state"     # the web user's own state directory
    state.mkdir()
    os.chown(state, web.pw_uid, web.pw_gid)

    result = restore(install, stream, bareos_env(DBPIPE_STATE_DIR=str(state)), user=web)

    assert result.returncode == 77, result.stderr.decode()
    line = last_line(result)
    password = install.config()["dbpassword"]
    assert password not in result.stderr.decode()
    assert "nothing was changed" in line and "CREATE USER" in line and "GRANT" in line, line
    assert "<password>: dbpassword in the restored config.php" in line, line
    assert present("mysql", server, install) == (False, False)
    assert "--dump-from" in line, result.stderr.decode()
    kept = re.search(r"--dump-from (\S+)", line).group(1)
    assert os.stat(kept).st_mode & 0o077 == 0

    statements = line.split("administrator run: ", 1)[1].split("; (<password>", 1)[0]
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"   # as the admin writes it
    server.sql(statements.replace("'<password>'", quoted) + ";")
    finish = line.split("then: ", 1)[1].split()
    done = subprocess.run([str(BIN / finish[0]), *finish[1:]], capture_output=True, cwd="/", timeout=300,
                          env=bareos_env(DBPIPE_STATE_DIR=str(state), PATH=BARE_PATH))

    assert done.returncode == 0, done.stderr.decode()
    assert install.database.fingerprint() == before
    assert not install.maintenance


def test_a_postgresql_15_dump_goes_into_an_empty_postgresql_18(postgres_15, server_pool, nc_root, tmp_path):
    install = nextcloud_on("pgsql", postgres_15, nc_root)     # Debian 12's PostgreSQL 15
    stream = dumped(install, nc_root)
    assert b"Dumped from database version 15." in open(stream, "rb").read(4096)
    before = content(postgres_15, install.database.name)
    target = servers.local_postgres(server_pool.get("pgsql", "18").bin_dir)
    try:
        with open(os.path.join(target.workdir, "data", "pg_hba.conf"), "w") as hba:
            hba.write("local all postgres peer\nlocal all all scram-sha-256\n")
        target.stop()
        target.start()
        config = install.config()
        text = install.config_file.read_text()     # the new machine's server, as its admin edits config.php
        install.config_file.write_text(text.replace(config["dbhost"], f"{target.socket}:{target.port}"))
        result = restore(install, stream, bareos_env(DBPIPE_STATE_DIR=str(tmp_path / "state"),
                                                     PATH=f"{target.bin_dir}:{BARE_PATH}"))
        assert result.returncode == 0, result.stderr.decode()
        assert as_postgres(target, "SHOW server_version").startswith("18")
        assert content(target, install.database.name) == before
    finally:
        servers.destroy(target)
