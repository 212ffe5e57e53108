"""MariaDB/MySQL: the database and account a restored Nextcloud config.php
names, created on an empty server as Nextcloud's installer creates them
(lib/private/Setup/MySQL.php): the user at 'localhost' and at '%' with the
password, the database in utf8mb4 with a binary collation, and the
installer's list of privileges on that database alone - granted to both
accounts, since the 'localhost' one is what a socket connection logs in as."""

from __future__ import annotations

from ...errors import DataError, PermissionDenied
from ...target import Target

PRIVILEGES = ("SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, INDEX, ALTER, CREATE TEMPORARY TABLES, "
              "LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER")
HOSTS = ("localhost", "%")


def literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def statements(target: Target, password: str, user_missing: bool = True, database_missing: bool = True
               ) -> list[str]:
    """What creates the missing pieces; password is a literal value or a placeholder."""
    from .sql import quote

    accounts = [f"{literal(target.user)}@'{host}'" for host in HOSTS]
    result = ["CREATE USER IF NOT EXISTS " + ", ".join(f"{account} IDENTIFIED BY {password}"
                                                        for account in accounts)] if user_missing else []
    if database_missing:
        result.append(f"CREATE DATABASE IF NOT EXISTS {quote(target.database)} "
                      "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    result.append(f"GRANT {PRIVILEGES} ON {quote(target.database)}.* TO {', '.join(accounts)}")
    return result


def missing(engine, admin: Target, target: Target) -> tuple[bool, bool]:
    """(user missing, database missing), asked with the administrative account."""
    from .sql import execute as _execute

    with engine.connect(admin) as conn:
        users = _execute(conn, "SELECT 1 FROM mysql.user WHERE User=%s", (target.user,))
        schemas = _execute(conn, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s",
                           (target.database,))
    return not users, not schemas


def create(engine, admin: Target, target: Target, user_missing: bool, database_missing: bool) -> None:
    from .sql import execute as _execute

    with engine.connect(admin) as conn:
        for sql in statements(target, literal(target.password or ""), user_missing, database_missing):
            _execute(conn, sql, context="creating the Nextcloud database account")


def can_log_in(engine, target: Target) -> None:
    """Raises PermissionDenied/NoInputError when target's account cannot use
    its database (MariaDB answers a missing user over the socket with 1698,
    which the restore's own errors do not list)."""
    try:
        with engine.connect(target, target.database):
            pass
    except DataError as exc:
        if "access denied" in str(exc).lower():
            raise PermissionDenied(str(exc)) from None
        raise
