"""The job-log channel: a dbpipe program running inside a Bareos job
($BareosJobId) records its lines; `dbpipe-joblog JOBID` (the shipped jobs'
After RunScript) prints them for the job log and removes the record."""

from __future__ import annotations

import os

from ..helpers import bareos_env, dbpipe, last_line


def test_a_failed_dump_is_printed_by_dbpipe_joblog_verbatim(tmp_path):
    env = bareos_env(DBPIPE_STATE_DIR=str(tmp_path), BareosJobId="4711", BareosJobLevel="F",
                     BareosJobType="B")
    failed = dbpipe("dbpipe-dump", "--type", "sqlite", "--database", tmp_path / "missing.db", env=env)
    assert failed.returncode == 66
    reason = last_line(failed)

    printed = dbpipe("dbpipe-joblog", "4711", env=bareos_env(DBPIPE_STATE_DIR=str(tmp_path)))

    assert printed.returncode == 0 and printed.stderr == b""
    assert printed.stdout.decode().splitlines()[-1] == reason
    assert os.listdir(tmp_path / "joblog") == []
    again = dbpipe("dbpipe-joblog", "4711", env=bareos_env(DBPIPE_STATE_DIR=str(tmp_path)))
    assert again.returncode == 0 and again.stdout == b""


def test_outside_a_job_nothing_is_recorded(tmp_path):
    dbpipe("dbpipe-dump", "--type", "sqlite", "--database", tmp_path / "missing.db",
           env=bareos_env(DBPIPE_STATE_DIR=str(tmp_path)))
    assert not (tmp_path / "joblog").exists()


def test_a_bad_job_id_is_a_usage_error(tmp_path):
    result = dbpipe("dbpipe-joblog", "12; rm -rf /", env=bareos_env(DBPIPE_STATE_DIR=str(tmp_path)))
    assert result.returncode == 64 and "JOBID must be a number" in last_line(result)


def test_a_record_directory_that_is_a_file_gives_one_line_and_exit_0(tmp_path):
    (tmp_path / "joblog").write_text("not a directory")
    env = bareos_env(DBPIPE_STATE_DIR=str(tmp_path))

    printed = dbpipe("dbpipe-joblog", "4711", env=env)

    assert printed.returncode == 0 and printed.stderr == b""
    assert printed.stdout.decode().splitlines() == [
        f"dbpipe-joblog: cannot read the record of job 4711 ({tmp_path}/joblog/4711.log): Not a directory"]
    assert (tmp_path / "joblog").read_text() == "not a directory"


def test_a_record_that_is_a_directory_gives_one_line_and_exit_0(tmp_path):
    (tmp_path / "joblog" / "4711.log").mkdir(parents=True)
    (tmp_path / "joblog" / "4711.log" / "x").write_text("kept")
    env = bareos_env(DBPIPE_STATE_DIR=str(tmp_path))

    printed = dbpipe("dbpipe-joblog", "4711", env=env)

    assert printed.returncode == 0 and printed.stderr == b""
    assert printed.stdout.decode().splitlines() == [
        f"dbpipe-joblog: cannot read the record of job 4711 ({tmp_path}/joblog/4711.log): Is a directory"]
    assert (tmp_path / "joblog" / "4711.log" / "x").read_text() == "kept"
