"""The SQL every part of the MySQL engine shares: one way to run a statement
(a pymysql error becomes a DbpipeError with its exit code), and the
databases, tables and objects a restore creates, lists and drops."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ...errors import CantCreateError, DataError, DbpipeError, NoInputError, PermissionDenied, UnavailableError

TABLE_TYPES = ("BASE TABLE", "SEQUENCE", "SYSTEM VERSIONED")
# One table for both ways a MySQL error reaches us: an error code from
# pymysql, or a client tool's stderr line (which carries the code, or words).
ERRORS = (  # (codes, words in the message, error class)
    ((1044, 1045, 1142, 1227), "access denied", PermissionDenied),
    ((1049,), "unknown database", NoInputError),
    ((2002, 2003, 2005, 2006, 2013), "can't connect|lost connection|gone away", UnavailableError),
)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def mysql_error(exc: Exception, context: str, error_class: type[DbpipeError] | None = None
                ) -> DbpipeError:  # a pymysql MySQLError
    """The DbpipeError an error code means (ERRORS, else DataError) or
    error_class, saying context and what the server said."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    message = f"{context}: {exc.args[1] if len(exc.args) > 1 else exc}"
    error_class = error_class or next((cls for codes, _, cls in ERRORS if code in codes), DataError)
    return error_class(message)


@contextlib.contextmanager
def mysql_errors(context: str, error_class: type[DbpipeError] | None = None) -> Iterator[None]:
    """Whatever pymysql raises inside becomes mysql_error(exc, context): the
    one place its errors get an exit code and a one-line message."""
    import pymysql  # here: with cryptography it costs ~40 ms of every start; dumps never connect

    try:
        yield
    except pymysql.err.MySQLError as exc:
        raise mysql_error(exc, context, error_class) from None


def execute(conn, sql: str, args=None, context: str = ""):
    with mysql_errors(context or sql.split("(")[0][:80]), conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def database_exists(conn, name: str) -> bool:
    return bool(execute(conn, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (name,)))


def create_database(conn, name: str, like: str | None) -> None:
    row = execute(conn, "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                  "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME=%s", (like,)) if like else ()
    options = f" CHARACTER SET {row[0][0]} COLLATE {row[0][1]}" if row else ""
    try:
        execute(conn, f"CREATE DATABASE {quote(name)}{options}", context=f"cannot create database {name}")
    except DataError as exc:
        raise CantCreateError(str(exc)) from None


def drop_database(conn, name: str) -> None:
    with contextlib.suppress(DbpipeError):
        execute(conn, f"DROP DATABASE IF EXISTS {quote(name)}")


def table_names(cur, schema: str) -> list[str]:
    cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s "
                "AND TABLE_TYPE IN %s ORDER BY TABLE_NAME", (schema, TABLE_TYPES))
    return [row[0] for row in cur.fetchall()]


def drop_everything(conn, schema: str) -> None:
    """Empty a database: views, tables (with their triggers), routines, events."""
    conn.select_db(schema)
    execute(conn, "SET FOREIGN_KEY_CHECKS=0")
    try:
        for kind, name in schema_objects(conn, schema):
            execute(conn, f"DROP {kind} IF EXISTS {quote(schema)}.{quote(name)}")
    finally:
        execute(conn, "SET FOREIGN_KEY_CHECKS=1")


def schema_objects(conn, schema: str) -> list[tuple[str, str]]:
    views = execute(conn, "SELECT 'VIEW', TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA=%s", (schema,))
    tables = execute(conn, "SELECT IF(TABLE_TYPE='SEQUENCE','SEQUENCE','TABLE'), TABLE_NAME "
                     "FROM information_schema.TABLES WHERE TABLE_SCHEMA=%s AND TABLE_TYPE IN %s",
                     (schema, TABLE_TYPES))
    routines = execute(conn, "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES "
                       "WHERE ROUTINE_SCHEMA=%s", (schema,))
    events = execute(conn, "SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS "
                     "WHERE EVENT_SCHEMA=%s", (schema,))
    return list(views) + list(tables) + list(routines) + list(events)
