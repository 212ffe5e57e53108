"""The database target of a Nextcloud installation, found the way Nextcloud
finds it.

The values come from PHP, never from a parser of ours: preferably
`occ config:list system --private` (authoritative: it merges
config/*.config.php and honours NC_* overrides); when occ cannot run or
refuses (the next Nextcloud in maintenance mode), a small constant PHP
program does what lib/private/Config.php readData() does (sysconfig.py).  The
password travels on the child's stdout only.  The mapping follows
lib/private/DB/ConnectionFactory.php.
"""

from __future__ import annotations

import os
import re

from ..errors import ConfigError, DbpipeError
from ..log import log, register_secret
from ..target import Target
from .installation import Installation, open_installation
from .occ import DEFAULT_TIMEOUT, CommandUnavailable, Occ
from .sysconfig import read_with_php

TYPES = {"mysql": "mysql", "pgsql": "pgsql", "sqlite": "sqlite", "sqlite3": "sqlite"}
DEFAULT_DBNAME = "owncloud"
DEFAULT_PREFIX = "oc_"
# tables every Nextcloud has (core migrations); a restore drill requires them
CORE_TABLES = ("appconfig", "filecache", "storages", "users")
_HOST_SUFFIX = re.compile(r"^(.*):([^\]:]+)$")   # ConnectionFactory::splitHostFromPortAndSocket
_BRACKETS = re.compile(r"^\[([^\]]+)\]$")


def discover_target(directory: str, php: str | None = None,
                    timeout: float = DEFAULT_TIMEOUT) -> Target:
    """The database of the installation in directory, as a Target."""
    installation = open_installation(directory, php)
    values = with_environment(read_system_config(installation, timeout))
    target = target_from_config(values, installation.root)
    register_secret(target.password)
    log.info("Nextcloud %s: %s", installation.root, target.describe())
    return target


def read_system_config(installation: Installation, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """occ first; PHP reading the files when occ fails or sees no installed
    instance (Nextcloud silently skips an unreadable config.php)."""
    installation.run_as()  # refuse root-owned configs and foreign users before running anything
    if os.path.isfile(installation.occ_path):
        try:
            values = Occ(installation, timeout).system_config(private=True)
            if php_truthy(values.get("installed")):
                return values
            log.debug("occ config:list shows no installed instance")
        except CommandUnavailable as exc:
            log.info("%s; reading the config files with PHP instead", exc)
        except DbpipeError as exc:
            log.warning("%s; reading the config files with PHP instead", exc)
    values = read_with_php(installation, timeout)
    if not php_truthy(values.get("installed")):
        raise ConfigError(f"the config in {installation.config_dir} does not describe an installed "
                          f"Nextcloud (no 'installed' => true)")
    return values


def with_environment(values: dict, environ=os.environ) -> dict:
    """Config::getValue() prefers NC_<key> from the environment; so do we
    (config:list applies it only to keys present in the files)."""
    merged = dict(values)
    merged.update({key[3:]: value for key, value in environ.items() if key.startswith("NC_")})
    return merged


def target_from_config(values: dict, root: str) -> Target:
    """ConnectionFactory's reading of the config, as a Target."""
    kind = str(values.get("dbtype") or "sqlite").strip().lower()
    if kind == "oci":
        raise ConfigError("dbtype 'oci' (Oracle) is not supported by dbpipe")
    if kind not in TYPES:
        raise ConfigError(f"unknown dbtype {kind!r} in the Nextcloud config")
    name = str(values.get("dbname") or DEFAULT_DBNAME)
    prefix = str(values.get("dbtableprefix", DEFAULT_PREFIX))
    if TYPES[kind] == "sqlite":
        return Target(type="sqlite", database=os.path.join(data_directory(values, root), f"{name}.db"),
                      table_prefix=prefix)
    _warn_dbport(values.get("dbport"))
    host, port, socket = split_dbhost(str(values.get("dbhost") or ""), TYPES[kind])
    return Target(type=TYPES[kind], database=name, host=host, port=port, socket=socket,
                  user=_text(values.get("dbuser")), password=_text(values.get("dbpassword")),
                  charset=_charset(values) if kind == "mysql" else None, table_prefix=prefix)


def data_directory(values: dict, root: str) -> str:
    """config.php's 'datadirectory'; Nextcloud's default is data/ in the web root."""
    return str(values.get("datadirectory") or os.path.join(root, "data"))


def split_dbhost(dbhost: str, kind: str) -> tuple[str | None, int | None, str | None]:
    """(host, port, socket) from dbhost: host, host:port, host:/socket,
    [::1]:port; for pgsql a directory is the socket directory."""
    host, port, socket = dbhost.strip(), None, None
    match = _HOST_SUFFIX.match(host)
    if match:
        host, suffix = match.groups()
        if suffix.isdigit():
            port = int(suffix)
        else:
            socket = suffix
    host = _BRACKETS.sub(r"\1", host)
    if kind == "pgsql" and socket:
        log.warning("dbhost %r: Nextcloud ignores a socket path for pgsql and connects to %s; "
                    "so does dbpipe (give the socket directory as dbhost)", dbhost, host or "the default")
        socket = None
    if kind == "pgsql" and host.startswith("/"):
        host, socket = "", host
    if kind == "mysql" and host == "localhost" and port and not socket:
        log.warning("dbhost %r: PHP's mysql driver reaches localhost through the default socket "
                    "and ignores the port; so does dbpipe (use 127.0.0.1:%d for TCP)", dbhost, port)
        port = None
    return host or None, port, socket


def _warn_dbport(dbport) -> None:
    if dbport not in (None, "", 0, "0"):
        log.warning("config.php sets dbport %s, which Nextcloud ignores (the port comes from "
                    "dbhost); so does dbpipe", dbport)


def _charset(values: dict) -> str:
    """mysql.utf8mb4 true: utf8mb4 (else Nextcloud talks utf8), PHP truthiness."""
    return "utf8mb4" if php_truthy(values.get("mysql.utf8mb4", False)) else "utf8"


def php_truthy(value) -> bool:
    """PHP's boolean conversion: env overrides arrive as strings ('false' is true)."""
    return value not in (None, False, 0, 0.0, "", "0", [], {})


def _text(value) -> str | None:
    return None if value in (None, "") else str(value)
