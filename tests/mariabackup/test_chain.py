"""Full -> incremental -> incremental -> differential -> incremental through the
shipped FileSet's reader and writer, then prepare and copy-back into other
real servers, compared table by table with the source at backup time."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..helpers import BIN, bareos_argv, bareos_env, dbpipe, last_line
from testkit.mariadb_service import SERVICE_MANAGER, PrivateService

from .conftest import change, job_env, populate, profile_dir, run_reader, run_writer, snapshot

LEVELS = ["F", "I", "I", "D", "I"]
LANDED = "var/lib/dbpipe/mariabackup-restore"


@dataclass
class Chain:
    landed: Path                  # where the writer put the pieces (below BareosWhere)
    streams: list[Path]           # the reader's output, one per backup
    snapshots: dict[int, dict]    # sequence -> source tables at that backup
    state: Path
    env: dict


@pytest.fixture(scope="module")
def chain(source, tmp_path_factory):
    base = tmp_path_factory.mktemp("mbchain")
    env = {"DBPIPE_CONFIG_DIR": profile_dir(base / "etc", source), "DBPIPE_STATE_DIR": str(base / "state-root")}
    populate(source)
    streams, snapshots = [], {}
    for sequence, level in enumerate(LEVELS):
        if sequence:
            change(source, sequence)
        stream = base / f"stream-{sequence}.dbpipe"
        result = run_reader(job_env(env, level, 100 + sequence), stream, base / "state")
        assert result.returncode == 0, result.stderr.decode()
        snapshots[sequence] = snapshot(source)
        streams.append(stream)
        result = run_writer(job_env(env, " ", 200, BareosWhere=str(base / "where")), stream)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == b""  # a writer never writes to stdout
    return Chain(base / "where" / LANDED, streams, snapshots, base / "state", env)


@pytest.mark.parametrize("spelling", ["--where=%w", "--where %w"])
def test_a_restore_to_root_stores_below_into_itself(chain, tmp_path, spelling):
    """Bareos up to 25 turns where=/ into an empty %w: attached it arrives as
    --where=, detached it vanishes from argv; both mean --into itself, as for
    dbpipe-restore."""
    into = tmp_path / "into"
    command = f"{BIN}/dbpipe-mariabackup-restore --from-stdin --into {into} {spelling}".replace("%w", "")
    with open(chain.streams[0], "rb") as stdin:
        result = subprocess.run(bareos_argv(command), stdin=stdin, capture_output=True, cwd="/",
                                env=bareos_env(**chain.env), timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    first = sorted(name for name in os.listdir(chain.landed) if name.endswith(".dbpipe"))[0]
    assert sorted(os.listdir(into)) == [first]


def restore(directory, service: PrivateService, *prepare_args: str, copy_args=()) -> tuple:
    prepared = dbpipe("dbpipe-mariabackup-restore", "prepare", directory, *prepare_args)
    assert prepared.returncode == 0, prepared.stderr.decode()
    return prepared, copy_back(directory, service, *copy_args)


def copy_back(directory, service: PrivateService, *extra) -> subprocess.CompletedProcess:
    return dbpipe("dbpipe-mariabackup-restore", "copy-back", directory, "--datadir", service.datadir,
                  "--service", service.root, "--service-manager", SERVICE_MANAGER,
                  "--defaults-file", service.cnf, "--start-timeout", "60",
                  "--state-dir", os.path.join(service.root, "no-state"), *extra)


@pytest.fixture(scope="module")
def restored(chain):
    """The newest point of the chain, copied back into a server that had no data yet."""
    service = PrivateService("restored")
    prepared, copied = restore(chain.landed, service)
    assert copied.returncode == 0, copied.stderr.decode()
    service.outputs = (prepared, copied)
    yield service
    service.destroy()


def test_every_piece_lands_separately_named_in_chain_order(chain):
    names = sorted(os.listdir(chain.landed))
    assert len(names) == len(LEVELS) and all(name.endswith(".dbpipe") for name in names)
    assert [name.split("-")[3] for name in names] == [f"{i:04d}" for i in range(len(LEVELS))]
    assert [name.split("-")[4] for name in names] == ["full", "incremental", "incremental",
                                                      "differential", "incremental"]
    assert [name.rsplit("-job", 1)[1] for name in names] == [f"{100 + i}.dbpipe" for i in range(5)]
    state = json.loads((chain.state / "chain.json").read_text())
    pieces = state["pieces"]
    assert [p["level"] for p in pieces] == ["full", "incremental", "incremental", "differential", "incremental"]
    assert pieces[3]["parent_id"] == pieces[0]["piece_id"]      # differential: since the full
    assert pieces[4]["parent_id"] == pieces[3]["piece_id"]      # incremental: since the last backup
    assert pieces[3]["from_lsn"] == pieces[0]["to_lsn"] and pieces[4]["from_lsn"] == pieces[3]["to_lsn"]
    verified = dbpipe("dbpipe-verify", chain.landed / names[4])
    assert verified.returncode == 0 and b"intact" in verified.stdout


def test_restored_chain_equals_the_source_at_the_last_backup(chain, restored):
    prepared, copied = restored.outputs
    assert b"data as of" in prepared.stdout and b"Bareos job 104" in prepared.stdout
    assert b"not needed" in prepared.stderr       # the differential supersedes #1 and #2
    assert snapshot(restored) == chain.snapshots[4]
    assert "oc_share" not in chain.snapshots[4] and "oc_renamed" in chain.snapshots[4]


def test_until_restores_the_incremental_chain_and_keeps_the_old_datadir(chain, restored, nextcloud):
    before = set(os.listdir(restored.root))
    prepared, copied = restore(chain.landed, restored, "--force", "--until", "2",
                               copy_args=nextcloud.args)
    assert copied.returncode == 0, copied.stderr.decode()
    assert "maintenance:mode --on" in nextcloud.commands() and not nextcloud.maintenance
    # by occ (30-32; 30 prints nothing, so it is read back) or by PHP (PR 56754 offers no
    # data-fingerprint in maintenance mode): the value reported is the value written
    said = re.search(r"data fingerprint: updated to ([0-9a-f]{32})$", copied.stdout.decode(), re.MULTILINE)
    assert said and nextcloud.config()["data-fingerprint"] == said.group(1)
    assert not list(nextcloud.state_dir.glob("*.json"))
    assert b"Bareos job 102" in prepared.stdout
    assert snapshot(restored) == chain.snapshots[2]
    kept = [name for name in set(os.listdir(restored.root)) - before if name.startswith("data.dbpipe-old-")]
    assert len(kept) == 1
    assert os.path.isdir(os.path.join(restored.root, kept[0], "nc"))   # nothing deleted
    assert re.search(rf"kept earlier data directory: {re.escape(os.path.join(restored.root, kept[0]))} "
                     r"\(\d+(\.\d)? MiB\)", copied.stderr.decode())


def test_a_new_server_that_fails_to_start_brings_the_old_one_back(chain, restored, tmp_path, nextcloud):
    before, entries = snapshot(restored), set(os.listdir(restored.root))
    nextcloud.set_maintenance(True)          # the admin's, not ours: it must stay on
    work = tmp_path / "pieces"
    work.mkdir()
    assert run_writer(job_env(chain.env, " ", 300), chain.streams[0], "--into", str(work)).returncode == 0
    assert dbpipe("dbpipe-mariabackup-restore", "prepare", work).returncode == 0
    (work / "prepared" / "ibdata1").write_bytes(b"")   # InnoDB cannot start on this

    result = copy_back(work, restored, *nextcloud.args)

    assert result.returncode == 69, result.stderr.decode()
    assert "previous data directory is back in place" in last_line(result)
    assert nextcloud.maintenance and "maintenance:mode --off" not in nextcloud.commands()
    assert not nextcloud.config()["data-fingerprint"] and not list(nextcloud.state_dir.glob("*.json"))
    assert restored.running()
    assert snapshot(restored) == before
    added = set(os.listdir(restored.root)) - entries
    assert [name for name in added if name.startswith("data.dbpipe-failed-")]
    assert not [name for name in added if name.startswith("data.dbpipe-old-")]


def test_a_copy_back_killed_mid_way_leaves_nextcloud_closed_with_a_record(chain, restored, tmp_path,
                                                                         new_service, nextcloud):
    """SIGKILL while the new server starts: nothing can put anything back, so
    the record saved before the swap is what says maintenance mode is ours
    and the restore half-finished; no backup hook ends it, the named command
    finishes it.  (The chain was prepared for `restored`; copy-back only reads it.)"""
    directory = chain.landed
    target, started = new_service("killed"), tmp_path / "start-called"
    manager = tmp_path / "hanging-manager"
    manager.write_text(f'#!/bin/sh\nif [ "$1" = start ]; then echo $$ > {started}; exec sleep 300; fi\n'
                       f'exec {SERVICE_MANAGER} "$@"\n')
    manager.chmod(0o755)
    proc = subprocess.Popen(
        [str(BIN / "dbpipe-mariabackup-restore"), "copy-back", str(directory), "--datadir", target.datadir,
         "--service", target.root, "--service-manager", str(manager), "--defaults-file", target.cnf,
         "--state-dir", os.path.join(target.root, "no-state"), *nextcloud.args],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
        env=bareos_env())
    deadline = time.monotonic() + 120
    while not (started.exists() and started.read_text().strip()) and proc.poll() is None:
        assert time.monotonic() < deadline, "copy-back never started the server"
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    os.kill(int(started.read_text()), signal.SIGKILL)   # the orphaned, hanging start

    assert proc.returncode == -signal.SIGKILL
    assert nextcloud.maintenance
    record = json.loads(next(nextcloud.state_dir.glob("*.json")).read_text())
    finish = f"nextcloud-after-restore {nextcloud.root} --state-dir {nextcloud.state_dir}"
    assert (record["hook"], record["unfinished"]) == ("dbpipe-mariabackup-restore copy-back", finish)
    refused = dbpipe("nextcloud-before-backup", nextcloud.root, "--state-dir", nextcloud.state_dir)
    assert refused.returncode == 75 and f"finish it first with: {finish}" in last_line(refused)
    argv = shlex.split(finish)
    finished = dbpipe(argv[0], *argv[1:], "--settle", "0")
    assert finished.returncode == 0, finished.stderr.decode()
    assert not nextcloud.maintenance and nextcloud.config()["data-fingerprint"]


def link_pieces(chain: Chain, directory: Path, sequences) -> list[str]:
    directory.mkdir()
    names = sorted(os.listdir(chain.landed))
    for sequence in sequences:
        os.link(chain.landed / names[sequence], directory / names[sequence])
    return sorted(os.listdir(directory))


def test_a_missing_middle_piece_is_refused_before_anything_is_touched(chain, tmp_path, new_service):
    directory = tmp_path / "gap"
    listing = link_pieces(chain, directory, [0, 2])

    result = dbpipe("dbpipe-mariabackup-restore", "prepare", directory)

    assert result.returncode == 65
    assert "broken chain" in last_line(result) and "#1, Bareos job 101" in last_line(result)
    assert sorted(os.listdir(directory)) == listing
    target = new_service()
    result = copy_back(directory, target)
    assert result.returncode == 65 and "prepare first" in last_line(result)
    assert not os.path.exists(target.datadir)


def test_pieces_of_two_servers_are_refused(chain, restored, tmp_path):
    directory = tmp_path / "mixed"
    listing = link_pieces(chain, directory, [0, 1])
    env = {"DBPIPE_CONFIG_DIR": profile_dir(tmp_path / "etc", restored),
           "DBPIPE_STATE_DIR": str(tmp_path / "state-root")}
    other = tmp_path / "other.dbpipe"
    assert run_reader(job_env(env, "F", 400), other, tmp_path / "s").returncode == 0
    assert run_writer(job_env(env, " ", 401), other, "--into", str(directory)).returncode == 0

    result = dbpipe("dbpipe-mariabackup-restore", "prepare", directory)

    assert result.returncode == 65 and "2 different backup chains" in last_line(result)
    assert len(os.listdir(directory)) == len(listing) + 1


def test_writer_refuses_bad_streams_and_leaves_nothing(chain, tmp_path):
    directory = tmp_path / "in"
    truncated = tmp_path / "truncated"
    truncated.write_bytes(chain.streams[1].read_bytes()[:-3000])
    assert run_writer(job_env(chain.env, " ", 1), truncated, "--into", str(directory)).returncode == 65
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert run_writer(job_env(chain.env, " ", 1), empty, "--into", str(directory)).returncode == 66
    assert os.listdir(directory) == []
    for _ in range(2):  # the same piece restored twice is fine
        result = run_writer(job_env(chain.env, " ", 1), chain.streams[0], "--into", str(directory))
        assert result.returncode == 0, result.stderr.decode()
    assert len(os.listdir(directory)) == 1


def test_pieces_of_different_server_versions_are_refused(chain, tmp_path):
    """The reader itself starts a new chain when the version changes; a piece
    claiming another version (e.g. copied over from elsewhere) is refused."""
    import dataclasses
    from dbpipe.stream import TRAILER_START, Trailer
    directory = tmp_path / "versions"
    names = link_pieces(chain, directory, [0])
    later = sorted(os.listdir(chain.landed))[1]
    data = (chain.landed / later).read_bytes()
    start = data.rfind(b"\n" + TRAILER_START) + 1
    trailer = dataclasses.replace(Trailer.decode(data[start:]), server_version="10.11.99-MariaDB")
    (directory / later).write_bytes(data[:start] + trailer.encode())

    result = dbpipe("dbpipe-mariabackup-restore", "prepare", directory)

    assert result.returncode == 65 and "server version mismatch" in last_line(result)
    assert sorted(os.listdir(directory)) == sorted(names + [later])


def test_until_a_point_the_stored_pieces_cannot_reach_is_refused(chain, tmp_path):
    """Pieces #0, #3 and #4 stored: --until 2 must not quietly restore the
    full backup's point, nor --until 9 the newest one."""
    directory = tmp_path / "holes"
    listing = link_pieces(chain, directory, [0, 3, 4])

    for command, until, missing in (("prepare", "2", "#2"), ("list", "2", "#2"),
                                    ("prepare", "9", "#9")):
        result = dbpipe("dbpipe-mariabackup-restore", command, directory, "--until", until)
        assert result.returncode == 65, result.stderr.decode()
        assert f"--until {until}: backup {missing} is missing from {directory}, which holds #0, #3, #4" \
            in last_line(result)
        assert sorted(os.listdir(directory)) == listing and result.stdout == b""

    result = dbpipe("dbpipe-mariabackup-restore", "list", directory, "--until", "3")
    assert result.returncode == 0 and "Bareos job" not in result.stdout.decode().splitlines()[-1]


def _tree(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}


def test_prepare_force_with_a_damaged_piece_keeps_the_earlier_result(chain, tmp_path):
    """A payload byte flipped in a stored piece: its trailer still reads well
    (list says 'use'), prepare --force names it and the earlier prepared
    result stays, whole, with its record."""
    directory = tmp_path / "force"
    link_pieces(chain, directory, [0, 3])
    assert dbpipe("dbpipe-mariabackup-restore", "prepare", directory).returncode == 0
    earlier, record = _tree(directory / "prepared"), (directory / "prepared.json").read_bytes()
    name = sorted(os.listdir(chain.landed))[4]
    data = bytearray((chain.landed / name).read_bytes())
    data[len(data) // 2] ^= 0x01                      # a copy: the chain's own file stays intact
    (directory / name).write_bytes(bytes(data))
    listed = dbpipe("dbpipe-mariabackup-restore", "list", directory)
    assert f"use  {name}" in listed.stdout.decode()

    result = dbpipe("dbpipe-mariabackup-restore", "prepare", directory, "--force")

    assert result.returncode == 65, result.stderr.decode()
    assert f"damaged piece {name} (#4 incremental" in last_line(result)
    assert "checksum" in last_line(result)
    assert _tree(directory / "prepared") == earlier
    assert (directory / "prepared.json").read_bytes() == record
    assert not [n for n in os.listdir(directory) if n.startswith(".preparing-")]

    (directory / name).unlink()                      # the good copy comes back: the new result replaces
    os.link(chain.landed / name, directory / name)
    replaced = dbpipe("dbpipe-mariabackup-restore", "prepare", directory, "--force")
    assert replaced.returncode == 0, replaced.stderr.decode()
    assert "Bareos job 104" in replaced.stdout.decode()
    assert json.loads((directory / "prepared.json").read_text())["pieces"][-1] == name
    assert not [n for n in os.listdir(directory) if n.startswith(".preparing-")]


def _named(service, prefix: str) -> list[str]:
    return sorted(name for name in os.listdir(service.root) if name.startswith(prefix))


def _hanging_manager(tmp_path) -> tuple[Path, Path]:
    """A service manager whose start never returns (the server never comes up)."""
    started, manager = tmp_path / "start-called", tmp_path / "hanging-manager"
    manager.write_text(f'#!/bin/sh\nif [ "$1" = start ]; then echo $$ > {started}; exec sleep 300; fi\n'
                       f'exec {SERVICE_MANAGER} "$@"\n')
    manager.chmod(0o755)
    return manager, started


def test_a_copy_back_killed_with_sigkill_is_rolled_back_by_its_record_on_rerun(chain, restored, tmp_path,
                                                                               new_service):
    """SIGKILL after the swap, while the new server starts: the record written
    before the first move says which directory is which, so the rerun puts
    the real pre-restore data back first, calls the killed run's copy failed,
    and --keep-old-copies 1 keeps the real one."""
    target = new_service("killed-rerun").install().start()
    target.sql("CREATE DATABASE genuine_before_restore")
    manager, started = _hanging_manager(tmp_path)
    proc = subprocess.Popen(
        [str(BIN / "dbpipe-mariabackup-restore"), "copy-back", str(chain.landed), "--datadir", target.datadir,
         "--service", target.root, "--service-manager", str(manager), "--defaults-file", target.cnf,
         "--state-dir", os.path.join(target.root, "no-state")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
        env=bareos_env())
    deadline = time.monotonic() + 120
    while not (started.exists() and started.read_text().strip()) and proc.poll() is None:
        assert time.monotonic() < deadline, "copy-back never started the server"
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    os.kill(int(started.read_text()), signal.SIGKILL)   # the orphaned, hanging start

    assert not target.running()
    [old] = _named(target, "data.dbpipe-old-")
    assert os.path.isdir(os.path.join(target.root, old, "genuine_before_restore"))
    assert not os.path.exists(os.path.join(target.datadir, "genuine_before_restore"))
    record = json.loads(Path(target.datadir + ".dbpipe-copy-back.json").read_text())
    assert (record["kept"], record["phase"]) == (os.path.join(target.root, old), "moving")

    rerun = copy_back(chain.landed, target, "--keep-old-copies", "1")

    said = rerun.stderr.decode()
    assert rerun.returncode == 0, said
    assert "was interrupted" in said and "rolling it back first" in said
    [failed] = re.findall(r"rolled back: the interrupted copy is in (\S+),", said)
    assert os.path.basename(failed).startswith("data.dbpipe-failed-") and not os.path.exists(failed)
    [kept] = _named(target, "data.dbpipe-old-")        # the one copy kept is the real one
    assert os.path.isdir(os.path.join(target.root, kept, "genuine_before_restore"))
    assert _named(target, "data.dbpipe-failed-") == []
    assert not os.path.exists(target.datadir + ".dbpipe-copy-back.json")
    assert target.running()
    last_job = json.loads((chain.landed / "prepared.json").read_text())["last_job"]
    assert snapshot(target) == chain.snapshots[int(last_job) - 100]


@pytest.mark.parametrize("mount", ["tmpfs", "bind"])
def test_copy_back_onto_a_mount_point_is_refused_before_anything_stops(mount, chain, restored, new_service):
    """Its own volume (tmpfs), or a bind mount from the same filesystem (same
    st_dev: os.path.ismount does not see it, the rename would still fail)."""
    target = new_service("mounted")
    os.makedirs(target.datadir)
    if mount == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m", "dbpipe-test", target.datadir], check=True)
    else:
        os.makedirs(os.path.join(target.root, "volume"))
        subprocess.run(["mount", "--bind", os.path.join(target.root, "volume"), target.datadir], check=True)
    try:
        target.install().start()
        target.sql("CREATE DATABASE before_restore")

        result = copy_back(chain.landed, target)

        assert result.returncode == 64, result.stderr.decode()
        assert len(result.stderr.decode().splitlines()) == 1
        assert f"--datadir {target.datadir} is a mount point" in last_line(result)
        assert "nothing was changed" in last_line(result)
        assert target.running() and "before_restore" in target.sql("SHOW DATABASES")
        assert _named(target, "data.dbpipe-") == []
        assert os.path.exists(os.path.join(target.datadir, "before_restore"))
    finally:
        target.stop()
        subprocess.run(["umount", target.datadir], check=True)


def test_item_restore_refuses_a_physical_piece_for_what_it_is(chain, tmp_path):
    result = dbpipe("nextcloud-restore-items", "list", "--user", "alice", "--scratch-type", "sqlite",
                    chain.streams[0])
    assert result.returncode == 65, result.stderr.decode()
    assert "this is a physical backup piece (dbpipe-mariabackup), not an SQL dump" in last_line(result)
    assert "all-databases" not in result.stderr.decode() and result.stdout == b""
