"""Point-in-time recovery's pure parts: WAL names, recovery targets, the
spool's naming rules and refusal notes, the prune report, chain selection."""

from __future__ import annotations

import datetime

import pytest

from dbpipe.bareos import CatalogJob
from dbpipe.errors import DataError, NoInputError, UsageError
from dbpipe.pitr import fetch, walnames
from dbpipe.pitr.prune import Pruned, report
from dbpipe.pitr.spool import MiB, Spool, checked_name
from dbpipe.pitr.targettime import RecoveryTarget

SEG = walnames.DEFAULT_SEGMENT_BYTES


def test_segment_names_round_trip_across_the_log_boundary():
    assert walnames.segment_name(1, 0xFF, SEG) == "0000000100000000000000FF"
    assert walnames.segment_name(1, 0x100, SEG) == "000000010000000100000000"
    assert walnames.parse("000000020000000100000003", SEG) == (2, 0x103)
    assert walnames.segment_of(1, "0/2000028", SEG) == "000000010000000000000002"
    assert walnames.segment_of(1, "1/0", SEG) == "000000010000000100000000"
    with pytest.raises(DataError):
        walnames.parse("00000002.history", SEG)


def test_targets_latest_local_and_zoned():
    assert RecoveryTarget.parse("latest").latest
    zoned = RecoveryTarget.parse("2026-12-05 16:39:59+01:00")
    assert zoned.for_server() == "2026-12-05 15:39:59.000000+00"
    assert RecoveryTarget.parse("2026-12-05T16:39:59Z").for_server() == "2026-12-05 16:39:59.000000+00"
    assert RecoveryTarget.parse("2026-12-05 16:39:59").at.tzinfo is not None   # local time
    with pytest.raises(UsageError):
        RecoveryTarget.parse("yesterday")


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "x.sha256", ""])
def test_only_plain_file_names_are_archived(name):
    with pytest.raises(UsageError):
        checked_name(name)


def test_refusals_are_noted_once_and_reported_loudly(tmp_path):
    spool = Spool(str(tmp_path), 100 * MiB)
    spool.note_refusal("000000010000000000000005: archive spool is full")
    spool.note_refusal("000000010000000000000005: archive spool is full")
    pruned = Pruned(["a"], 3, 90 * MiB, tuple(spool.take_refusals()))
    line = report(spool, pruned)
    assert line.startswith("WARNING: ") and "near or over the limit" in line
    assert "the archive command refused 2 time(s) since " in line and "archive spool is full" in line
    assert spool.take_refusals() == [] and spool.names() == []


def job(job_id, level, end):
    return CatalogJob(job_id, "backup-mariadb-physical", "T", level, end, end)


def test_the_chain_is_the_last_full_before_the_target_and_what_follows_it():
    jobs = [job(1, "F", "2026-12-01 02:00:00"), job(2, "I", "2026-12-02 02:00:00"),
            job(3, "F", "2026-12-03 02:00:00"), job(4, "I", "2026-12-04 02:00:00"),
            job(5, "I", "2026-12-05 02:00:00")]
    at = RecoveryTarget(datetime.datetime(2026, 12, 4, 12, 0).astimezone())
    assert [j.job_id for j in fetch.chain_jobs(jobs, at)] == [3, 4]
    assert [j.job_id for j in fetch.chain_jobs(jobs, RecoveryTarget(None))] == [3, 4, 5]
    early = RecoveryTarget(datetime.datetime(2026, 11, 1).astimezone())
    with pytest.raises(NoInputError):
        fetch.chain_jobs(jobs, early)
    assert fetch.choose_base(jobs, at).job_id == 4
