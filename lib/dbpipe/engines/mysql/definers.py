"""Replace mode's check that it can put back what it drops."""

from __future__ import annotations

from ...errors import PermissionDenied
from .sql import execute

# Views, triggers, routines and events defined by another account, unless ours
# may name any definer (SUPER / SET USER).  GRANTEE reads 'user'@'host'.
FOREIGN_DEFINERS = (
    "SELECT CONCAT(kind, ' ', name, ' (definer ', definer, ')') FROM ("
    " SELECT 'view' AS kind, TABLE_NAME AS name, DEFINER AS definer"
    "  FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s"
    " UNION ALL SELECT 'trigger', TRIGGER_NAME, DEFINER"
    "  FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
    " UNION ALL SELECT LOWER(ROUTINE_TYPE), ROUTINE_NAME, DEFINER"
    "  FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"
    " UNION ALL SELECT 'event', EVENT_NAME, DEFINER"
    "  FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s) AS objects "
    "WHERE definer <> CURRENT_USER() AND NOT EXISTS ("
    " SELECT 1 FROM information_schema.USER_PRIVILEGES"
    " WHERE GRANTEE = CONCAT(CHAR(39), SUBSTRING_INDEX(CURRENT_USER(), '@', 1), CHAR(39), '@',"
    "                        CHAR(39), SUBSTRING_INDEX(CURRENT_USER(), '@', -1), CHAR(39))"
    "   AND PRIVILEGE_TYPE IN ('SUPER', 'SET USER', 'SET_USER_ID'))"
)


def require_recreatable(conn, schema: str) -> None:
    """Replace mode drops everything and, if the load fails, reloads the safety
    dump.  Objects defined by another account cannot be recreated without
    SUPER/SET USER, so that reload would fail too: refuse before dropping."""
    foreign = execute(conn, FOREIGN_DEFINERS, (schema,) * 4, context="cannot list definers")
    if foreign:
        names = ", ".join(row[0] for row in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise PermissionDenied(
            f"--mode replace could not put back {names}: defined by another account, and this one "
            "lacks the SUPER or SET USER privilege; nothing was changed (use an account that may "
            "create databases, or recreate these objects as this account)")
