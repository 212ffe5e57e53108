"""Which database to talk to: the Target dataclass and where its values come from.

Values are layered, later layers winning: a Nextcloud installation's config,
then a --config/--profile INI file, then command-line flags.  Config files are
the way to keep ':' (host:port, URLs) and secrets out of bpipe plugin strings.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import stat
from dataclasses import dataclass, field

from .errors import ConfigError, NoInputError, PermissionDenied, UsageError

ENGINE_TYPES = ("mysql", "pgsql", "sqlite")
CONFIG_DIR_ENV = "DBPIPE_CONFIG_DIR"
DEFAULT_CONFIG_DIR = "/etc/dbpipe"
CONFIG_SECTION = "database"


@dataclass(frozen=True)
class Target:
    """A database to dump from or restore into.

    For sqlite, ``database`` is the path of the database file.  For pgsql,
    ``socket`` is the directory holding the server's socket.
    """

    type: str | None = None
    database: str | None = None
    host: str | None = None
    port: int | None = None
    socket: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    defaults_file: str | None = None
    charset: str | None = None
    table_prefix: str | None = None   # Nextcloud's dbtableprefix, carried for checks and reports
    # pgsql: run the client as the local account named by user (peer authentication
    # over the Unix socket); only the server's administrative account, never a profile key
    peer: bool = False

    def merged(self, **overrides) -> "Target":
        """A copy where every override that is not None replaces our value."""
        changes = {key: value for key, value in overrides.items() if value is not None}
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        where = self.socket or (f"{self.host}:{self.port}" if self.port else self.host) or "local"
        if self.type == "sqlite":
            return f"sqlite {self.database}"
        return f"{self.type} database {self.database!r} on {where}"


TARGET_KEYS = tuple(f.name for f in dataclasses.fields(Target) if f.name != "peer")


def read_password_file(path: str) -> str:
    """The first line of the file, without its line break."""
    try:
        with open(path, encoding="utf-8") as handle:
            line = handle.readline()
    except FileNotFoundError:
        raise NoInputError(f"password file {path} does not exist") from None
    except PermissionError:
        raise PermissionDenied(f"password file {path} is not readable") from None
    except OSError as exc:
        raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None
    return line.rstrip("\r\n")


def profile_path(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"bad profile name {name!r}: use a plain name such as 'nextcloud'")
    directory = os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR
    return os.path.join(directory, f"{name}.conf")


def load_config(path: str) -> dict:
    """Target values from the [database] section of an INI file.

    A file that holds a password must not be readable by group or others.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            parser.read_file(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise PermissionDenied(f"config file {path} is not readable") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is malformed: {_first_line(exc)}") from None
    if not parser.has_section(CONFIG_SECTION):
        raise ConfigError(f"config file {path} has no [{CONFIG_SECTION}] section")
    values = {key.replace("-", "_"): value for key, value in parser.items(CONFIG_SECTION)}
    if "password" in values and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"config file {path} holds a password but is readable by group or others "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )
    return _checked_values(values, path)


def _checked_values(values: dict, origin: str) -> dict:
    known = set(TARGET_KEYS) | {"password_file"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(unknown)}")
    if "password_file" in values:
        values["password"] = read_password_file(values.pop("password_file"))
    if "port" in values:
        values["port"] = parse_port(values["port"], origin)
    return {key: value for key, value in values.items() if value != ""}


def parse_port(value, origin: str = "--port") -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = -1
    if not 0 < port < 65536:
        raise ConfigError(f"{origin}: port must be a number from 1 to 65535, not {value!r}")
    return port


def finish(target: Target, all_databases: bool = False, database_optional: bool = False) -> Target:
    """Check that the target names everything an engine needs.

    database_optional: a server target may leave the database to the input
    (a restore takes it from the stream; an all-databases stream needs none)."""
    if target.type not in ENGINE_TYPES:
        raise UsageError(
            f"database type {target.type!r} is not supported; use --type with one of "
            + ", ".join(ENGINE_TYPES)
            if target.type
            else "no database type given: use --type, --config, --profile or --nextcloud"
        )
    if target.type == "sqlite" and all_databases:
        raise UsageError("--all-databases does not apply to sqlite")
    if not target.database and not all_databases and not (database_optional and target.type != "sqlite"):
        raise UsageError("no database given: use --database (for sqlite: the database file)")
    if target.type == "sqlite":
        return target.merged(database=os.path.abspath(target.database))
    return target


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
