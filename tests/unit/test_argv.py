"""The exact argv every engine builds, and how secrets travel instead of argv:
an anonymous pipe for MySQL, a private 0600 pgpass file for PostgreSQL."""

from __future__ import annotations

import os
import pwd
import shutil
import stat

import pytest

from dbpipe.credentials import mysql_option_args, mysql_option_fd, pgpass_environment
from dbpipe.engines import get_engine
from dbpipe.engines.mysql import side_name
from dbpipe.engines.pgsql import conninfo
from dbpipe.process import child_environment
from dbpipe.target import Target

SECRET = "pw with 'quotes' \"dq\" `bt` ;$(id) \\ : end"
MYSQL_DUMP_OPTIONS = ["--single-transaction", "--quick", "--routines", "--triggers", "--events",
                      "--hex-blob", "--no-tablespaces", "--max-allowed-packet=1G",
                      "--default-character-set=utf8mb4"]
MYSQL_CLIENT_OPTIONS = ["--batch", "--max-allowed-packet=1G", "--default-character-set=utf8mb4",
                        "--connect-timeout=30"]


def tool(name: str) -> str:
    return shutil.which(name, path=os.environ.get("PATH"))


def dump_command(target: Target, scope: str = "database"):
    """Build the dump command and return (argv, env_extra, pass_fds, fd content).
    mysql: without a lock timeout - its watchdog would connect to the server;
    the argv is the same either way."""
    args = (0,) if target.type == "mysql" else ()
    with get_engine(target.type).dump_command(target, scope, *args) as command:
        assert command.watch is None
        content = os.read(command.pass_fds[0], 4096) if command.pass_fds else b""
        files = {k: open(v).read() for k, v in command.env_extra.items() if k == "PGPASSFILE"}
        return command, content, files


# --- mysql ------------------------------------------------------------------------------

def test_mysql_dump_over_tcp_with_password():
    target = Target(type="mysql", database="nextcloud", host="db.example.org", port=3307,
                    user="nc", password=SECRET)
    command, content, _ = dump_command(target)
    fd = command.pass_fds[0]
    assert command.argv == [tool("mariadb-dump"), f"--defaults-extra-file=/dev/fd/{fd}",
                            "--host=db.example.org", "--port=3307", "--protocol=TCP", "--user=nc",
                            *MYSQL_DUMP_OPTIONS, "--", "nextcloud"]
    assert content.startswith(b"[client]\npassword=\"")
    assert SECRET not in " ".join(command.argv) and command.env_extra == {}


def test_mysql_dump_over_socket_with_defaults_file_and_no_password():
    target = Target(type="mysql", database="-starts with dash", socket="/run/mysqld/mysqld.sock",
                    port=3306, defaults_file="/etc/mysql/debian.cnf")
    command, _, _ = dump_command(target)
    assert command.pass_fds == ()
    assert command.argv == [tool("mariadb-dump"), "--defaults-file=/etc/mysql/debian.cnf",
                            "--socket=/run/mysqld/mysqld.sock", *MYSQL_DUMP_OPTIONS,
                            "--", "-starts with dash"]


def test_mysql_dump_all_databases():
    command, _, _ = dump_command(Target(type="mysql", user="root"), "all")
    assert command.argv == [tool("mariadb-dump"), "--user=root", *MYSQL_DUMP_OPTIONS, "--all-databases",
                            "--add-drop-database"]


def test_mysql_client_argv():
    engine = get_engine("mysql")
    target = Target(type="mysql", database="nc", host="h", user="u", password=SECRET)
    assert engine._client_argv(target, 7, "nc__dbpipe_new") == [
        tool("mariadb"), "--defaults-extra-file=/dev/fd/7", "--host=h", "--user=u",
        *MYSQL_CLIENT_OPTIONS, "--database=nc__dbpipe_new"]
    assert engine._client_argv(target, None, None) == [
        tool("mariadb"), "--host=h", "--user=u", *MYSQL_CLIENT_OPTIONS]


def test_mysql_option_args_order():
    assert mysql_option_args("/etc/my.cnf", 9) == ["--defaults-file=/etc/my.cnf",
                                                   "--defaults-extra-file=/dev/fd/9"]
    assert mysql_option_args(None, None) == []


def test_mysql_password_pipe_is_readable_once_and_closed_afterwards():
    with mysql_option_fd(SECRET) as fd:
        assert stat.S_ISFIFO(os.fstat(fd).st_mode) and os.get_inheritable(fd)
        content = os.read(fd, 4096).decode()
        assert os.read(fd, 4096) == b""
    with pytest.raises(OSError):
        os.fstat(fd)
    value = content.split("password=", 1)[1].rstrip("\n")
    assert value.startswith('"') and value.endswith('"')
    assert value[1:-1].replace('\\"', '"').replace("\\\\", "\\") == SECRET
    with mysql_option_fd(None) as nothing:
        assert nothing is None


def test_staging_and_side_names_fit_mysql_limits():
    name = side_name("n" * 64, "new")
    assert len(name) <= 64 and "__dbpipe_new_" in name
    assert side_name("nc", "old").startswith("nc__dbpipe_old_")


# --- pgsql ------------------------------------------------------------------------------

def test_pgsql_dump_over_socket_with_password():
    target = Target(type="pgsql", database="next cloud", socket="/run/postgresql", port=5433,
                    user="nc", password=SECRET)
    command, _, files = dump_command(target)
    assert command.argv == [tool("pg_dump"), "--no-password", "--host=/run/postgresql", "--port=5433",
                            "--username=nc", "--lock-wait-timeout=300000", "--format=plain",
                            "--dbname=dbname='next cloud'"]
    assert set(command.env_extra) == {"PGPASSFILE", "PGCONNECT_TIMEOUT"}
    assert files["PGPASSFILE"] == "*:*:*:*:" + SECRET.replace("\\", "\\\\").replace(":", "\\:") + "\n"
    assert SECRET not in " ".join(command.argv) + " ".join(command.env_extra.values())
    assert not os.path.exists(command.env_extra["PGPASSFILE"])  # gone with the context


def test_pgsql_dump_over_tcp_without_password_and_dumpall():
    command, _, _ = dump_command(Target(type="pgsql", database="nc", host="10.0.0.5"))
    assert command.argv == [tool("pg_dump"), "--no-password", "--host=10.0.0.5", "--lock-wait-timeout=300000",
                            "--format=plain", "--dbname=dbname='nc'"]
    assert command.env_extra == {"PGCONNECT_TIMEOUT": "30"}
    command, _, _ = dump_command(Target(type="pgsql", user="postgres"), "all")
    assert command.argv == [tool("pg_dumpall"), "--no-password", "--username=postgres",
                            "--lock-wait-timeout=300000", "--clean", "--if-exists"]


def test_pgpass_file_is_private_and_removed():
    with pgpass_environment(SECRET) as env:
        path = env["PGPASSFILE"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert not os.path.exists(os.path.dirname(path))


@pytest.mark.parametrize("name, expected", [
    ("nc", "dbname='nc'"),
    ("host=evil port=1", "dbname='host=evil port=1'"),
    ("it's", "dbname='it\\'s'"),
    ("back\\slash", "dbname='back\\\\slash'"),
])
def test_pgsql_database_names_cannot_become_connection_options(name, expected):
    assert conninfo(name) == expected


# --- sqlite -----------------------------------------------------------------------------

def test_sqlite_dump_reads_a_snapshot_as_the_file_owner(tmp_path):
    path = tmp_path / "owncloud.db"
    path.write_bytes(b"")
    command, _, _ = dump_command(Target(type="sqlite", database=str(path)))
    assert command.argv == [tool("sqlite3"), "-readonly", "-bail", "-cmd", ".timeout 30000",
                            str(path), ".dump"]
    if os.geteuid() == 0:
        assert command.run_as is None  # root's own file
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
        command, _, _ = dump_command(Target(type="sqlite", database=str(path)))
        assert (command.run_as.uid, command.run_as.gid) == (nobody.pw_uid, nobody.pw_gid)


def test_sqlite_dump_of_a_missing_file_is_no_input(tmp_path):
    from dbpipe.errors import NoInputError
    with pytest.raises(NoInputError, match="does not exist"):
        dump_command(Target(type="sqlite", database=str(tmp_path / "none.db")))


# --- children's environment -------------------------------------------------------------

def test_child_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("MYSQL_PWD", SECRET)
    monkeypatch.setenv("PGPASSWORD", SECRET)
    monkeypatch.setenv("BareosJobId", "42")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LC_TIME", "C")
    env = child_environment({"PGPASSFILE": "/x"})
    assert SECRET not in env.values()
    assert "BareosJobId" not in env and "LC_ALL" not in env
    assert env["LC_MESSAGES"] == "C" and env["LC_TIME"] == "C" and env["PGPASSFILE"] == "/x"
    assert set(env) <= {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LC_MESSAGES",
                        "LC_TIME", "PGPASSFILE"}


def test_pgsql_dump_lock_timeout_in_milliseconds_and_zero_waits_for_ever():
    target = Target(type="pgsql", database="nc", host="10.0.0.5")
    with get_engine("pgsql").dump_command(target, "database", 2.5) as command:
        assert "--lock-wait-timeout=2500" in command.argv
    with get_engine("pgsql").dump_command(target, "database", 0) as command:
        assert not [arg for arg in command.argv if arg.startswith("--lock-wait-timeout")]
