"""Bareos integration pieces that need no daemon: where a restore goes
(%w / $BareosWhere, %r / $BareosReplace), how Bareos splits a plugin string
into argv, the job tag in log lines, and the exit codes as docs/exit-codes.md
lists them."""

from __future__ import annotations

import re

import pytest

from dbpipe.errors import Cancelled, ExitCode
from dbpipe.bareos import BareosJob
from dbpipe.restore import FileDestination, bareos_destination
from dbpipe.stream import Header

from ..helpers import ROOT, bareos_argv

NO_ENV = BareosJob()


@pytest.mark.parametrize("where_arg, job", [
    (None, NO_ENV),                                   # not run by Bareos: live restore
    ("/", NO_ENV),                                    # Bareos <= 25, where=/ expanded
    ("//", NO_ENV),
    ("%w", NO_ENV),                                   # Bareos 26 passes %w literally
    ("", NO_ENV),
    ("/tmp/bareos-restores", BareosJob(where="")),   # env wins; empty where: in place
    ("/tmp/x", BareosJob(where="/")),
])
def test_live_restore(where_arg, job):
    assert bareos_destination(where_arg, job, None) is None


@pytest.mark.parametrize("where_arg, job, where", [
    ("/tmp/bareos-restores", NO_ENV, "/tmp/bareos-restores"),
    (None, BareosJob(where="/tmp/bareos-restores"), "/tmp/bareos-restores"),
    ("%w", BareosJob(where="/srv/r"), "/srv/r"),
    ("/ignored", BareosJob(where="/srv/r"), "/srv/r"),
])
def test_where_other_than_root_writes_a_file(where_arg, job, where):
    destination = bareos_destination(where_arg, job, None)
    assert destination == FileDestination(None, True, where)


@pytest.mark.parametrize("replace_arg, job, overwrite", [
    (None, BareosJob(where="/r"), True),               # default: always
    ("a", BareosJob(where="/r"), True),
    ("w", BareosJob(where="/r"), True),
    ("o", BareosJob(where="/r"), True),
    ("n", BareosJob(where="/r"), False),
    ("%r", BareosJob(where="/r"), True),               # unexpanded: default
    ("a", BareosJob(where="/r", replace="n"), False),  # env wins over the argument
    (None, BareosJob(where="/r", replace=" n "), False),
])
def test_replace_code_decides_about_overwriting(replace_arg, job, overwrite):
    assert bareos_destination(None, job, None, replace_arg).overwrite is overwrite


def test_file_destination_names():
    header = Header("mysql", "database", "nextcloud")
    assert FileDestination(None, where="/tmp/r").resolve(header) == "/tmp/r/dbpipe/mysql-nextcloud.sql"
    assert FileDestination("/var/lib/bpipe/nc.sql", where="/tmp/r").resolve(header) == \
        "/tmp/r/var/lib/bpipe/nc.sql"
    assert FileDestination("/srv/out.sql").resolve(header) == "/srv/out.sql"
    sqlite = Header("sqlite", "database", "/srv/nextcloud/data/owncloud.db")
    assert FileDestination(None, where="/r").resolve(sqlite) == "/r/dbpipe/sqlite-owncloud.db.sql"
    assert FileDestination(None, where="/r").resolve(Header("pgsql", "all", "")) == "/r/dbpipe/pgsql-all.sql"


# --- Bareos' BuildArgcArgv (bareos.split_argv; check-bareos-config and the CLI tests use it) ---

@pytest.mark.parametrize("command, argv", [
    ("dbpipe-dump --profile nextcloud", ["dbpipe-dump", "--profile", "nextcloud"]),
    ("  \tdbpipe-dump   --profile  nc ", ["dbpipe-dump", "--profile", "nc"]),
    ("sh -c 'cat >/x'", ["sh", "-c", "cat >/x"]),
    ('a "b c" d', ["a", "b c", "d"]),
    ("--password='a b'", ["--password='a", "b'"]),       # a quote inside a token is literal
    ("a\tb c", ["a\tb", "c"]),                            # only spaces split
    ("dbpipe-restore --where %w --replace %r", ["dbpipe-restore", "--where", "%w", "--replace", "%r"]),
    ("'unterminated arg", ["unterminated arg"]),
    ("", []),
])
def test_bareos_argv_split(command, argv):
    assert bareos_argv(command) == argv


def test_a_plugin_string_is_split_at_every_colon():
    from dbpipe.bareos import BpipePlugin, plugin_strings
    plugin = BpipePlugin.parse("bpipe:file=/X/db.sql:reader=/r --a b:writer=/w --where=%w")
    assert plugin == BpipePlugin("/X/db.sql", "/r --a b", "/w --where=%w")
    for bad in ("bpipe:file=/x:reader=r:writer=w --password=a:b", "bpipe:/x:reader=r:writer=w",
                "python:file=/x:reader=r:writer=w", "bpipe:file=/x:file=/y:reader=r:writer=w"):
        with pytest.raises(ValueError, match="plugin string needs"):
            BpipePlugin.parse(bad)
    config = 'FileSet {\n  Plugin = "bpipe"\n           ":file=/x" ":reader=r"\n           ":writer=w"\n}\n'
    assert plugin_strings(config) == ["bpipe:file=/x:reader=r:writer=w"]


def test_a_job_id_is_digits_only():
    from dbpipe.bareos import is_job_id
    assert is_job_id("42")
    assert not any(is_job_id(value) for value in ("", None, "%i", "4 2", "../1", "-1"))


# --- job tag and exit codes ----------------------------------------------------------------

def test_bareos_job_from_environment():
    job = BareosJob.from_environ({"BareosJobId": "656", "BareosJobLevel": " ", "BareosJobType": "R",
                                  "BareosWhere": "/tmp/bareos-restores", "BareosReplace": "a"})
    assert job == BareosJob("656", "", "R", "/tmp/bareos-restores", "a")
    assert job.label() == "Bareos job 656, type R"
    assert BareosJob.from_environ({}).label() == "" and BareosJob.from_environ({}).where is None
    assert BareosJob("7", "F", "B").label() == "Bareos job 7, level F, type B"


def test_exit_codes_are_sysexits_below_200_and_documented():
    assert {code: int(code) for code in ExitCode} == {
        ExitCode.OK: 0, ExitCode.USAGE: 64, ExitCode.DATAERR: 65, ExitCode.NOINPUT: 66,
        ExitCode.UNAVAILABLE: 69, ExitCode.SOFTWARE: 70, ExitCode.CANTCREAT: 73, ExitCode.IOERR: 74,
        ExitCode.TEMPFAIL: 75, ExitCode.NOPERM: 77, ExitCode.CONFIG: 78}
    table = (ROOT / "docs" / "exit-codes.md").read_text().split("| Code |", 1)[1].split("\n\n", 1)[0]
    documented = re.findall(r"^\| (\d+) \| ([\d–]+) \|", table, re.MULTILINE)
    assert [int(code) for code, _ in documented] == list(ExitCode)
    assert all(shown == (str(0x10000000 | int(code)) if int(code) else "–") for code, shown in documented)
    assert Cancelled(15).code == 143 and Cancelled(2).code == 130 and Cancelled(1).code == 129
    assert str(Cancelled(15)) == "cancelled by SIGTERM"


# --- the job-log channel and the exit status Bareos shows ---------------------------------

def test_the_bpipe_status_carries_the_exit_code():
    from dbpipe.bareos import exit_code_of
    assert exit_code_of(268435533) == 77       # 0x10000000 | 77
    assert exit_code_of(268435459) == 3
    assert exit_code_of(77) is None and exit_code_of(0x20000000) is None


def test_a_job_record_is_printed_once_and_old_ones_are_pruned(tmp_path):
    import os
    from dbpipe.bareos import JOBLOG_MAX_AGE, JobLog
    record = JobLog("42", str(tmp_path))
    record.append("dbpipe-dump: first")
    record.append("dbpipe-dump: second\n")
    assert os.stat(record.path).st_mode & 0o777 == 0o600
    assert record.take() == ["dbpipe-dump: first", "dbpipe-dump: second"]
    assert record.take() == []
    stale, fresh = JobLog("1", str(tmp_path)), JobLog("2", str(tmp_path))
    stale.append("x")
    fresh.append("y")
    old = os.stat(stale.path).st_mtime - JOBLOG_MAX_AGE - 10
    os.utime(stale.path, (old, old))
    fresh.prune()
    assert not os.path.exists(stale.path) and os.path.exists(fresh.path)


def test_only_a_numeric_job_id_names_a_record():
    import pytest
    from dbpipe.bareos import JobLog
    with pytest.raises(ValueError):
        JobLog("../../etc/passwd")


def test_outcomes_say_how_each_run_of_a_program_ended(tmp_path):
    from dbpipe.bareos import JobLog
    record = JobLog("7", str(tmp_path))
    assert record.outcomes("dbpipe-restore") == []
    record.append("dbpipe-restore: stream checksum mismatch")
    record.append("dbpipe-restore 10 started", record.status_path)
    record.append("dbpipe-restore 10 exit 65", record.status_path)
    record.append("dbpipe-restore 11 started", record.status_path)
    record.append("dbpipe-dump 12 exit 0", record.status_path)
    assert record.outcomes("dbpipe-restore") == ["exit 65: stream checksum mismatch", "did not finish"]
    assert record.outcomes("dbpipe-dump") == ["exit 0"]


def test_the_start_mark_is_older_than_every_file_written_after_it(tmp_path):
    """nextcloud-after-restore tells a restore's files by ctime: the mark comes
    from the same kernel clock and goes with the record."""
    import os
    import time
    from dbpipe.bareos import JobLog
    from dbpipe.nextcloud.restored import changed_since, restored_by_user
    record = JobLog("7", str(tmp_path / "joblog"))
    (tmp_path / "data" / "alice" / "files").mkdir(parents=True)
    (tmp_path / "data" / "alice" / "files" / "old.txt").write_text("old")
    (tmp_path / "data" / "bob" / "files").mkdir(parents=True)
    assert record.begun_ns() is None
    time.sleep(0.05)      # file times are stamped at the kernel's tick (a few ms)
    record.begin()
    (tmp_path / "data" / "bob" / "files" / "new.txt").write_text("new")
    os.utime(tmp_path / "data" / "bob" / "files" / "new.txt", (0, 0))     # Bareos sets the old mtime

    assert list(changed_since(str(tmp_path / "data" / "alice"), record.begun_ns())) == []
    assert restored_by_user(str(tmp_path / "data"), record.begun_ns()) == {"bob": 1}
    record.take()
    assert record.begun_ns() is None and os.listdir(record.directory) == []


def test_bconsole_answers_and_a_drill_jobs_verdict_are_read_as_bareos_25_prints_them():
    from dbpipe.bareos import _json_objects, _verdict
    out = ('.api json\n{\n  "jsonrpc": "2.0",\n  "id": null,\n  "result": {\n    "api": 2\n  }\n}'
           '.sql query="SELECT jobid FROM job"\n{\n  "jsonrpc": "2.0",\n  "id": null,\n  "result": {\n'
           '    "query": [\n      {\n        "jobid": "7"\n      }\n    ]\n  }\n}quit\n')
    answers = list(_json_objects(out))
    assert answers[1]["result"]["query"] == [{"jobid": "7"}]
    log = (" 2026-12-06 00:13:19 bareos-fd JobId 9: ClientAfterJob: file:      /x/NEXTCLOUD/database.sql\n"
           " 2026-12-06 00:13:19 bareos-fd JobId 9: ClientAfterJob: verdict:   DAMAGED - stream checksum mismatch\n"
           " 2026-12-06 00:13:19 bareos-fd JobId 9: Error: Runscript: ClientAfterJob returned non-zero status=65.\n")
    assert _verdict(log) == "verdict:   DAMAGED - stream checksum mismatch"
    assert _verdict(log.splitlines()[2]) == "Error: Runscript: ClientAfterJob returned non-zero status=65."


def test_the_drill_of_an_admin_job_is_told_by_its_job_option_never_a_stop():
    from dbpipe.drill import _is_drill_of
    drill = ["/usr/bin/python3", "/usr/bin/dbpipe-drill", "--client", "bareos-fd", "--job", "44"]
    assert _is_drill_of(drill, "44")
    assert _is_drill_of(drill[1:], "44") and _is_drill_of(["/usr/bin/dbpipe-drill", "--job=44"], "44")
    assert not _is_drill_of(drill, "4")
    assert not _is_drill_of(["/usr/bin/dbpipe-drill", "--stop", "44", "--job", "44"], "44")
    assert not _is_drill_of(["/bin/sh", "-c", "dbpipe-drill --job 44"], "44")


def test_a_cancel_while_a_job_is_being_started_acts_once_its_id_is_known():
    """SIGTERM in a cancel_deferred block is held until the block is done:
    the caller then knows what to cancel."""
    import os
    import signal

    import pytest

    from dbpipe.errors import Cancelled
    from dbpipe.process import cancel_deferred, cancellable
    steps = []
    with pytest.raises(Cancelled) as raised, cancellable():
        with cancel_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("the job id is known")
        steps.append("not reached")
    assert steps == ["the job id is known"] and raised.value.code == 143
