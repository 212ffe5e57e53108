"""Reading Nextcloud's DAV tables from a scratch database.

The tables (``<prefix>calendars``, ``calendarobjects``, ``addressbooks``,
``cards``) are the ones Nextcloud's dav app creates.  Columns arrived over
the years (calendartype in 14, cards.uid in 15, the trash bin's deleted_at in
22), so every query is built from the columns the dump really has.

One SQL dialect serves all engines: identifiers in double quotes (MariaDB
gets ANSI_QUOTES), parameters written as ``:name``.  calendardata/carddata
are blobs and come back as the exact stored bytes.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import re
import sqlite3
import urllib.parse
from dataclasses import dataclass

from ..errors import DataError, NoInputError, UsageError
from ..target import Target
from .ical import property_value
from .model import (ADDRESSBOOK, CALENDAR, PRINCIPAL_PREFIX, Collection, Item, principal,
                    trash_free_uri)

DAV_TABLES = ("calendars", "calendarobjects", "addressbooks", "cards")
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_]*")
PARAMETER = re.compile(r":([a-z_]+)")
CALENDAR_TYPE_CALENDAR = 0          # calendartype 1: objects of a subscription
MAX_NAMES_SHOWN = 20


def check_prefix(prefix: str) -> str:
    """Table prefixes go into SQL as they are, so only plain names pass."""
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise UsageError(f"bad table prefix {prefix!r}: only letters, digits and _ are allowed")
    return prefix


class RowSource(abc.ABC):
    """Runs a SELECT on the scratch database and returns its rows as dicts."""

    @abc.abstractmethod
    def rows(self, sql: str, params: dict | None = None, blobs: tuple = ()) -> list[dict]:
        """Rows of sql; columns named in blobs come back as bytes."""

    def batch(self, queries: list[tuple[str, dict, tuple]]) -> list[list[dict]]:
        """Several (sql, params, blobs) queries; one round trip where that is cheaper."""
        return [self.rows(sql, params, blobs) for sql, params, blobs in queries]

    @abc.abstractmethod
    def columns(self) -> dict[str, frozenset[str]]:
        """Every table of the database with its column names."""

    def close(self) -> None:  # noqa: B027 - most sources hold nothing to close
        pass


def _as_bytes(value) -> bytes:
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8")


class SqliteRows(RowSource):
    def __init__(self, path: str):
        uri = "file:" + urllib.parse.quote(path) + "?mode=ro"
        self.conn = sqlite3.connect(uri, uri=True)

    def rows(self, sql, params=None, blobs=()):
        cursor = self.conn.execute(sql, params or {})
        names = [column[0] for column in cursor.description]
        return [_blobs_to_bytes(dict(zip(names, row, strict=False)), blobs) for row in cursor.fetchall()]

    def columns(self):
        found = self.conn.execute(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p "
            "WHERE m.type = 'table'").fetchall()
        return _group(found)

    def close(self):
        self.conn.close()


class MysqlRows(RowSource):
    def __init__(self, target: Target):
        from ..engines.mysql import MysqlEngine
        self._context = MysqlEngine().connect(target, target.database)
        self.conn = self._context.__enter__()
        try:
            self._execute("SET SESSION sql_mode = 'ANSI_QUOTES'")   # "name" quotes identifiers
        except BaseException:
            self.close()
            raise

    def _execute(self, sql, params=None):
        import pymysql
        from ..engines.mysql import mysql_error
        try:
            with self.conn.cursor() as cursor:
                cursor.execute(sql, params)
                names = [column[0] for column in cursor.description or ()]
                return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]
        except pymysql.err.MySQLError as exc:
            raise mysql_error(exc, "reading the scratch database failed") from None

    def rows(self, sql, params=None, blobs=()):
        sql = PARAMETER.sub(r"%(\1)s", sql)
        return [_blobs_to_bytes(row, blobs) for row in self._execute(sql, params or {})]

    def columns(self):
        found = self._execute("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
                              "WHERE TABLE_SCHEMA = DATABASE()")
        return _group((row["TABLE_NAME"], row["COLUMN_NAME"]) for row in found)

    def close(self):
        self._context.__exit__(None, None, None)


class PgsqlRows(RowSource):
    """Through psql (no driver to vendor): one JSON object per row, so any
    text survives; bytea arrives in hex."""

    SETUP = "SET client_encoding TO 'UTF8';\nSET bytea_output TO 'hex';\n"
    SEPARATOR = "--dbpipe-next-result--"

    def __init__(self, target: Target):
        from ..engines.pgsql import PgsqlEngine
        self.engine, self.target = PgsqlEngine(), target

    def batch(self, queries):
        """All queries in one psql run, results separated by a marker line."""
        params = {key: str(value) for _, p, _ in queries for key, value in (p or {}).items()}
        selects = [f"SELECT row_to_json(q) FROM ({_psql_parameters(sql)}) AS q;\n" for sql, _, _ in queries]
        script = self.SETUP + f"\\echo {self.SEPARATOR}\n".join(selects)
        output = self.engine.query(self.target, script, self.target.database, **params)
        results: list[list[dict]] = [[]]
        for line in output.splitlines():
            if line == self.SEPARATOR:
                results.append([])
            elif line.strip():
                results[-1].append(json.loads(line))
        if len(results) != len(queries):
            raise DataError("unexpected output from psql while reading the scratch database")
        return [[self._blobs(row, blobs) for row in rows]
                for rows, (_, _, blobs) in zip(results, queries, strict=True)]

    def rows(self, sql, params=None, blobs=()):
        return self.batch([(sql, params or {}, blobs)])[0]

    @staticmethod
    def _blobs(row: dict, blobs) -> dict:
        for name in blobs:
            value = row.get(name)
            if isinstance(value, str) and value.startswith("\\x"):
                row[name] = bytes.fromhex(value[2:])
        return _blobs_to_bytes(row, blobs)

    def columns(self):
        found = self.rows(
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
        return _group((row["t"], row["c"]) for row in found)


def _psql_parameters(sql: str) -> str:
    """:name becomes :'name', psql's quoted interpolation of a --set variable."""
    return PARAMETER.sub(r":'\1'", sql)


def _blobs_to_bytes(row: dict, blobs) -> dict:
    for name in blobs:
        row[name] = _as_bytes(row.get(name))
    return row


def _group(pairs) -> dict[str, frozenset[str]]:
    tables: dict[str, set[str]] = {}
    for table, column in pairs:
        tables.setdefault(table, set()).add(column)
    return {table: frozenset(columns) for table, columns in tables.items()}


def open_rows(target: Target) -> RowSource:
    if target.type == "sqlite":
        return SqliteRows(target.database)
    if target.type == "mysql":
        return MysqlRows(target)
    return PgsqlRows(target)


@dataclass(frozen=True)
class DavSchema:
    """The DAV tables of one dump: prefix and the columns each table has."""

    prefix: str
    columns: dict[str, frozenset[str]]

    @classmethod
    def find(cls, all_columns: dict[str, frozenset[str]], prefix: str) -> "DavSchema":
        found = {name: all_columns[prefix + name] for name in DAV_TABLES if prefix + name in all_columns}
        if not found:
            raise DataError(f"this dump has no Nextcloud DAV tables ({prefix}calendars, "
                            f"{prefix}cards, ...)" + _prefix_hint(all_columns))
        return cls(prefix, found)

    def has(self, table: str, column: str = "id") -> bool:
        return column in self.columns.get(table, ())

    def table(self, name: str) -> str:
        return f'"{self.prefix}{name}"'

    def column_or_null(self, table: str, column: str) -> str:
        return f'"{column}"' if self.has(table, column) else f'NULL AS "{column}"'


def _prefix_hint(all_columns) -> str:
    prefixes = sorted({name[: -len("calendarobjects")] for name in all_columns
                       if name.endswith("calendarobjects")})
    if prefixes:
        return "; the dump has them with table prefix " + ", ".join(repr(p) for p in prefixes) \
            + " (use --table-prefix)"
    return "; is this a Nextcloud database?"


@dataclass(frozen=True)
class UserData:
    """One user's collections (with item counts) and all their items."""

    collections: list[Collection]
    items: dict[int, list[Item]]          # id(collection) -> items, in table order

    def items_of(self, collection: Collection) -> list[Item]:
        return self.items.get(id(collection), [])


class DavTables:
    """Calendars, address books and items of one user: four queries whatever
    the number of calendars (every psql call costs a process start)."""

    def __init__(self, rows: RowSource, prefix: str):
        self.source = rows
        self.schema = DavSchema.find(rows.columns(), check_prefix(prefix))

    def users(self) -> list[str]:
        found = set()
        for table in ("calendars", "addressbooks"):
            if self.schema.has(table, "principaluri"):
                found |= {row["p"] for row in self.source.rows(
                    f'SELECT DISTINCT "principaluri" AS p FROM {self.schema.table(table)}')}
        return sorted(p[len(PRINCIPAL_PREFIX):] for p in found if p and p.startswith(PRINCIPAL_PREFIX))

    def read(self, user: str) -> UserData:
        kinds = [(CALENDAR, self._calendar_queries()), (ADDRESSBOOK, self._addressbook_queries())]
        kinds = [(kind, queries) for kind, queries in kinds if queries]
        params = {"principal": principal(user)}
        results = iter(self.source.batch([(sql, params, blobs) for _, queries in kinds
                                          for sql, blobs in queries]))
        collections, items = [], {}
        for kind, _ in kinds:
            owners, rows = next(results), next(results)
            for owner in owners:
                mine = [self._item(kind, owner, row) for row in rows if int(row["owner"]) == int(owner["id"])]
                collection = _collection(kind, owner, mine)
                items[id(collection)] = [dataclasses.replace(i, collection=collection) for i in mine]
                collections.append(collection)
        if not collections:
            raise NoInputError(self._unknown_user(user))
        return UserData(collections, items)

    def _unknown_user(self, user: str) -> str:
        others = self.users()
        shown = ", ".join(others[:MAX_NAMES_SHOWN]) + (", ..." if len(others) > MAX_NAMES_SHOWN else "")
        return (f"unknown user {user!r}: no calendars or address books of {principal(user)} in "
                f"this dump" + (f" (users with DAV data: {shown})" if others else ""))

    def _calendar_queries(self) -> list[tuple[str, tuple]]:
        """(sql, blob columns) for the user's calendars, then their objects."""
        s = self.schema
        if not (s.has("calendars") and s.has("calendarobjects")):
            return []
        optional = ", ".join(s.column_or_null("calendarobjects", name) for name in (
            "uid", "componenttype", "firstoccurence", "lastoccurence", "deleted_at"))
        type_condition = (f' AND "calendartype" = {CALENDAR_TYPE_CALENDAR}'
                          if s.has("calendarobjects", "calendartype") else "")
        return [
            (f'SELECT "id", "uri", "displayname", {s.column_or_null("calendars", "deleted_at")} '
             f'FROM {s.table("calendars")} WHERE "principaluri" = :principal ORDER BY "id"', ()),
            (f'SELECT "calendarid" AS "owner", "uri", "calendardata" AS "data", {optional} '
             f'FROM {s.table("calendarobjects")} WHERE "calendarid" IN (SELECT "id" FROM '
             f'{s.table("calendars")} WHERE "principaluri" = :principal){type_condition} ORDER BY "id"',
             ("data",))]

    def _addressbook_queries(self) -> list[tuple[str, tuple]]:
        s = self.schema
        if not (s.has("addressbooks") and s.has("cards")):
            return []
        return [
            (f'SELECT "id", "uri", "displayname", NULL AS "deleted_at" FROM {s.table("addressbooks")} '
             f'WHERE "principaluri" = :principal ORDER BY "id"', ()),
            (f'SELECT "addressbookid" AS "owner", "uri", "carddata" AS "data", '
             f'{s.column_or_null("cards", "uid")} FROM {s.table("cards")} WHERE "addressbookid" IN '
             f'(SELECT "id" FROM {s.table("addressbooks")} WHERE "principaluri" = :principal) '
             f'ORDER BY "id"', ("data",))]

    @staticmethod
    def _item(kind: str, owner: dict, row: dict) -> Item:
        placeholder = Collection(kind, int(owner["id"]), "", "")
        uid = row["uid"] or property_value(row["data"], b"UID").decode("utf-8", "replace").strip()
        if kind == ADDRESSBOOK:
            return Item(placeholder, row["uri"], row["uri"], uid, row["data"], "VCARD")
        deleted_at = _int_or_none(row["deleted_at"])
        return Item(placeholder, trash_free_uri(row["uri"]) if deleted_at is not None else row["uri"],
                    row["uri"], uid, row["data"], (row["componenttype"] or "").upper(),
                    _int_or_none(row["firstoccurence"]), _int_or_none(row["lastoccurence"]), deleted_at)


def _collection(kind: str, row: dict, items: list[Item]) -> Collection:
    deleted_at = _int_or_none(row["deleted_at"])
    trashed = len(items) if deleted_at is not None else sum(1 for i in items if i.deleted_at is not None)
    return Collection(kind, int(row["id"]), row["uri"] or "", row["displayname"] or "",
                      deleted_at, len(items), trashed)


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


@contextlib.contextmanager
def dav_tables(target: Target, prefix: str):
    rows = open_rows(target)
    try:
        yield DavTables(rows, prefix)
    finally:
        rows.close()
