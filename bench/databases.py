"""The benchmark databases: private servers tuned for bulk loads, a Nextcloud-like
schema, fast data generation to a given dump size, and the bare tools' commands.

Rows look like Nextcloud's: oc_filecache (varchar paths and hashes, bigints,
indexes as Nextcloud creates them) carries most of the bytes, oc_cards adds
vCards in a blob column with a base64 photo (mariadb-dump --hex-blob and
pg_dump's bytea output both write blobs as hex).  Data is generated inside
the server (MariaDB's sequence engine, PostgreSQL's generate_series), in
units of FILES_PER_UNIT files + CARDS_PER_UNIT cards.
"""

from __future__ import annotations

import os

from fixtures import servers  # first: puts dbpipe on sys.path

from dbpipe.credentials import LIBPQ_ENVIRONMENT
from dbpipe.engines import mysql as mysql_engine
from dbpipe.engines import pgsql as pgsql_engine
from dbpipe.target import Target
from measure import Command, bare_env, process_cpu, settle, tree_cpu

FILES_PER_UNIT = 1000
CARDS_PER_UNIT = 30
UNITS_PER_STATEMENT = 100
SOURCE = "nextcloud"
RESTORED = "nextcloud_restore"
FOLDERS = ("Documents", "Photos", "Música", "Projects/2024", "Shared/Team 🚀", "Notes")
EXTENSIONS = (".jpg", ".pdf", ".md", ".odt", ".mp3")


class BenchDatabase:
    """One engine's server plus the source database the benchmark dumps."""

    kind = ""
    tuning: tuple[str, ...] = ()

    def __init__(self):
        self.server: servers.Server | None = None
        self.units = 0

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        raise NotImplementedError

    def destroy(self) -> None:
        if self.server is not None:
            servers.destroy(self.server)
            self.server = None

    def server_cpu(self) -> float:
        raise NotImplementedError

    def settle(self) -> float:
        return settle(self.server_cpu)

    # --- data --------------------------------------------------------------------
    def add_units(self, count: int) -> None:
        """Append count units of rows (ids continue where the last call ended)."""
        while count > 0:
            step = min(count, UNITS_PER_STATEMENT)
            first = self.units * FILES_PER_UNIT + 1
            cards = self.units * CARDS_PER_UNIT + 1
            self._insert(first, first + step * FILES_PER_UNIT - 1,
                         cards, cards + step * CARDS_PER_UNIT - 1)
            self.units += step
            count -= step

    def _insert(self, first_file, last_file, first_card, last_card) -> None:
        raise NotImplementedError

    def counts(self, database: str) -> dict[str, int]:
        return {table: int(self.server.sql(f"SELECT COUNT(*) FROM {table}", database))
                for table in ("oc_filecache", "oc_cards")}

    # --- commands ----------------------------------------------------------------
    def target(self, database: str) -> Target:
        raise NotImplementedError

    def dbpipe_args(self, database: str) -> list[str]:
        return self.server.args(database=database)

    def bare_dump(self) -> Command:
        """The dump tool exactly as dbpipe-dump starts it (same engine code, same flags)."""
        engine = self.engine()
        with engine.dump_command(self.target(SOURCE), "database") as command:
            return Command(list(command.argv), bare_env(**command.env_extra))

    def engine(self):
        raise NotImplementedError

    def bare_load(self, database: str) -> Command:
        """The stock client loading SQL from its stdin, as dbpipe-restore's own client does."""
        raise NotImplementedError

    def reset(self, database: str) -> None:
        """An empty database of that name, and no leftovers of earlier restores."""
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError


class MariaDB(BenchDatabase):
    kind = "mysql"
    # like a dedicated database server doing a bulk load; testkit/servers.py already
    # sets innodb_flush_log_at_trx_commit=0, skip-log-bin, max_allowed_packet=64M
    tuning = ("innodb_buffer_pool_size=2G", "innodb_log_file_size=1G",
              "innodb_io_capacity=2000")

    def start(self) -> None:
        self.server = servers.local_mariadb()
        for setting in self.tuning:
            name, value = setting.split("=")
            self.server.sql(f"SET GLOBAL {name} = {_bytes(value)}")
        self.server.sql(f"CREATE DATABASE {SOURCE} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        self.server.sql(MARIADB_SCHEMA, SOURCE)

    def server_cpu(self) -> float:
        with open(os.path.join(self.server.workdir, "mysqld.pid")) as handle:
            return process_cpu(int(handle.read().split()[0]))

    def _insert(self, first_file, last_file, first_card, last_card) -> None:
        self.server.sql(MARIADB_FILES.format(a=first_file, b=last_file) + ";"
                        + MARIADB_CARDS.format(a=first_card, b=last_card), SOURCE)

    def target(self, database: str) -> Target:
        return Target(type="mysql", database=database, socket=self.server.socket,
                      user=self.server.admin_user)

    def engine(self):
        return mysql_engine.MysqlEngine()

    def bare_load(self, database: str) -> Command:
        # the flags dbpipe-restore gives its mariadb client (engines/mysql/engine.py)
        argv = [mysql_engine.client_tool(), *mysql_engine.connection_args(self.target(database)),
                "--batch", "--max-allowed-packet=1G", "--default-character-set=utf8mb4",
                f"--database={database}"]
        return Command(argv)

    def reset(self, database: str) -> None:
        leftovers = self.server.sql(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
            f"WHERE SCHEMA_NAME LIKE '{database}\\_\\_dbpipe\\_%'").split()
        for name in [database, *leftovers]:
            self.server.drop_database(name)
        self.server.create_database(database)

    def version(self) -> str:
        return "MariaDB " + self.server.sql("SELECT VERSION()")


class PostgreSQL(BenchDatabase):
    kind = "pgsql"
    # fsync=off and synchronous_commit=off come from testkit/servers.py
    tuning = ("shared_buffers='1GB'", "max_wal_size='4GB'", "maintenance_work_mem='512MB'",
              "checkpoint_timeout='30min'")

    def start(self) -> None:
        self.server = servers.local_postgres()
        for setting in self.tuning:
            self.server.sql(f"ALTER SYSTEM SET {setting.replace('=', ' = ', 1)}")
        self.server.stop()   # shared_buffers needs a restart
        self.server.start()
        self.server.create_database(SOURCE)
        self.server.sql(PG_SCHEMA, SOURCE)

    def server_cpu(self) -> float:
        with open(os.path.join(self.server.workdir, "data", "postmaster.pid")) as handle:
            return tree_cpu(int(handle.readline()))

    def _insert(self, first_file, last_file, first_card, last_card) -> None:
        self.server.sql(PG_FILES.format(a=first_file, b=last_file) + ";"
                        + PG_CARDS.format(a=first_card, b=last_card), SOURCE)

    def target(self, database: str) -> Target:
        return Target(type="pgsql", database=database, socket=self.server.socket,
                      port=self.server.port, user=self.server.admin_user)

    def engine(self):
        return pgsql_engine.PgsqlEngine()

    def bare_load(self, database: str) -> Command:
        # the flags dbpipe-restore gives psql, plus the stock one-transaction load
        # reading stdin (--file=-: --single-transaction only wraps -f/-c input)
        argv = [pgsql_engine._tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "--single-transaction", *pgsql_engine.connection_args(self.target(database)),
                f"--dbname={pgsql_engine.conninfo(database)}", "--file=-"]
        return Command(argv, bare_env(**LIBPQ_ENVIRONMENT))

    def reset(self, database: str) -> None:
        self.server.drop_database(database)
        self.server.create_database(database)
        self.server.sql("CHECKPOINT")

    def version(self) -> str:
        return "PostgreSQL " + self.server.sql("SHOW server_version").split()[0]


def _bytes(value: str) -> int:
    """'2G' -> 2147483648 (SET GLOBAL takes no size suffixes)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def make(kind: str) -> BenchDatabase:
    return MariaDB() if kind == "mysql" else PostgreSQL()


def _elt(values, expr: str, sql_kind: str) -> str:
    """SQL choosing values[expr % len(values)]."""
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    if sql_kind == "mysql":
        return f"ELT(1 + ({expr}) % {len(values)}, {quoted})"
    return f"(ARRAY[{quoted}])[1 + ({expr}) % {len(values)}]"


# Nextcloud's oc_filecache columns after the key and storage, the same in both engines' SQL
FILECACHE_COLUMNS = """\
  path VARCHAR(4000) DEFAULT NULL, path_hash VARCHAR(32) NOT NULL DEFAULT '',
  parent BIGINT NOT NULL DEFAULT 0, name VARCHAR(250) DEFAULT NULL,
  mimetype BIGINT NOT NULL DEFAULT 0, mimepart BIGINT NOT NULL DEFAULT 0,
  size BIGINT NOT NULL DEFAULT 0, mtime BIGINT NOT NULL DEFAULT 0,
  storage_mtime BIGINT NOT NULL DEFAULT 0, encrypted INT NOT NULL DEFAULT 0,
  unencrypted_size BIGINT NOT NULL DEFAULT 0, etag VARCHAR(40) DEFAULT NULL,
  permissions INT DEFAULT 0, checksum VARCHAR(255) DEFAULT NULL"""

# --- MariaDB ---------------------------------------------------------------------------

MARIADB_SCHEMA = f"""
CREATE TABLE oc_filecache (
  fileid BIGINT NOT NULL AUTO_INCREMENT, storage BIGINT NOT NULL DEFAULT 0,
{FILECACHE_COLUMNS},
  PRIMARY KEY (fileid),
  UNIQUE KEY fs_storage_path_hash (storage, path_hash),
  KEY fs_parent_name_hash (parent, name),
  KEY fs_storage_mimetype (storage, mimetype),
  KEY fs_storage_size (storage, size, fileid),
  KEY fs_mtime (mtime)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC;
CREATE TABLE oc_cards (
  id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, addressbookid BIGINT NOT NULL DEFAULT 0,
  carddata LONGBLOB, uri VARCHAR(255) DEFAULT NULL, lastmodified BIGINT UNSIGNED DEFAULT NULL,
  etag VARCHAR(32) DEFAULT NULL, size BIGINT UNSIGNED NOT NULL, uid VARCHAR(255) DEFAULT NULL,
  PRIMARY KEY (id), KEY cards_abiduri (addressbookid, uri)
) ENGINE=InnoDB ROW_FORMAT=DYNAMIC;
"""

_M_NAME = f"CONCAT('file-', s.seq, '-', LEFT(MD5(s.seq), 10), {_elt(EXTENSIONS, 's.seq', 'mysql')})"
MARIADB_FILES = f"""
INSERT INTO oc_filecache (fileid, storage, path, path_hash, parent, name, mimetype, mimepart,
  size, mtime, storage_mtime, encrypted, unencrypted_size, etag, permissions, checksum)
SELECT s.seq, 1 + s.seq % 3,
  CONCAT('files/', {_elt(FOLDERS, 's.seq', 'mysql')}, '/', LPAD(s.seq DIV 250, 7, '0'), '/', {_M_NAME}),
  MD5(CONCAT('path', s.seq)), GREATEST(1, s.seq DIV 250), {_M_NAME},
  1 + s.seq % 23, 1 + s.seq % 7, (s.seq * 104729) % 50000000,
  1600000000 + (s.seq * 7919) % 100000000, 1600000000 + (s.seq * 7907) % 100000000,
  0, 0, LEFT(SHA1(s.seq), 13), IF(s.seq % 5 = 0, 31, 27),
  IF(s.seq % 3 = 0, CONCAT('SHA1:', SHA1(CONCAT('c', s.seq))), '')
FROM seq_{{a}}_to_{{b}} s"""

_M_UID = ("INSERT(INSERT(INSERT(INSERT(MD5(CONCAT('uid', s.seq)), 9, 0, '-'), 14, 0, '-'), "
          "19, 0, '-'), 24, 0, '-')")
_M_PHOTO = "UNHEX(CONCAT(" + ", ".join(f"SHA2(CONCAT(s.seq, '-{k}'), 512)" for k in range(24)) + "))"
MARIADB_CARDS = f"""
INSERT INTO oc_cards (id, addressbookid, carddata, uri, lastmodified, etag, size, uid)
SELECT c.seq, 1 + c.seq % 20, c.data, CONCAT(c.uid, '.vcf'), 1600000000 + c.seq, MD5(c.data),
  LENGTH(c.data), c.uid
FROM (SELECT s.seq, {_M_UID} AS uid, CONCAT('BEGIN:VCARD\\r\\nVERSION:3.0\\r\\n',
  'PRODID:-//Sabre//Sabre VObject 4.5.4//EN\\r\\nUID:', {_M_UID}, '\\r\\nFN:Person ', s.seq,
  '\\r\\nN:', s.seq, ';Person;;;\\r\\nEMAIL;TYPE=HOME:person', s.seq, '@example.org\\r\\n',
  'TEL;TYPE=CELL:+49 30 ', s.seq, '\\r\\nPHOTO;ENCODING=b;TYPE=JPEG:', TO_BASE64({_M_PHOTO}),
  '\\r\\nEND:VCARD\\r\\n') AS data
  FROM seq_{{a}}_to_{{b}} s) c"""

# --- PostgreSQL ------------------------------------------------------------------------

PG_SCHEMA = f"""
CREATE TABLE oc_filecache (
  fileid BIGSERIAL PRIMARY KEY, storage BIGINT NOT NULL DEFAULT 0,
{FILECACHE_COLUMNS});
CREATE UNIQUE INDEX fs_storage_path_hash ON oc_filecache (storage, path_hash);
CREATE INDEX fs_parent_name_hash ON oc_filecache (parent, name);
CREATE INDEX fs_storage_mimetype ON oc_filecache (storage, mimetype);
CREATE INDEX fs_storage_size ON oc_filecache (storage, size, fileid);
CREATE INDEX fs_mtime ON oc_filecache (mtime);
CREATE TABLE oc_cards (
  id BIGSERIAL PRIMARY KEY, addressbookid BIGINT NOT NULL DEFAULT 0, carddata BYTEA,
  uri VARCHAR(255) DEFAULT NULL, lastmodified BIGINT DEFAULT NULL, etag VARCHAR(32) DEFAULT NULL,
  size BIGINT NOT NULL, uid VARCHAR(255) DEFAULT NULL);
CREATE INDEX cards_abiduri ON oc_cards (addressbookid, uri);
"""

_P_NAME = f"'file-' || s || '-' || left(md5(s::text), 10) || {_elt(EXTENSIONS, 's', 'pgsql')}"
PG_FILES = f"""
INSERT INTO oc_filecache (fileid, storage, path, path_hash, parent, name, mimetype, mimepart,
  size, mtime, storage_mtime, encrypted, unencrypted_size, etag, permissions, checksum)
SELECT s, 1 + s % 3,
  'files/' || {_elt(FOLDERS, 's', 'pgsql')} || '/' || lpad((s / 250)::text, 7, '0') || '/' || {_P_NAME},
  md5('path' || s), greatest(1, s / 250), {_P_NAME},
  1 + s % 23, 1 + s % 7, (s * 104729) % 50000000,
  1600000000 + (s * 7919) % 100000000, 1600000000 + (s * 7907) % 100000000,
  0, 0, left(md5('etag' || s), 13), CASE WHEN s % 5 = 0 THEN 31 ELSE 27 END,
  CASE WHEN s % 3 = 0 THEN 'SHA1:' || md5('c' || s) || left(md5('d' || s), 8) ELSE '' END
FROM generate_series({{a}}::bigint, {{b}}::bigint) s"""

PG_CARDS = r"""
INSERT INTO oc_cards (id, addressbookid, carddata, uri, lastmodified, etag, size, uid)
SELECT s, 1 + s % 20, convert_to(c.data, 'UTF8'), c.uid || '.vcf', 1600000000 + s, md5(c.data),
  octet_length(c.data), c.uid
FROM generate_series({a}::bigint, {b}::bigint) s
CROSS JOIN LATERAL (SELECT md5('uid' || s) AS uid) u
CROSS JOIN LATERAL (SELECT u.uid, 'BEGIN:VCARD' || E'\r\n' || 'VERSION:3.0' || E'\r\n'
  || 'PRODID:-//Sabre//Sabre VObject 4.5.4//EN' || E'\r\n' || 'UID:' || u.uid || E'\r\n'
  || 'FN:Person ' || s || E'\r\n' || 'N:' || s || ';Person;;;' || E'\r\n'
  || 'EMAIL;TYPE=HOME:person' || s || '@example.org' || E'\r\n'
  || 'TEL;TYPE=CELL:+49 30 ' || s || E'\r\n' || 'PHOTO;ENCODING=b;TYPE=JPEG:'
  || encode((SELECT string_agg(sha512(convert_to(s || '-' || k, 'UTF8')), ''::bytea)
              FROM generate_series(1, 24) k), 'base64')
  || E'\r\n' || 'END:VCARD' || E'\r\n' AS data) c"""
