"""--nextcloud DIR: the database target read from the installation exactly as
Nextcloud reads it (merged config files, NC_* overrides, ConnectionFactory's
dbhost rules), through PHP run as the owner of config.php."""

from __future__ import annotations

import os
import subprocess

import pytest

from ..helpers import dbpipe, last_line
from testkit import installs


def discover(install, **kw):
    from dbpipe.nextcloud.config import discover_target
    return discover_target(str(install.root), **kw)


def build(root, values, **kw):
    return installs.build(root, {"dbname": "nextcloud", "dbuser": "nc", "dbpassword": "s3cret:'\"x",
                                 **values}, **kw)


MYSQL_FORMS = [
    ("localhost", "localhost", None, None),
    ("db.example.org:3307", "db.example.org", 3307, None),
    ("localhost:3307", "localhost", None, None),  # PHP's driver: localhost = the default socket
    ("127.0.0.1:3307", "127.0.0.1", 3307, None),
    ("localhost:/run/mysqld/mysqld.sock", "localhost", None, "/run/mysqld/mysqld.sock"),
    (":/var/run/mysqld/mysqld.sock", None, None, "/var/run/mysqld/mysqld.sock"),
    ("[::1]:3306", "::1", 3306, None),
    ("[2001:db8::5]", "2001:db8::5", None, None),
    ("", None, None, None),
]
PGSQL_FORMS = [
    ("/run/postgresql", None, None, "/run/postgresql"),
    ("/run/postgresql:5433", None, 5433, "/run/postgresql"),
    ("db.example.org:5433", "db.example.org", 5433, None),
    ("[::1]:5432", "::1", 5432, None),
    ("localhost:/run/postgresql", "localhost", None, None),  # Nextcloud ignores it for pgsql
    ("localhost", "localhost", None, None),
]


@pytest.mark.parametrize("dbhost,host,port,socket", MYSQL_FORMS)
def test_mysql_dbhost_forms(nc_root, dbhost, host, port, socket):
    install = build(nc_root, {"dbtype": "mysql", "dbhost": dbhost, "mysql.utf8mb4": True})
    target = discover(install)
    assert (target.type, target.host, target.port, target.socket) == ("mysql", host, port, socket)
    assert (target.database, target.user, target.password) == ("nextcloud", "nc", "s3cret:'\"x")
    assert (target.charset, target.table_prefix) == ("utf8mb4", "oc_")


@pytest.mark.parametrize("dbhost,host,port,socket", PGSQL_FORMS)
def test_pgsql_dbhost_forms(nc_root, dbhost, host, port, socket):
    install = build(nc_root, {"dbtype": "pgsql", "dbhost": dbhost, "dbtableprefix": "nc_"})
    target = discover(install)
    assert (target.type, target.host, target.port, target.socket) == ("pgsql", host, port, socket)
    assert (target.charset, target.table_prefix) == (None, "nc_")


@pytest.mark.parametrize("dbtype", ["sqlite3", "sqlite"])
def test_sqlite_file_is_dbname_db_in_the_data_directory(nc_root, dbtype):
    install = installs.build(nc_root, {"dbtype": dbtype, "dbname": "cloud",
                                       "datadirectory": str(nc_root / "elsewhere")})
    target = discover(install)
    assert (target.type, target.database) == ("sqlite", str(nc_root / "elsewhere" / "cloud.db"))


def test_defaults_sqlite_owncloud_db_below_the_installation(nc_root):
    install = installs.build(nc_root, {})
    values = install.file_config()
    assert "dbtype" not in values
    target = discover(install)
    assert target.database == str(nc_root / "data" / "owncloud.db")


def test_mysql_without_utf8mb4_talks_utf8(nc_root):
    install = build(nc_root, {"dbtype": "mysql", "dbhost": "localhost", "mysql.utf8mb4": False})
    assert discover(install).charset == "utf8"


@pytest.mark.parametrize("reader", ["occ", "php"])
def test_split_config_files_merge_in_natural_order(nc_root, reader, monkeypatch):
    """config.php, then *.config.php natsorted: 10.config.php beats 9.config.php
    (a plain sort would put 10 first); NC_* variables beat every file."""
    install = build(nc_root, {"dbtype": "pgsql", "dbhost": "config-php-host"}, occ=reader == "occ",
                    split={"db.config.php": {"dbhost": "db-config-host", "dbpassword": "from-split"},
                           "9.config.php": {"dbname": "nine", "dbuser": "nine"},
                           "10.config.php": {"dbname": "ten"}})
    target = discover(install)
    assert (target.host, target.database, target.user, target.password) == \
        ("db-config-host", "ten", "nine", "from-split")
    monkeypatch.setenv("NC_dbhost", "env-host:5439")
    target = discover(install)
    assert (target.host, target.port, target.database) == ("env-host", 5439, "ten")


def test_failing_occ_falls_back_to_reading_the_files_with_php(nc_root):
    install = build(nc_root, {"dbtype": "mysql", "dbhost": "db:3307"})
    install.fail({"match": "config:list", "message": "Could not connect to the database"})
    target = discover(install)
    assert (target.host, target.port, target.password) == ("db", 3307, "s3cret:'\"x")
    assert install.commands() == ["config:list system --private --output=json"]


def test_next_nextcloud_in_maintenance_mode_is_read_with_php(nc_root, caplog):
    """The next Nextcloud's occ has no config:list in maintenance mode: the
    same values come from PHP, without a warning."""
    install = build(nc_root, {"dbtype": "mysql", "dbhost": "db:3307"}, variant="pr56754")
    install.set_maintenance(True)
    caplog.set_level("INFO", logger="dbpipe")
    target = discover(install)
    assert (target.host, target.port, target.password) == ("db", 3307, "s3cret:'\"x")
    assert install.commands()[-1] == "config:list system --private --output=json"
    assert [r.levelname for r in caplog.records if "no commands defined" in r.getMessage()] == ["INFO"]


def test_php_runs_as_the_owner_of_config_php(nc_root):
    install = build(nc_root, {"dbtype": "mysql", "dbhost": "db"})
    discover(install)
    assert [call["uid"] for call in install.calls()] == [installs.web_account().pw_uid]


# --- failures, through dbpipe-dump as Bareos runs it ------------------------------------

def dump_nextcloud(root, env):
    return dbpipe("dbpipe-dump", "--nextcloud", root, env=env)


def test_missing_installation_exits_66(nc_root, env):
    result = dump_nextcloud(nc_root / "nope", env)
    assert result.returncode == 66
    assert "does not exist" in last_line(result)


def test_missing_config_exits_78(nc_root, env):
    (nc_root / "config").mkdir(parents=True)
    result = dump_nextcloud(nc_root, env)
    assert result.returncode == 78
    assert "config.php does not exist" in last_line(result)


@pytest.mark.parametrize("reader", ["occ", "php"])
def test_unreadable_config_exits_78(nc_root, env, reader):
    install = build(nc_root, {"dbtype": "mysql", "dbhost": "db"}, occ=reader == "occ")
    os.chmod(install.config_file, 0)
    result = dump_nextcloud(nc_root, env)
    assert result.returncode == 78, result.stderr
    assert "Could not open the config file" in last_line(result)


def test_broken_config_exits_78(nc_root, env):
    install = build(nc_root, {"dbtype": "mysql", "dbhost": "db"}, occ=False)
    install.config_file.write_text("<?php\n$CONFIG = array('dbtype' => ;\n")
    result = dump_nextcloud(nc_root, env)
    assert result.returncode == 78
    assert "cannot read the Nextcloud config" in last_line(result)


def test_config_owned_by_root_is_refused_exit_78(nc_root, env):
    install = build(nc_root, {"dbtype": "mysql", "dbhost": "db"})
    os.chown(install.config_file, 0, 0)
    result = dump_nextcloud(nc_root, env)
    assert result.returncode == 78
    assert "owned by root; occ never runs as root" in last_line(result)
    assert install.calls() == []


def test_oracle_is_not_supported_exit_78(nc_root, env):
    build(nc_root, {"dbtype": "oci", "dbhost": "ora"})
    result = dump_nextcloud(nc_root, env)
    assert result.returncode == 78
    assert "'oci' (Oracle) is not supported" in last_line(result)


def test_dump_and_restore_with_nextcloud_only(mysql_install, env, tmp_path, syslog):
    """A FileSet needs only reader=dbpipe-dump --nextcloud DIR; host:port over
    TCP (the other installs use sockets); dbport is only warned about; the
    password shows up in no log line."""
    values = mysql_install.file_config()
    values["dbhost"] = f"127.0.0.1:{mysql_install.database.server.port}"
    values["dbport"] = "3399"
    mysql_install.config_file.write_text(installs.php_config(values))
    stream = tmp_path / "nc.sql"
    with open(stream, "wb") as out:
        result = dbpipe("dbpipe-dump", "--nextcloud", mysql_install.root, "-v", env=env, stdout=out)
    assert result.returncode == 0, result.stderr
    assert "dbport 3399, which Nextcloud ignores" in result.stderr.decode()
    assert f"on 127.0.0.1:{mysql_install.database.server.port}" in result.stderr.decode()
    assert installs.PASSWORD not in result.stderr.decode() + syslog.text()
    result = dbpipe("dbpipe-verify", "--test-restore", "--nextcloud", mysql_install.root, stream, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert "test restore passed" in result.stdout.decode()
    before = mysql_install.database.fingerprint()
    mysql_install.database.change()
    result = dbpipe("dbpipe-restore", "--nextcloud", mysql_install.root, stdin=stream, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert mysql_install.database.fingerprint() == before



def test_the_occ_double_refuses_other_users_like_the_real_console(nc_root):
    install = build(nc_root, {"dbtype": "mysql", "dbhost": "db"})
    result = subprocess.run(["php", "occ", "status"], cwd=install.root, capture_output=True, text=True)
    uid = installs.web_account().pw_uid
    assert result.returncode == 1
    assert result.stdout.splitlines()[:3] == [
        "Console has to be executed with the user that owns the file config/config.php",
        "Current user id: 0", f"Owner id of config.php: {uid}"]
    assert install.occ("status").returncode == 0
