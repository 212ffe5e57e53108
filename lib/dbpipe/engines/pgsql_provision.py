"""PostgreSQL: the role and database a restored Nextcloud config.php names,
created on an empty server as Nextcloud's installer creates them
(lib/private/Setup/PostgreSQL.php): a login role with CREATEDB and the
password, and the database owned by it (so it holds its public schema on
PostgreSQL 15 and later, as the restore needs)."""

from __future__ import annotations

from ..log import register_secret
from ..target import Target


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def statements(target: Target, password: str, user_missing: bool = True, database_missing: bool = True
               ) -> list[str]:
    """What creates the missing pieces; password is a literal value or a placeholder."""
    user, database = identifier(target.user), identifier(target.database)
    result = [f"CREATE USER {user} CREATEDB PASSWORD {password}"] if user_missing else []
    if database_missing:
        result.append(f"CREATE DATABASE {database} OWNER {user}")
    return result


def missing(engine, admin: Target, target: Target) -> tuple[bool, bool]:
    """(role missing, database missing), asked with the administrative account."""
    found = engine._maintenance_query(
        admin, "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = :'user') || ',' || "
               "(SELECT count(*) FROM pg_database WHERE datname = :'name')",
        user=target.user, name=target.database)
    roles, databases = found.split(",")
    return roles == "0", databases == "0"


def create(engine, admin: Target, target: Target, user_missing: bool, database_missing: bool) -> None:
    """One statement per psql call: CREATE DATABASE cannot run in a transaction block."""
    password = literal(target.password or "")
    register_secret(password)
    for sql in statements(target, password, user_missing, database_missing):
        engine._maintenance_query(admin, sql)


def can_log_in(engine, target: Target) -> None:
    """Raises PermissionDenied/NoInputError when target's account cannot use its database."""
    engine.query(target, "SELECT 1", target.database)
