"""MariaDB and MySQL, one module per concern: the engine (dump, control
connection, staging restore, verification), the atomic swap, replace mode
with its rollback, side and scratch database names with the removal of a
killed run's, the definer check, and the SQL they share."""

from .engine import MysqlEngine, client_tool, connection_args
from .sides import MAX_NAME, SideNames, side_name
from .sql import mysql_error, mysql_errors, quote

__all__ = ["MAX_NAME", "MysqlEngine", "SideNames", "client_tool", "connection_args", "mysql_error", "mysql_errors",
           "quote", "side_name"]
