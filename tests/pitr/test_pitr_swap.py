"""The swap of a point-in-time restore, on PostgreSQL and on MariaDB
(tests/pitr/accidents.py: two notes, the target, a note after it and a
dropped table).

--nextcloud closes Nextcloud only around the swap: maintenance mode on
after the recovery, before the server stops; a new data fingerprint once it
runs on the recovered directory; a rolled-back swap reopens it; kill -9
during the swap leaves it closed with a record naming the finish.

The swap's own record: a restore killed (strace, SIGKILL) exactly between
the two renames - the live directory aside, the recovered one not yet in
its place - is refused by every other run (75, nothing changed) and
finished by the next in-place run, or rolled back when the recovered
server does not start; the old directory is the live one, untouched."""

from __future__ import annotations

import json
import signal
import time

from ..helpers import dbpipe, last_line
from .accidents import kill_between_the_renames, wait_for


def test_nextcloud_is_closed_only_around_the_swap(accident):
    """The recovery runs with Nextcloud open; maintenance mode is on from
    before the server stops until after it runs on the recovered directory,
    with a new data fingerprint, then off as before."""
    nc = accident.with_nextcloud(accident.values)
    install, events = nc.install, nc.events
    install.fail({"match": "maintenance:mode --on", "action": "pause", "seconds": 300})
    live = nc.data.stat().st_ino
    proc = nc.start(*nc.nextcloud_args())
    try:
        wait_for(lambda: "maintenance:mode --on" in install.commands(), proc, "maintenance mode")
        # Nextcloud closes only now: the recovery has finished, nothing live has changed yet
        assert nc.recovery_finished()
        assert nc.data.stat().st_ino == live and not events.exists() and nc.live_is_after_the_accident()
    finally:
        (install.root / "occ-resume").write_text("")
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()
    assert "live data directory replaced" in out.decode()
    assert nc.notes() == ["one", "two"]
    assert not nc.live_is_after_the_accident()
    renewed = install.config()["data-fingerprint"]
    assert renewed and renewed != nc.fingerprint
    assert f"data fingerprint: updated to {renewed}" in out.decode()
    assert not install.maintenance and not list(nc.state.glob("*.json"))
    commands = install.commands()
    calls_at = [line.split() for line in events.read_text().splitlines()]
    stopped = next(int(count) for action, count in calls_at if action == "stop")
    started = [int(count) for action, count in calls_at if action == "start"][-1]
    on, off = commands.index("maintenance:mode --on"), commands.index("maintenance:mode --off")
    assert on < stopped <= started <= off, (commands, calls_at)
    assert commands.index("maintenance:data-fingerprint") in range(started, off), commands


def test_nextcloud_reopens_when_the_swap_is_rolled_back(accident):
    """The recovered server does not start: the old directory goes back and
    so does maintenance mode; no new fingerprint, no record left."""
    nc = accident.with_nextcloud(accident.values)
    nc.flag("fail-start-once")
    result = nc.restore(*nc.nextcloud_args())
    assert result.returncode == 69, result.stderr.decode()
    line = last_line(result)
    assert "the recovered server did not start" in line and "old data directory is back in place" in line
    assert nc.live_is_after_the_accident()                     # the live server as it was, running
    assert not nc.install.maintenance and not list(nc.state.glob("*.json"))
    assert nc.install.config()["data-fingerprint"] == nc.fingerprint
    assert "maintenance:mode --on" in nc.install.commands()
    assert not nc.data.with_name(nc.data.name + ".dbpipe-swap.json").exists()


def test_kill_9_during_the_swap_leaves_nextcloud_closed_naming_the_finish(accident):
    """Killed once the swap has begun (its server stop held): maintenance
    mode stays on, the record names nextcloud-after-restore; the swap's own
    record is rolled back by --finish-swap (nothing was renamed), then
    nextcloud-after-restore finishes."""
    nc = accident.with_nextcloud(accident.values)
    nc.flag("hang-stop")
    proc = nc.start(*nc.nextcloud_args())
    try:
        wait_for(lambda: nc.events.exists() and "stop" in nc.events.read_text(), proc, "the service stop")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        nc.flag("release")
    assert nc.install.maintenance
    records = [p.read_text() for p in nc.state.glob("*.json")]
    assert len(records) == 1 and "nextcloud-after-restore" in records[0], records
    assert nc.live_is_after_the_accident()                     # never stopped: the held stop did nothing
    time.sleep(0.5)                                             # the orphaned stop gives up
    (nc.here / "hang-stop").unlink()
    repaired = nc.restore("--finish-swap", target=False)
    assert repaired.returncode == 0, repaired.stderr.decode()
    assert "rolled back the interrupted point-in-time swap into" in repaired.stdout.decode()
    assert nc.live_is_after_the_accident()
    finish = dbpipe("nextcloud-after-restore", nc.install.root, "--state-dir", nc.state, "--settle", "0")
    assert finish.returncode == 0, finish.stderr
    assert not nc.install.maintenance and not list(nc.state.glob("*.json"))
    assert nc.install.config()["data-fingerprint"] != nc.fingerprint


def test_a_swap_killed_between_its_renames_is_finished_by_the_next_run(accident):
    original = accident.data.stat().st_ino
    new = kill_between_the_renames(accident)
    [old] = accident.beside("old")
    record = accident.data.with_name(accident.data.name + ".dbpipe-swap.json")
    assert not accident.data.exists() and new.is_dir() and old.stat().st_ino == original
    assert json.loads(record.read_text())["new"] == str(new)

    refused = accident.restore("--beside")                  # no new recovery while it is recorded
    assert refused.returncode == 75, refused.stderr.decode()
    line = last_line(refused)
    assert f"an interrupted point-in-time swap into {accident.data} is recorded" in line
    assert f"--finish-swap --datadir {accident.data} --service {accident.service}" in line
    assert len(refused.stderr.decode().strip().splitlines()) == 1
    assert not accident.data.exists() and accident.beside("old") == [old]

    again = accident.restore()                              # the same command again finishes it
    assert again.returncode == 0, again.stderr.decode()
    said = again.stdout.decode().strip().splitlines()
    assert len(said) == 1 and said[0].startswith(f"finished the interrupted point-in-time swap into "
                                                 f"{accident.data}: recovered to "), said
    assert f"the old data directory is kept as {old}" in said[0]
    assert accident.notes() == ["one", "two"] and not accident.live_is_after_the_accident()
    assert old.stat().st_ino == original and not record.exists() and not new.exists()
    assert not [p for p in accident.beside("pitr") if p != new]   # no second recovery was started


def test_a_killed_swap_whose_recovered_server_does_not_start_is_rolled_back(accident):
    original = accident.data.stat().st_ino
    new = kill_between_the_renames(accident)
    accident.flag("fail-start-once")
    result = accident.restore("--finish-swap", target=False)
    assert result.returncode == 69, result.stderr.decode()
    line = last_line(result)
    assert line.startswith(f"dbpipe-pitr-restore: rolled back the interrupted point-in-time swap into "
                           f"{accident.data}: the recovered server did not start"), line
    assert "the old data directory is back in place and started" in line
    assert accident.data.stat().st_ino == original and accident.live_is_after_the_accident()
    assert new.with_name(new.name + ".failed").is_dir() and not accident.beside("old")
    assert not accident.data.with_name(accident.data.name + ".dbpipe-swap.json").exists()
