"""The commands as users and Bareos call them: --help/--version, usage errors,
dbpipe-verify's verdicts and --test-restore, --to-file, the Bareos restore
location (where/replace), job tagging, and the restore options (replace mode,
--keep-old/--drop-old, another database name)."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest

from ..helpers import BIN, bareos_argv, bareos_env, dbpipe, last_line
from testkit.prerequisites import not_applicable
from .kit import (LeftoverWatch, assert_result, dump_bytes, limited_mysql, new_database, payload,
                  prepared, synthetic_stream, wait_for)

__all__ = ["prepared"]

COMMANDS = sorted(path.name for path in BIN.iterdir() if path.is_file() and os.access(path, os.X_OK))


def mysql_content(db) -> bytes:
    """A fingerprint without the lines that name the database."""
    return re.sub(rb"^-- (Host: |Dumping (events|routines) for database ).*$", b"", db.fingerprint(),
                  flags=re.MULTILINE)


# --- every command ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", COMMANDS)
def test_help_version_and_usage_errors(command):
    shown = dbpipe(command, "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.decode().startswith(f"usage: {command}")
    version = dbpipe(command, "--version")
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(rf"{re.escape(command)} \d+\.\d+\S*\n", version.stdout.decode())
    bad = dbpipe(command, "--no-such-option")
    assert bad.returncode == 64, bad.stderr
    assert re.fullmatch(rf"{re.escape(command)}: .+ \(see --help\)", last_line(bad))
    assert "Traceback" not in bad.stderr.decode()


@pytest.mark.parametrize("command, args, message", [
    ("dbpipe-dump", [], "no database type given"),
    ("dbpipe-dump", ["--type", "mysql"], "no database given"),
    ("dbpipe-dump", ["--type", "sqlite", "--database", "/x.db", "--all-databases"], "does not apply to sqlite"),
    ("dbpipe-dump", ["--type", "db2", "--database", "x"], "invalid choice"),
    ("dbpipe-dump", ["--type", "mysql", "--database", "x", "--port", "0"], None),
    ("dbpipe-restore", ["--type", "sqlite"], "no database given"),
    ("dbpipe-restore", ["--type", "mysql", "--mode", "fast"], "invalid choice"),
    ("dbpipe-restore", ["--keep-old", "--drop-old"], "not allowed with"),
    ("dbpipe-verify", ["a", "b"], "unrecognized arguments"),
    ("dbpipe-dump", ["--profile", "../etc/x"], "bad profile name"),
])
def test_usage_errors(command, args, message, syslog):
    result = dbpipe(command, *args, env=bareos_env(DBPIPE_SYSLOG_SOCKET=syslog.path))
    if message is None:  # a bad port is a configuration error
        assert result.returncode == 78, result.stderr
        return
    assert_result(result, syslog, command, 64, re.escape(message))


# --- dbpipe-verify ----------------------------------------------------------------------------

def test_verify_verdicts_and_exit_codes(prepared, tmp_path, env, syslog):
    good = prepared.stream_file()
    result = dbpipe("dbpipe-verify", good, env=env)
    assert result.returncode == 0, result.stderr
    report = dict(line.split(":", 1) for line in result.stdout.decode().splitlines())
    assert report["engine"].strip() == prepared.kind and report["verdict"].strip() == "intact"
    assert report["database"].strip() == prepared.db.name
    assert re.fullmatch(r"[0-9a-f]{64}", report["sha256"].strip())
    assert int(report["tables"]) >= 3
    assert dbpipe("dbpipe-verify", stdin=good, env=env).returncode == 0       # stdin works too

    damaged = prepared.stream_file("damaged.sql", prepared.stream[:-30])
    result = dbpipe("dbpipe-verify", damaged, env=env)
    assert_result(result, syslog, "dbpipe-verify", 65, "trailer is cut off")
    assert b"verdict:   DAMAGED" in result.stdout

    result = dbpipe("dbpipe-verify", tmp_path / "missing.sql", env=env)
    assert_result(result, syslog, "dbpipe-verify", 66, "does not exist")
    result = dbpipe("dbpipe-verify", stdin=None, env=env)
    assert_result(result, syslog, "dbpipe-verify", 66, "empty input")


def test_verify_remove_takes_a_drills_copy_away_whatever_the_verdict(prepared, env, syslog):
    good = prepared.stream_file("good.sql")
    result = dbpipe("dbpipe-verify", "--remove", good, env=env)
    assert result.returncode == 0, result.stderr
    assert b"verdict:   intact" in result.stdout and not good.exists()

    damaged = prepared.stream_file("damaged.sql", prepared.stream[:-30])
    result = dbpipe("dbpipe-verify", "--remove", damaged, env=env)
    assert_result(result, syslog, "dbpipe-verify", 65, "trailer is cut off")
    assert b"verdict:   DAMAGED" in result.stdout and not damaged.exists()
    result = dbpipe("dbpipe-verify", "--remove", damaged, env=env)
    assert_result(result, syslog, "dbpipe-verify", 66, "does not exist")


def scratch_args(prepared) -> list[str]:
    """Where --test-restore may create its throwaway database (as admin)."""
    if prepared.kind == "sqlite":
        return []
    return prepared.db.server.args()


def scratch_leftovers(prepared) -> list[str]:
    if prepared.kind == "mysql":
        return [n for n in prepared.db.server.sql("SHOW DATABASES").split() if n.startswith("dbpipe_verify_")]
    if prepared.kind == "pgsql":
        return prepared.db.server.sql("SELECT datname FROM pg_database WHERE datname LIKE 'dbpipe_verify_%'").split()
    return []


def test_verify_test_restore(prepared, env, private_tmp):
    with LeftoverWatch():
        result = dbpipe("dbpipe-verify", "--test-restore", prepared.stream_file(), *scratch_args(prepared),
                        env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "verdict:   intact, test restore passed" in out
    restored = re.search(r"^restored:\s+(\d+) tables: (.*)$", out, re.MULTILINE)
    counts = dict(item.split("=") for item in restored.group(2).split(", "))
    assert {name.split(".")[-1]: int(n) for name, n in counts.items()}["oc_filecache"] == 300
    assert scratch_leftovers(prepared) == []
    assert os.listdir(private_tmp) == []
    assert prepared.unchanged()


def test_verify_test_restore_of_an_unloadable_stream(prepared, env, syslog, private_tmp):
    bad = synthetic_stream(prepared.kind, "x", payload(prepared.stream) + b"THIS IS NOT SQL;\n")
    with LeftoverWatch():
        result = dbpipe("dbpipe-verify", "--test-restore", *scratch_args(prepared), stdin=bad, env=env)
    assert_result(result, syslog, "dbpipe-verify", 65, "could not be loaded")
    assert scratch_leftovers(prepared) == []
    assert os.listdir(private_tmp) == []


# --- --to-file and the Bareos restore location ------------------------------------------------

def test_to_file_is_private_atomic_and_never_overwrites_by_accident(prepared, tmp_path, env, syslog,
                                                                   private_tmp):
    out = tmp_path / "out" / "nextcloud.sql"
    result = dbpipe("dbpipe-restore", "--to-file", out, stdin=prepared.stream, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert out.read_bytes() == prepared.stream
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert prepared.unchanged()

    out.write_bytes(b"precious")
    result = dbpipe("dbpipe-restore", "--to-file", out, stdin=prepared.stream, env=env)
    assert_result(result, syslog, "dbpipe-restore", 73, "exists; use --force")
    assert out.read_bytes() == b"precious"
    result = dbpipe("dbpipe-restore", "--to-file", out, "--force", stdin=prepared.stream, env=env)
    assert result.returncode == 0 and out.read_bytes() == prepared.stream

    damaged = tmp_path / "out" / "damaged.sql"
    result = dbpipe("dbpipe-restore", "--to-file", damaged, stdin=prepared.stream[:-1], env=env)
    assert_result(result, syslog, "dbpipe-restore", 65, "cut off")
    assert sorted(os.listdir(out.parent)) == ["nextcloud.sql"]   # no half-written or temp file
    assert os.listdir(private_tmp) == []


def writer(plugin_command: str, env: dict, stdin: bytes):
    """Run a bpipe writer string exactly as Bareos would: split on spaces, no shell."""
    argv = bareos_argv(plugin_command)
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], input=stdin, capture_output=True, cwd="/",
                          env=env, timeout=300)


def target_string(prepared) -> str:
    """The target options as a plugin string (no spaces in these test paths)."""
    return " ".join(str(a) for a in prepared.args())


def test_bareos_where_writes_a_file_and_leaves_the_live_database_alone(prepared, tmp_path, env):
    where = tmp_path / "bareos-restores"
    command = f"dbpipe-restore {target_string(prepared)} --where {where} --replace a"
    result = writer(command, env, prepared.stream)
    assert result.returncode == 0, result.stderr
    written = where / "dbpipe" / f"{prepared.kind}-{os.path.basename(prepared.db.name)}.sql"
    assert written.read_bytes() == prepared.stream
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert prepared.unchanged()

    # Bareos 26+: $BareosWhere, %w passed literally; the plugin's file= names the file
    env26 = {**env, "BareosWhere": str(where), "BareosReplace": "n", "BareosJobType": "R"}
    command = f"dbpipe-restore {target_string(prepared)} --where %w --pseudo-file /@dbpipe/nc.sql"
    result = writer(command, env26, prepared.stream)
    assert result.returncode == 0, result.stderr
    assert (where / "@dbpipe" / "nc.sql").read_bytes() == prepared.stream
    (where / "@dbpipe" / "nc.sql").write_bytes(b"an earlier restore")
    result = writer(command, env26, prepared.stream)      # replace=never: keep the existing file
    assert result.returncode == 0, result.stderr          # as Bareos skips an existing file
    assert b"replace=never: kept the existing" in result.stderr
    assert (where / "@dbpipe" / "nc.sql").read_bytes() == b"an earlier restore"
    assert prepared.unchanged()


@pytest.mark.parametrize("where", ["/", "%w"])
def test_bareos_where_root_or_unknown_restores_the_live_database(where, tmp_path, env, server_pool):
    db = new_database("sqlite", server_pool, tmp_path)
    stream = dump_bytes(db, env)
    before = db.content()
    db.change()
    result = writer(f"dbpipe-restore --type sqlite --database {db.path} --where {where} --replace %r",
                    env, stream)
    assert result.returncode == 0, result.stderr
    assert db.content() == before


def test_bareos_job_is_named_in_every_log_line_and_in_the_trailer(prepared, env, syslog):
    job = {"BareosJobId": "4711", "BareosJobLevel": "F", "BareosJobType": "B", "BareosClientName": "fd"}
    result = dbpipe("dbpipe-dump", *prepared.args(), env={**env, **job})
    assert result.returncode == 0, result.stderr
    assert b"-- bareos-job-id: 4711\n" in result.stdout[-1000:]
    wait_for(lambda: "dump complete" in syslog.text(), "the summary in syslog")
    lines = [line for line in syslog.text().splitlines() if "dbpipe-dump[" in line]
    assert lines and all("[Bareos job 4711, level F, type B] " in line for line in lines)
    restore_job = {"BareosJobId": "4712", "BareosJobLevel": " ", "BareosJobType": "R"}
    result = dbpipe("dbpipe-restore", "--to-file", prepared.directory / "tagged.sql",
                    stdin=result.stdout, env={**env, **restore_job})
    assert result.returncode == 0, result.stderr
    wait_for(lambda: "[Bareos job 4712, type R] restore complete" in syslog.text(), "the restore summary")


# --- restore options -----------------------------------------------------------------------------

@pytest.fixture
def fresh(request, prepared, server_pool, tmp_path):
    """A database of prepared's engine that this test may change."""
    return new_database(prepared.kind_spec, server_pool, tmp_path)


def test_keep_old_and_drop_old(prepared, fresh, env, private_tmp):
    if prepared.kind == "pgsql":
        not_applicable("pgsql restores in one transaction and keeps nothing aside")
    stream = dump_bytes(fresh, env)
    fresh.change()
    result = dbpipe("dbpipe-restore", *fresh.args(), stdin=stream, env=env)   # --keep-old is the default
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    if prepared.kind == "mysql":
        kept = [n for n in fresh.server.sql("SHOW DATABASES").split() if n.startswith(fresh.name + "__dbpipe_old_")]
        assert len(kept) == 1
        assert "oc_added_later" in fresh.server.sql("SHOW TABLES", database=kept[0]).split()
        assert f"previous tables kept in database {kept[0]}" in result.stderr.decode()
    else:
        directory = os.path.dirname(fresh.path)
        kept = [n for n in os.listdir(directory) if ".dbpipe-old-" in n]
        assert len(kept) == 1
        from testkit.dbs import SqliteDatabase
        assert SqliteDatabase(os.path.join(directory, kept[0])).count("oc_blobs") == 5   # with row 9
        os.unlink(os.path.join(directory, kept[0]))
    assert "oc_added_later" not in (fresh.content() if fresh.kind == "sqlite" else fresh.fingerprint()).decode(
        "utf-8", "replace")

    fresh.change()
    before_kept = set(kept)
    result = dbpipe("dbpipe-restore", *fresh.args(), "--drop-old", stdin=stream, env=env)
    assert result.returncode == 0, result.stderr
    if prepared.kind == "mysql":
        now = {n for n in fresh.server.sql("SHOW DATABASES").split() if "__dbpipe_" in n and n.startswith(fresh.name)}
        assert now == before_kept
    else:
        assert [n for n in os.listdir(os.path.dirname(fresh.path)) if n != "owncloud.db"] == []
    assert os.listdir(private_tmp) == []


def test_restore_under_another_database_name(prepared, env, tmp_path):
    if prepared.kind == "sqlite":
        other = tmp_path / "elsewhere" / "copy.db"
        other.parent.mkdir()
        args = ["--type", "sqlite", "--database", other]
    else:
        other = f"{prepared.db.name}_copy"
        args = list(prepared.args())
        args[args.index("--database") + 1] = other
        if prepared.kind == "pgsql":   # the owner may not create databases: the admin gives it one
            prepared.db.server.create_database(other, owner=prepared.db.owner)
    result = dbpipe("dbpipe-restore", *args, stdin=prepared.stream, env=env)
    assert result.returncode == 0, result.stderr
    if prepared.kind == "sqlite":
        from testkit.dbs import SqliteDatabase
        assert SqliteDatabase(str(other)).content() == prepared.db.content()
    elif prepared.kind == "mysql":
        copy = type(prepared.db)(prepared.db.server, other)
        assert mysql_content(copy) == mysql_content(prepared.db)
    else:
        copy = type(prepared.db)(prepared.db.server, other, prepared.db.owner)
        assert copy.fingerprint() == prepared.db.fingerprint()
    assert prepared.unchanged()


def test_pgsql_admin_restore_creates_a_missing_database(prepared, env):
    if prepared.kind != "pgsql":
        not_applicable("pgsql only")
    other = f"{prepared.db.name}_new"
    result = dbpipe("dbpipe-restore", *prepared.db.server.args(other), stdin=prepared.stream, env=env)
    assert result.returncode == 0, result.stderr
    copy = type(prepared.db)(prepared.db.server, other, prepared.db.owner)
    assert copy.fingerprint() == prepared.db.fingerprint()


def test_restore_without_database_option_goes_to_the_database_named_in_the_stream(prepared, env):
    if prepared.kind == "sqlite":
        not_applicable("sqlite always needs --database")
    args = list(prepared.args())
    del args[args.index("--database"):args.index("--database") + 2]
    result = dbpipe("dbpipe-restore", *args, stdin=prepared.stream, env=env)
    assert result.returncode == 0, result.stderr
    assert f"from a dump of '{prepared.db.name}'" in result.stderr.decode()
    prepared.fingerprint = prepared.db.fingerprint()   # mysql: a side database now holds the old tables


def test_mysql_replace_mode_round_trip_as_a_limited_user(prepared, server_pool, env, tmp_path, private_tmp,
                                                         state_root):
    if prepared.kind != "mysql":
        not_applicable("mysql only")
    db = limited_mysql(prepared.kind_spec, server_pool, tmp_path)
    stream = dump_bytes(db, env)
    before = db.fingerprint()
    db.change()
    result = dbpipe("dbpipe-restore", *db.args(), stdin=stream, env=env)
    assert result.returncode == 0, result.stderr
    err = result.stderr.decode()
    assert "restore mode: replace (account may not create databases)" in err
    assert "restore mode: replace (verified spool, then drop and reload)" in err
    assert db.fingerprint() == before
    assert os.listdir(private_tmp) == []
    kept = os.listdir(state_root / "replace")   # --keep-old: the replaced content, as a private file
    assert len(kept) == 1 and kept[0].startswith(f"mysql-{db.name}-") and ".previous-" in kept[0]
    assert stat.S_IMODE(os.stat(state_root / "replace" / kept[0]).st_mode) == 0o600
    assert b"oc_added_later" in (state_root / "replace" / kept[0]).read_bytes()
    assert f"kept copy of replaced data: {state_root / 'replace' / kept[0]}" in err

    os.unlink(state_root / "replace" / kept[0])
    db.change()
    result = dbpipe("dbpipe-restore", *db.args(), "--drop-old", "--mode", "replace", stdin=stream, env=env)
    assert result.returncode == 0, result.stderr
    assert db.fingerprint() == before
    assert os.listdir(private_tmp) == [] and os.listdir(state_root / "replace") == []


def test_pgsql_large_objects_survive_the_single_transaction(prepared, fresh, env):
    """pg_dump's per-object BEGIN/COMMIT must not end our restore transaction."""
    if prepared.kind != "pgsql":
        not_applicable("pgsql only")
    fresh.sql(f'SET ROLE "{fresh.owner}"; SELECT lo_from_bytea(0, decode(repeat(\'00ff\', 5000), \'hex\'));'
              "SELECT lo_from_bytea(0, 'second object')")
    stream = dump_bytes(fresh, env)
    assert stream.count(b"SELECT pg_catalog.lo_open(") == 2
    before = fresh.fingerprint()
    fresh.sql(f'SET ROLE "{fresh.owner}"; SELECT lo_unlink(oid) FROM pg_largeobject_metadata;'
              "SELECT lo_from_bytea(0, 'added later')")
    result = dbpipe("dbpipe-restore", *fresh.args(), stdin=stream, env=env)
    assert result.returncode == 0, result.stderr
    assert fresh.fingerprint() == before


def test_physical_chains_follow_the_one_state_root(tmp_path, env, state_root):
    """$DBPIPE_STATE_DIR moves every record of dbpipe, physical chains included."""
    result = dbpipe("dbpipe-mariabackup", "--forget-job", "7", env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert "nothing to forget" in result.stderr.decode()
    assert (state_root / "mariabackup" / "default" / "lock").exists()


def test_a_bareos_job_that_is_no_job_id_is_a_usage_error(tmp_path):
    """An unsubstituted %i or a path as --bareos-job names no job: one line and 64,
    not a traceback in the job log."""
    for value in ("%i", "../x", "abc"):
        result = dbpipe("nextcloud-after-restore", str(tmp_path), "--bareos-job", value)
        assert result.returncode == 64, result.stderr
        assert last_line(result) == (f"nextcloud-after-restore: argument --bareos-job: not a Bareos JobId: "
                                     f"{value!r} (see --help)")
