"""Reading Nextcloud's DAV tables from a scratch database.

The tables (``<prefix>calendars``, ``calendarobjects``, ``addressbooks``,
``cards``) are the ones Nextcloud's dav app creates.  Columns arrived over
the years (calendartype in 14, cards.uid in 15, the trash bin's deleted_at in
22), so every query is built from the columns the dump really has.

One SQL dialect serves all engines (engines/rows.py): identifiers in double
quotes, parameters written as ``:name``.  calendardata/carddata are blobs and
come back as the exact stored bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from dataclasses import dataclass

from ..engines import get_engine
from ..engines.rows import RowSource
from ..errors import DataError, NoInputError, UsageError
from ..target import Target
from .ical import property_value
from .model import (ADDRESSBOOK, CALENDAR, PRINCIPAL_PREFIX, Collection, Item, principal,
                    trash_free_uri)

DAV_TABLES = ("calendars", "calendarobjects", "addressbooks", "cards")
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_]*")
CALENDAR_TYPE_CALENDAR = 0          # calendartype 1: objects of a subscription
MAX_NAMES_SHOWN = 20


def check_prefix(prefix: str) -> str:
    """Table prefixes go into SQL as they are, so only plain names pass."""
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise UsageError(f"bad table prefix {prefix!r}: only letters, digits and _ are allowed")
    return prefix


def open_rows(target: Target) -> RowSource:
    return get_engine(target.type).rows(target)


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
