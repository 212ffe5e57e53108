"""Reading rows from a database in one SQL dialect for all engines.

Identifiers go in double quotes (MariaDB gets ANSI_QUOTES), parameters are
written as ``:name``; each engine turns that into its own form.  Blob columns
come back as the exact stored bytes.  Each engine's `rows(target)` returns
its RowSource; the DAV tables reader (items/tables.py) asks no more.
"""

from __future__ import annotations

import abc
import re

PARAMETER = re.compile(r":([a-z_]+)")


class RowSource(abc.ABC):
    """Runs a SELECT on a database and returns its rows as dicts."""

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


def blobs_to_bytes(row: dict, blobs) -> dict:
    for name in blobs:
        row[name] = _as_bytes(row.get(name))
    return row


def group(pairs) -> dict[str, frozenset[str]]:
    """(table, column) pairs as {table: its columns}."""
    tables: dict[str, set[str]] = {}
    for table, column in pairs:
        tables.setdefault(table, set()).add(column)
    return {table: frozenset(columns) for table, columns in tables.items()}
