"""Real dumps and restores on every engine: the restored data equals the
source, and the stored stream also loads by hand with the stock client."""

from __future__ import annotations

import os
import re
import subprocess

from ..helpers import BARE_PATH, dbpipe, last_line


def content(db) -> bytes:
    """What a restore must reproduce: the logical content, without names that
    legitimately differ (the mysql dump header names the database)."""
    data = db.content() if db.kind == "sqlite" else db.fingerprint()
    return re.sub(rb"^-- (Host: |Dumping (events|routines) for database ).*$", b"", data,
                  flags=re.MULTILINE)


def dump_to(db, path, env):
    with open(path, "wb") as out:
        result = dbpipe("dbpipe-dump", *db.args(), stdout=out, env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_dump_change_restore_gives_back_the_dumped_state(database, env, tmp_path, private_tmp, syslog):
    stream = tmp_path / "stream.sql"
    before = content(database)
    dump_to(database, stream, env)
    database.change()
    assert content(database) != before

    result = dbpipe("dbpipe-restore", *database.args(), stdin=stream, env=env)

    assert result.returncode == 0, result.stderr
    assert content(database) == before
    assert os.listdir(private_tmp) == []
    assert "restore complete" in syslog.text()


def test_stream_loads_by_hand_with_the_stock_client(database, env, tmp_path):
    stream = tmp_path / "stream.sql"
    dump_to(database, stream, env)
    before = content(database)
    if database.kind == "sqlite":
        copy = tmp_path / "by-hand.db"
        with open(stream, "rb") as handle:
            subprocess.run(["sqlite3", str(copy)], stdin=handle, check=True, env={"PATH": BARE_PATH})
        from testkit.dbs import SqliteDatabase
        assert content(SqliteDatabase(str(copy))) == before
        return
    server = database.server
    name = database.name + "_byhand"
    server.create_database(name, **({"owner": database.owner} if database.kind == "pgsql" else {}))
    if database.kind == "mysql":
        argv = ["mariadb", *server._mysql_conn(), "-u", server.admin_user, name]
    else:
        argv = [server.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", server.socket or server.host,
                "-p", str(server.port), "-U", server.admin_user, "-d", name, "-f", str(stream)]
    with open(stream, "rb") as handle:
        subprocess.run(argv, stdin=handle, check=True, env={"PATH": BARE_PATH})
    copy = type(database)(server, name) if database.kind == "mysql" else type(database)(server, name, database.owner)
    assert content(copy) == before


def test_summary_line_names_size_and_checksum(database, env, tmp_path, syslog):
    result = dump_to(database, tmp_path / "s.sql", env)
    assert re.search(r"dump complete: .* sha256 [0-9a-f]{64}$", last_line(result))
    assert "dump complete" in syslog.text()
