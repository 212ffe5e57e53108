"""The atomic swap: a staging database's tables into the live one in one
RENAME TABLE.

RENAME TABLE moves any number of tables between databases atomically, but
not views, and not tables that carry triggers; those are recreated around it.
"""

from __future__ import annotations

import contextlib

from ...errors import DbpipeError, TempFailure
from ...log import log
from ...process import point_of_no_return
from ..base import LiveChange
from .sides import lock_name, side_name
from .sql import create_database, database_exists, drop_database, execute, quote, schema_objects, table_names

SWAP_WAIT = 600       # seconds a restore waits for another one's swap into the same database


class Swap:
    """Moves all tables of `staging` into `live` in one RENAME TABLE and
    recreates what RENAME cannot carry: triggers, views, routines, events."""

    def __init__(self, conn, live: str, staging: str):
        self.conn, self.live, self.staging = conn, live, staging

    def run(self, keep_old: bool, live: LiveChange) -> str:
        """One swap at a time per live database: two restores started together
        would otherwise read each other's half-moved triggers."""
        name = lock_name("swap:" + self.live)
        got = execute(self.conn, "SELECT GET_LOCK(%s, %s)", (name, SWAP_WAIT), context="cannot lock the swap")
        if got and got[0][0] != 1:
            raise TempFailure(f"another restore of {self.live} is swapping its tables in for more than "
                              f"{SWAP_WAIT} s; try again later")
        try:
            return self._run(keep_old, live)
        finally:
            with contextlib.suppress(DbpipeError):
                execute(self.conn, "SELECT RELEASE_LOCK(%s)", (name,))

    def _run(self, keep_old: bool, live: LiveChange) -> str:
        point_of_no_return(f"while the tables of {self.live} were being swapped in")
        live.begin()
        if not database_exists(self.conn, self.live):
            create_database(self.conn, self.live, like=self.staging)
        replaced = bool(schema_objects(self.conn, self.live))
        side = side_name(self.live, "old") if replaced else None   # nothing replaced: nothing to keep
        if side:
            create_database(self.conn, side, like=self.live)
        new_triggers, old_triggers = self._triggers(self.staging), self._triggers(self.live)
        new_code, new_views = self._code(self.staging), self._views(self.staging)
        old_views = self._views(self.live)
        self._drop_triggers(self.staging, new_triggers)
        self._drop_triggers(self.live, old_triggers)
        try:
            self._rename(side)
        except DbpipeError:
            self._recreate(self.live, old_triggers)
            live.reverted()
            if side:
                drop_database(self.conn, side)
            raise
        self._replace_code(new_code, new_triggers, new_views)
        if not side:
            return ""
        self._keep_old_objects(side, old_triggers, old_views)
        if keep_old:
            log.info("previous tables kept in database %s (drop it when no longer needed)", side)
            return side
        drop_database(self.conn, side)
        return ""

    def _rename(self, side: str | None) -> None:
        with self.conn.cursor() as cur:
            old, new = table_names(cur, self.live) if side else [], table_names(cur, self.staging)
        moves = [f"{quote(self.live)}.{quote(t)} TO {quote(side)}.{quote(t)}" for t in old]
        moves += [f"{quote(self.staging)}.{quote(t)} TO {quote(self.live)}.{quote(t)}" for t in new]
        if moves:
            execute(self.conn, "RENAME TABLE " + ", ".join(moves), context="RENAME TABLE failed")

    def _triggers(self, schema: str) -> list[tuple]:
        names = execute(self.conn, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS "
                         "WHERE TRIGGER_SCHEMA=%s ORDER BY ACTION_ORDER", (schema,))
        return [self._show(schema, "TRIGGER", name) for (name,) in names]

    def _views(self, schema: str) -> list[tuple]:
        names = execute(self.conn, "SELECT TABLE_NAME FROM information_schema.VIEWS "
                         "WHERE TABLE_SCHEMA=%s", (schema,))
        return [self._show(schema, "VIEW", name) for (name,) in names]

    def _code(self, schema: str) -> list[tuple]:
        return [self._show(schema, kind, name) for kind, name in schema_objects(self.conn, schema)
                if kind in ("PROCEDURE", "FUNCTION", "EVENT")]

    def _show(self, schema: str, kind: str, name: str) -> tuple:
        """(kind, name, sql_mode, CREATE statement) as the server prints it."""
        import pymysql

        self.conn.select_db(schema)  # unqualified names in the statement
        with self.conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(f"SHOW CREATE {kind} {quote(name)}")
            row = cur.fetchone()
        statement = next(v for k, v in row.items() if k.lower().startswith(("create", "sql original")))
        return kind, name, row.get("sql_mode", ""), statement

    def _drop_triggers(self, schema: str, triggers) -> None:
        for _, name, _, _ in triggers:
            execute(self.conn, f"DROP TRIGGER {quote(schema)}.{quote(name)}")

    def _recreate(self, schema: str, objects) -> None:
        """Create objects in schema; a view that needs another view waits a round."""
        self.conn.select_db(schema)
        pending = list(objects)
        while pending:
            failed, error = [], None
            for kind, name, sql_mode, statement in pending:
                try:
                    execute(self.conn, "SET SESSION sql_mode=%s", (sql_mode,))
                    execute(self.conn, statement, context=f"cannot recreate {kind.lower()} {name}")
                except DbpipeError as exc:
                    failed.append((kind, name, sql_mode, statement))
                    error = exc
            if len(failed) == len(pending):
                raise error
            pending = failed

    def _replace_code(self, code, triggers, views) -> None:
        for kind, name in schema_objects(self.conn, self.live):
            if kind in ("VIEW", "PROCEDURE", "FUNCTION", "EVENT"):
                execute(self.conn, f"DROP {kind} IF EXISTS {quote(self.live)}.{quote(name)}")
        self._recreate(self.live, views + triggers + code)

    def _keep_old_objects(self, side: str, triggers, views) -> None:
        try:
            self._recreate(side, views + triggers)
        except DbpipeError as exc:
            log.warning("the kept tables in %s lack some old views/triggers: %s", side, exc)
