"""Test databases with a realistic, Nextcloud-like schema, one class per engine,
and a fingerprint that shows whether a database changed at all."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
from contextlib import closing as _closing  # a sqlite3 connection's `with` only commits

from .servers import BARE_PATH
from .servers import Server

EMOJI_NAMES = ["Ordner 📁", "Zürich Überblick", "𝄞 music", "日本語ファイル", "plain.txt", "a'b\"c`d;$(x)"]
ALL_BYTES = bytes(range(256))
LARGE_ROW = (b"large row " * 100_000)[:1_000_000]


def _hex(data: bytes) -> str:
    return data.hex()


def _sql_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _pg_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def filecache_rows(count: int = 300):
    for i in range(count):
        name = f"{EMOJI_NAMES[i % len(EMOJI_NAMES)]} {i}"
        checksum = None if i % 7 == 0 else f"SHA1:{i:040x}"
        yield i + 1, f"files/{name}", hashlib.md5(name.encode()).hexdigest(), name, i * 517 % 100_000, checksum


class TestDatabase:
    """One database on one engine: CLI args for dbpipe, populate, change, fingerprint."""

    kind = ""

    def args(self, **kw) -> list[str]:
        raise NotImplementedError

    def populate(self) -> None:
        raise NotImplementedError

    def change(self) -> None:
        """Modify the data so a restore has something to undo."""
        raise NotImplementedError

    def fingerprint(self) -> bytes:
        """Everything about the database, as bytes; equal means unchanged."""
        raise NotImplementedError

    def count(self, table: str) -> int:
        raise NotImplementedError


class ServerDatabase(TestDatabase):
    """A database on a private server; user_args, once set, reach it as its own user."""

    CHANGE = ("DELETE FROM oc_shares WHERE id = 2; UPDATE oc_filecache SET size = size + 1;"
              "INSERT INTO oc_blobs VALUES (9, 'new', 'added after the backup');"
              "CREATE TABLE oc_added_later (a INT);")

    def __init__(self, server: Server, name: str, owner: str | None = None):
        self.server, self.name, self.owner = server, name, owner
        self.user_args = None

    def args(self, **kw):
        return self.user_args or self.server.args(self.name, **kw)

    def sql(self, statement: str) -> str:
        return self.server.sql(statement, database=self.name)

    def change(self) -> None:
        self.sql(self.CHANGE)


class MysqlDatabase(ServerDatabase):
    kind = "mysql"

    def populate(self) -> None:
        self.server.create_database(self.name)
        statements = ["""
        CREATE TABLE oc_filecache (
          fileid BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, storage BIGINT NOT NULL DEFAULT 1,
          path VARCHAR(4000) COLLATE utf8mb4_bin, path_hash VARCHAR(32) NOT NULL,
          name VARCHAR(250) COLLATE utf8mb4_bin, size BIGINT NOT NULL DEFAULT 0,
          checksum VARCHAR(255) NULL, etag VARCHAR(40) NULL,
          KEY fs_storage_path_hash (storage, path_hash), KEY fs_size (size)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
            """CREATE TABLE oc_blobs (id INT PRIMARY KEY, data LONGBLOB NULL, note MEDIUMTEXT NULL)
               ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
            """CREATE TABLE oc_shares (id INT PRIMARY KEY, fileid BIGINT NOT NULL,
               CONSTRAINT fk_share_file FOREIGN KEY (fileid) REFERENCES oc_filecache (fileid))
               ENGINE=InnoDB""",
            "CREATE VIEW oc_big_files AS SELECT fileid, name FROM oc_filecache WHERE size > 50000",
            "CREATE TRIGGER oc_filecache_etag BEFORE INSERT ON oc_filecache FOR EACH ROW "
            "SET NEW.etag = COALESCE(NEW.etag, MD5(NEW.path))"]
        for fileid, path, path_hash, name, size, checksum in filecache_rows():
            checksum_sql = "NULL" if checksum is None else _sql_str(checksum)
            statements.append(
                f"INSERT INTO oc_filecache (fileid, path, path_hash, name, size, checksum) VALUES "
                f"({fileid}, {_sql_str(path)}, '{path_hash}', {_sql_str(name)}, {size}, {checksum_sql})")
        statements += [
            f"INSERT INTO oc_blobs VALUES (1, UNHEX('{_hex(ALL_BYTES * 4)}'), 'all byte values')",
            "INSERT INTO oc_blobs VALUES (2, NULL, NULL)",
            f"INSERT INTO oc_blobs VALUES (3, UNHEX('{_hex(LARGE_ROW)}'), REPEAT('x', 70000))",
            "INSERT INTO oc_shares VALUES (1, 1), (2, 5)"]
        self.sql(";\n".join(statements) + ";")

    def fingerprint(self) -> bytes:
        s = self.server
        argv = ["mariadb-dump", *s._mysql_conn(), "-u", s.admin_user, "--skip-dump-date",
                "--single-transaction", "--routines", "--triggers", "--events", "--hex-blob", self.name]
        return subprocess.run(argv, check=True, capture_output=True,
                              env={"PATH": BARE_PATH, **s.password_env()}).stdout

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT COUNT(*) FROM `{table}`"))


class PgsqlDatabase(ServerDatabase):
    kind = "pgsql"
    CHANGE = ServerDatabase.CHANGE + "SELECT nextval('oc_custom_seq');"

    def populate(self) -> None:
        self.server.create_database(self.name, owner=self.owner)
        statements = ["""
        CREATE TABLE oc_filecache (
          fileid BIGSERIAL PRIMARY KEY, storage BIGINT NOT NULL DEFAULT 1, path VARCHAR(4000),
          path_hash VARCHAR(32) NOT NULL, name VARCHAR(250), size BIGINT NOT NULL DEFAULT 0,
          checksum VARCHAR(255) NULL, etag VARCHAR(40) NULL)""",
            "CREATE INDEX fs_storage_path_hash ON oc_filecache (storage, path_hash)",
            "CREATE TABLE oc_blobs (id INT PRIMARY KEY, data BYTEA NULL, note TEXT NULL)",
            "CREATE TABLE oc_shares (id INT PRIMARY KEY, fileid BIGINT NOT NULL REFERENCES oc_filecache (fileid))",
            "CREATE SEQUENCE oc_custom_seq START 1000",
            "SELECT nextval('oc_custom_seq')",
            "CREATE VIEW oc_big_files AS SELECT fileid, name FROM oc_filecache WHERE size > 50000"]
        for fileid, path, path_hash, name, size, checksum in filecache_rows():
            checksum_sql = "NULL" if checksum is None else _pg_str(checksum)
            statements.append(
                f"INSERT INTO oc_filecache (fileid, path, path_hash, name, size, checksum) VALUES "
                f"({fileid}, {_pg_str(path)}, '{path_hash}', {_pg_str(name)}, {size}, {checksum_sql})")
        statements += [
            "SELECT setval('oc_filecache_fileid_seq', 300)",
            f"INSERT INTO oc_blobs VALUES (1, '\\x{_hex(ALL_BYTES * 4)}', 'all byte values')",
            "INSERT INTO oc_blobs VALUES (2, NULL, NULL)",
            f"INSERT INTO oc_blobs VALUES (3, '\\x{_hex(LARGE_ROW)}', repeat('x', 70000))",
            "INSERT INTO oc_shares VALUES (1, 1), (2, 5)"]
        self.sql(";\n".join(([f'SET ROLE "{self.owner}"'] if self.owner else []) + statements) + ";")

    def fingerprint(self) -> bytes:
        s = self.server
        argv = [s.tool("pg_dump"), "-h", s.socket or s.host, "-p", str(s.port), "-U", s.admin_user,
                "--restrict-key=dbpipetest", self.name]
        return subprocess.run(argv, check=True, capture_output=True,
                              env={"PATH": BARE_PATH, **s.password_env()}).stdout

    def count(self, table: str) -> int:
        return int(self.sql(f'SELECT count(*) FROM "{table}"'))


class SqliteDatabase(TestDatabase):
    kind = "sqlite"

    def __init__(self, path: str):
        self.path = path
        self.name = path

    def args(self, **kw):
        return ["--type", "sqlite", "--database", self.path]

    def populate(self) -> None:
        with _closing(sqlite3.connect(self.path)) as conn, conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript("""
              CREATE TABLE oc_filecache (fileid INTEGER PRIMARY KEY AUTOINCREMENT, storage INTEGER NOT NULL DEFAULT 1,
                path TEXT, path_hash TEXT NOT NULL, name TEXT, size INTEGER NOT NULL DEFAULT 0,
                checksum TEXT NULL, etag TEXT NULL);
              CREATE INDEX fs_storage_path_hash ON oc_filecache (storage, path_hash);
              CREATE TABLE oc_blobs (id INTEGER PRIMARY KEY, data BLOB NULL, note TEXT NULL);
              CREATE TABLE oc_shares (id INTEGER PRIMARY KEY, fileid INTEGER NOT NULL REFERENCES oc_filecache (fileid));
              CREATE VIEW oc_big_files AS SELECT fileid, name FROM oc_filecache WHERE size > 50000;
              CREATE TRIGGER oc_filecache_etag AFTER INSERT ON oc_filecache WHEN NEW.etag IS NULL
                BEGIN UPDATE oc_filecache SET etag = hex(NEW.fileid) WHERE fileid = NEW.fileid; END;
            """)
            conn.executemany("INSERT INTO oc_filecache (fileid, path, path_hash, name, size, checksum) "
                             "VALUES (?, ?, ?, ?, ?, ?)", list(filecache_rows()))
            conn.executemany("INSERT INTO oc_blobs VALUES (?, ?, ?)",
                             [(1, ALL_BYTES * 4, "all byte values"), (2, None, None),
                              (3, LARGE_ROW, "x" * 70000), (4, "text with\nnewline\r\nand crlf", "multi\nline")])
            conn.executemany("INSERT INTO oc_shares VALUES (?, ?)", [(1, 1), (2, 5)])

    def change(self) -> None:
        with _closing(sqlite3.connect(self.path)) as conn, conn:
            conn.executescript("DELETE FROM oc_shares WHERE id = 2; UPDATE oc_filecache SET size = size + 1;"
                               "INSERT INTO oc_blobs VALUES (9, 'new', 'added after the backup');"
                               "CREATE TABLE oc_added_later (a INT);")

    def fingerprint(self) -> bytes:
        """The file's bytes plus its directory listing (no stray files either)."""
        directory = os.path.dirname(self.path)
        listing = "\n".join(sorted(os.listdir(directory))).encode()
        with open(self.path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest().encode() + b"\n" + listing

    def content(self) -> bytes:
        """The logical content (what a successful restore must reproduce)."""
        return subprocess.run(["sqlite3", "-readonly", self.path, ".dump"], check=True,
                              capture_output=True).stdout

    def count(self, table: str) -> int:
        with _closing(sqlite3.connect(self.path)) as conn, conn:
            return conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
