"""Engine registry: one implementation per database type."""

from __future__ import annotations

from ..errors import UsageError
from .base import Engine, LiveChange, RestoreOptions, RestoreResult


def get_engine(kind: str | None) -> Engine:
    if kind == "mysql":
        from .mysql import MysqlEngine
        return MysqlEngine()
    if kind == "pgsql":
        from .pgsql import PgsqlEngine
        return PgsqlEngine()
    if kind == "sqlite":
        from .sqlite import SqliteEngine
        return SqliteEngine()
    raise UsageError(f"unsupported database type {kind!r}")


__all__ = ["Engine", "LiveChange", "RestoreOptions", "RestoreResult", "get_engine"]
