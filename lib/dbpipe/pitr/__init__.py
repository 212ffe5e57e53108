"""Point-in-time recovery: a continuous archive (PostgreSQL WAL, MariaDB
binary logs) in a local spool that Bareos backs up, base backups through
bpipe, and restore to a chosen second."""
