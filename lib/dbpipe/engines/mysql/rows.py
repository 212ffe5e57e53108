"""The DAV reader's rows (engines/rows.py) from MariaDB/MySQL."""

from __future__ import annotations

from ..rows import PARAMETER, RowSource, blobs_to_bytes, group
from .sql import mysql_errors


class MysqlRows(RowSource):
    def __init__(self, connection):
        """connection: MysqlEngine.connect's context, entered here, left by close()."""
        self._context = connection
        self.conn = self._context.__enter__()
        try:
            self._execute("SET SESSION sql_mode = 'ANSI_QUOTES'")   # "name" quotes identifiers
        except BaseException:
            self.close()
            raise

    def _execute(self, sql, params=None):
        with mysql_errors("reading the scratch database failed"), self.conn.cursor() as cursor:
            cursor.execute(sql, params)
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]

    def rows(self, sql, params=None, blobs=()):
        sql = PARAMETER.sub(r"%(\1)s", sql)
        return [blobs_to_bytes(row, blobs) for row in self._execute(sql, params or {})]

    def columns(self):
        found = self._execute("SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.COLUMNS "
                              "WHERE TABLE_SCHEMA = DATABASE()")
        return group((row["TABLE_NAME"], row["COLUMN_NAME"]) for row in found)

    def close(self):
        self._context.__exit__(None, None, None)
