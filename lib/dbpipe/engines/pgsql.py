"""PostgreSQL: plain-format pg_dump; restore in one transaction that first
removes everything in the database, then loads the dump.

psql gets our own BEGIN, then the payload, and COMMIT only after the trailer
has been verified.  If anything fails - the stream, the SQL, this process -
psql ends without COMMIT and the server rolls the whole restore back.  Works
as the database owner; no superuser needed.
"""

from __future__ import annotations

import contextlib
import pwd
import re
import secrets

from ..credentials import pgpass_environment
from ..errors import (CantCreateError, DataError, DbpipeError, NoInputError, PermissionDenied,
                      UnavailableError)
from ..log import log
from ..process import Child, RunAs, find_tool, run
from ..stream import Trailer
from ..target import Target
from ..transfer import Pump
from .base import (DumpCommand, Engine, LiveChange, RestoreOptions, RestoreResult, check_engine,
                   feed_child, finish_load, loader, spooled)

VERSION_MISMATCH = re.compile(r"server version: ([0-9.]+\S*); (\w+) version: ([0-9.]+\S*)")
COMPLETE_MARKERS = (b"-- PostgreSQL database dump complete", b"-- PostgreSQL database cluster dump complete")
MAINTENANCE_DATABASES = ("postgres", "template1")
CONTROL_TIMEOUT = 300
HARMLESS_CLUSTER_ERRORS = re.compile(r'role ".*" already exists|current user cannot be dropped')

# Runs first inside the restore transaction: empty the database as its owner.
# Schemas we own are dropped whole (public is recreated with its owner, ACL and
# comment); in schemas we do not own (public on PostgreSQL <= 14) we drop what
# we own.  Large objects we own go too: pg_dump recreates them with fixed OIDs.
PRELUDE = r"""
BEGIN;
SET LOCAL lock_timeout = '120s';
DO $dbpipe$
DECLARE
  s record;
  r record;
  pub_owner regrole;
  pub_acl aclitem[];
  pub_comment text;
BEGIN
  PERFORM pg_catalog.lo_unlink(l.oid) FROM pg_catalog.pg_largeobject_metadata l
   WHERE pg_catalog.pg_has_role(l.lomowner, 'USAGE');
  SELECT n.nspowner::regrole, n.nspacl, pg_catalog.obj_description(n.oid, 'pg_namespace')
    INTO pub_owner, pub_acl, pub_comment
    FROM pg_catalog.pg_namespace n WHERE n.nspname = 'public';
  FOR s IN SELECT n.oid, n.nspname, n.nspowner FROM pg_catalog.pg_namespace n
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname !~ '^pg_(toast|temp_)'
              AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                               WHERE d.classid = 'pg_catalog.pg_namespace'::regclass
                                 AND d.objid = n.oid AND d.deptype = 'e')
  LOOP
    IF pg_catalog.pg_has_role(s.nspowner, 'USAGE') THEN
      EXECUTE format('DROP SCHEMA %I CASCADE', s.nspname);
      CONTINUE;
    END IF;
    FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_catalog.pg_class c
              WHERE c.relnamespace = s.oid AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
                AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_class'::regclass
                                   AND d.objid = c.oid AND d.deptype IN ('e', 'a', 'i'))
    LOOP
      EXECUTE format('DROP %s IF EXISTS %s CASCADE',
        CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                       WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
        r.name);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS name, p.prokind FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = s.oid AND pg_catalog.pg_has_role(p.proowner, 'USAGE')
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_proc'::regclass
                                   AND d.objid = p.oid AND d.deptype = 'e')
    LOOP
      EXECUTE format('DROP %s IF EXISTS %s CASCADE',
        CASE r.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
        r.name);
    END LOOP;
    FOR r IN SELECT t.oid::regtype AS name, t.typtype FROM pg_catalog.pg_type t
              WHERE t.typnamespace = s.oid AND t.typtype IN ('c', 'd', 'e', 'r')
                AND pg_catalog.pg_has_role(t.typowner, 'USAGE')
                AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_catalog.pg_class c
                                         WHERE c.oid = t.typrelid) = 'c')
                AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                 WHERE d.classid = 'pg_catalog.pg_type'::regclass
                                   AND d.objid = t.oid AND d.deptype = 'e')
    LOOP
      EXECUTE format('DROP %s IF EXISTS %s CASCADE',
        CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.name);
    END LOOP;
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
END
$dbpipe$;
""".encode()
COMMIT = b"\nCOMMIT;\n"
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
    def dump_command(self, target: Target, scope: str):
        with pgpass_environment(target.password) as env:
            if scope == "all":
                # --clean: a cluster restore drops and recreates each database (the errors
                # this causes for existing roles are the HARMLESS_CLUSTER_ERRORS)
                argv = [_tool("pg_dumpall"), *connection_args(target), "--clean", "--if-exists"]
            else:
                argv = [_tool("pg_dump"), *connection_args(target), "--format=plain",
                        f"--dbname={conninfo(target.database)}"]
            yield DumpCommand(argv, env_extra=env)

    def dump_complete(self, tail: bytes) -> bool:
        return any(marker in tail for marker in COMPLETE_MARKERS)

    def snapshot_fixed(self, output: bytes) -> bool:
        """pg_dump reads the whole catalog inside its REPEATABLE READ transaction
        before it writes a byte of a plain dump: any output proves the snapshot."""
        return bool(output)

    def dump_failure(self, child: Child) -> DbpipeError:
        """pg_dump refuses a server newer than itself; say which client to install."""
        found = VERSION_MISMATCH.search(child.stderr_text())
        if found is None:
            return super().dump_failure(child)
        server, tool, version = found.groups()
        major = server.split(".")[0]
        return UnavailableError(f"{child.failure()} (server {server}, {tool} {version}): install "
                                f"postgresql-client-{major}; Debian's pg_wrapper then runs its {tool}")

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
            result = run(argv, input=sql, env_extra=env, timeout=CONTROL_TIMEOUT, run_as=client_account(target))
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

    def _ensure_database(self, target: Target) -> None:
        try:
            self.query(target, "SELECT 1", target.database)
            return
        except NoInputError:
            pass
        log.info("database %r does not exist; creating it", target.database)
        try:
            self._maintenance_query(target, 'CREATE DATABASE :"name"', name=target.database)
        except PermissionDenied as exc:
            raise CantCreateError(f"cannot create database {target.database!r}: {exc}") from None

    # --- restore ----------------------------------------------------------
    def restore(self, target: Target, pump: Pump, options: RestoreOptions) -> RestoreResult:
        check_engine(self.name, pump)
        self._ensure_database(target)
        self._load(target, pump, options.live)
        return RestoreResult("one transaction (drop everything, load, commit after verification)")

    def _load(self, target: Target, pump: Pump, live: LiveChange | None = None) -> Trailer:
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

            pump.send(sink, PRELUDE)
            trailer = pump.run(filtered)
            pump.send(sink, lobs.flush())
            if pump.sink_error is None:
                live.begin()
            pump.send(sink, COMMIT)
            try:
                finish_load(child, pump)
            except DataError:
                if child.proc.returncode == PSQL_SCRIPT_ERROR:
                    live.reverted()
                raise
        return trailer

    def load_all(self, target: Target, pump: Pump) -> Trailer:
        """pg_dumpall output: verified first, then loaded; it cannot be one transaction."""
        check_engine(self.name, pump)
        with spooled(pump) as (spool, trailer):
            argv = [_tool("psql"), "-X", "-q", *connection_args(target),
                    f"--dbname={conninfo(target.database or 'postgres')}", f"--file={spool}"]
            with pgpass_environment(target.password) as env:
                result = run(argv, env_extra=env)
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
                self._maintenance_query(target, 'DROP DATABASE IF EXISTS :"name"', name=name)

    def load_scratch(self, scratch: Target, pump: Pump) -> Trailer:
        check_engine(self.name, pump)
        return self._load(scratch, pump)

    def table_rows(self, target: Target) -> dict[str, int]:
        sql = r"""
        SELECT format('%s.%s', n.nspname, c.relname),
               (xpath('/row/c/text()', query_to_xml(
                   format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),
                   false, true, '')))[1]::text
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_toast'
         ORDER BY 1"""
        rows = self.query(target, sql, target.database)
        return {name: int(count) for name, count in (line.split("|") for line in rows.splitlines() if line)}
