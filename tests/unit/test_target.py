"""Where a target comes from: INI config files, profiles, password files and
flags, layered; and the rule that a file holding a password is private."""

from __future__ import annotations

import os

import pytest

from dbpipe import cli
from dbpipe.errors import ConfigError, ExitCode, NoInputError, UsageError
from dbpipe.target import CONFIG_DIR_ENV, Target, finish, load_config, parse_port, profile_path


def write(path, text: str, mode: int = 0o600) -> str:
    path.write_text(text)
    os.chmod(path, mode)
    return str(path)


def parse(argv, prog="dbpipe-dump"):
    parser = cli.parser(prog, "test")
    cli.add_target_options(parser)
    parser.add_argument("--all-databases", action="store_true")
    args = parser.parse_args(argv)
    return cli.target_from_args(args, all_databases=args.all_databases)


def test_config_file_values(tmp_path):
    path = write(tmp_path / "nc.conf", "[database]\ntype = mysql\nhost = db.example.org\n"
                 "port = 3307\nuser = nextcloud\npassword = s3cr:t;#x\ndatabase = nextcloud\n"
                 "defaults-file = /etc/mysql/debian.cnf\n")
    assert load_config(path) == {"type": "mysql", "host": "db.example.org", "port": 3307,
                                 "user": "nextcloud", "password": "s3cr:t;#x", "database": "nextcloud",
                                 "defaults_file": "/etc/mysql/debian.cnf"}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_config_with_password_must_not_be_readable_by_others(tmp_path, mode):
    path = write(tmp_path / "nc.conf", "[database]\ntype=mysql\npassword=x\n", mode)
    with pytest.raises(ConfigError, match=r"readable by group or others .*chmod 600") as caught:
        load_config(path)
    assert caught.value.code == ExitCode.CONFIG == 78


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_config_with_password_is_accepted(tmp_path, mode):
    path = write(tmp_path / "nc.conf", "[database]\ntype=mysql\npassword=x\n", mode)
    assert load_config(path)["password"] == "x"


def test_config_without_password_may_be_world_readable(tmp_path):
    path = write(tmp_path / "nc.conf", "[database]\ntype=pgsql\ndatabase=nc\n", 0o644)
    assert load_config(path) == {"type": "pgsql", "database": "nc"}


def test_config_password_file_is_read_and_empty_values_ignored(tmp_path):
    secret = write(tmp_path / "pw", "line one\nline two\n")
    path = write(tmp_path / "nc.conf", f"[database]\ntype=mysql\nhost=\npassword-file={secret}\n", 0o644)
    assert load_config(path) == {"type": "mysql", "password": "line one"}


@pytest.mark.parametrize("text, message", [
    ("[db]\ntype=mysql\n", "has no \\[database\\] section"),
    ("[database]\ntype=mysql\nhots=x\n", "unknown key\\(s\\) hots"),
    ("[database]\nport=99999\n", "port must be a number"),
    ("[database]\nport=abc\n", "port must be a number"),
    ("type=mysql\n", "malformed"),
    ("[database]\ntype=mysql\ntype=pgsql\n", "malformed"),
])
def test_bad_config_files(tmp_path, text, message):
    path = write(tmp_path / "bad.conf", text, 0o644)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.conf"))


def test_missing_password_file(tmp_path):
    with pytest.raises(NoInputError, match="password file .* does not exist"):
        parse(["--type", "mysql", "--database", "x", "--password-file", str(tmp_path / "none")])


def test_profile_directory_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)
    assert profile_path("nextcloud") == "/etc/dbpipe/nextcloud.conf"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path))
    assert profile_path("nextcloud") == str(tmp_path / "nextcloud.conf")


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b", ".hidden"])
def test_profile_names_cannot_leave_the_directory(name):
    with pytest.raises(UsageError):
        profile_path(name)


def test_flags_override_profile_and_config(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path))
    write(tmp_path / "nc.conf", "[database]\ntype=mysql\nhost=profile-host\nuser=profile-user\n"
          "database=profile-db\npassword=from-profile\n")
    config = write(tmp_path / "other.conf", "[database]\nuser=config-user\nport=3307\n", 0o644)
    target = parse(["--profile", "nc", "--config", config, "--database", "flag-db"])
    assert target == Target(type="mysql", host="profile-host", user="config-user", port=3307,
                            database="flag-db", password="from-profile")
    assert "from-profile" not in repr(target)


def test_sqlite_database_becomes_an_absolute_path():
    assert finish(Target(type="sqlite", database="rel/x.db")).database == os.path.abspath("rel/x.db")


@pytest.mark.parametrize("target, message", [
    (Target(), "no database type given"),
    (Target(type="oracle", database="x"), "not supported"),
    (Target(type="mysql"), "no database given"),
])
def test_incomplete_targets_are_usage_errors(target, message):
    with pytest.raises(UsageError, match=message) as caught:
        finish(target)
    assert caught.value.code == ExitCode.USAGE == 64


def test_all_databases_needs_no_database_but_not_for_sqlite():
    assert finish(Target(type="pgsql"), all_databases=True).database is None
    with pytest.raises(UsageError, match="does not apply to sqlite"):
        finish(Target(type="sqlite", database="x"), all_databases=True)


@pytest.mark.parametrize("value", ["0", "65536", "-1", "3306x", ""])
def test_bad_ports(value):
    with pytest.raises(ConfigError):
        parse_port(value)


def test_usage_errors_exit_64_not_argparse_2():
    with pytest.raises(UsageError, match="see --help"):
        parse(["--type", "db2"])
    with pytest.raises(UsageError):
        parse(["--no-such-option"])
