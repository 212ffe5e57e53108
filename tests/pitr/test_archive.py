"""dbpipe-wal-archive as a real PostgreSQL's archive_command: durable,
checksummed, never overwriting, and failing fast - a full spool disk or a
spool over its limit costs the server a retry, never a stall."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time

from ..helpers import bareos_env, dbpipe, last_line
from testkit.pitr import archive_command, archiver, configure, mounted_tmpfs, owned_dir, switch_wal, wait_archived

SEGMENT = 16 << 20


def spooled(spool) -> list[str]:
    """The spool's files but the refusal notes (checked on their own)."""
    return sorted(p.name for p in spool.iterdir() if p.name != ".refused")


def test_each_segment_lands_durably_with_its_checksum(archiving_pg):
    server, spool = archiving_pg
    first = switch_wal(server)
    second = switch_wal(server)
    wait_archived(server, second)
    for name in (first, second):
        data = (spool / name).read_bytes()
        assert len(data) == SEGMENT
        assert (spool / f"{name}.sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()
        assert stat.S_IMODE((spool / name).stat().st_mode) == 0o600
    assert not [n for n in spooled(spool) if n.startswith(".")], spooled(spool)
    assert archiver(server)["failed"] == 0


def test_same_name_identical_is_success_different_is_refused(tmp_path):
    spool = tmp_path / "spool"
    segment = tmp_path / "000000010000000000000003"
    segment.write_bytes(os.urandom(1 << 16))
    for _ in range(2):
        result = dbpipe("dbpipe-wal-archive", segment, segment.name, "--spool", spool)
        assert result.returncode == 0, result.stderr
    kept = (spool / segment.name).read_bytes()
    segment.write_bytes(os.urandom(1 << 16))
    result = dbpipe("dbpipe-wal-archive", segment, segment.name, "--spool", spool)
    assert result.returncode == 65
    assert "already archived with different content; refusing to overwrite" in last_line(result)
    assert (spool / segment.name).read_bytes() == kept
    assert bad_names(tmp_path, spool) == []
    assert "already archived with different content" in (spool / ".refused").read_text()


def bad_names(tmp_path, spool) -> list[str]:
    """Temporary files left behind."""
    return [n for n in os.listdir(spool) if n.startswith(".") and n != ".refused"]


def test_a_slash_in_the_name_is_refused(tmp_path):
    source = tmp_path / "x"
    source.write_bytes(b"x")
    result = dbpipe("dbpipe-wal-archive", source, "../x", "--spool", tmp_path / "spool")
    assert result.returncode == 64 and "not an archive file name" in last_line(result)


def test_full_spool_disk_fails_fast_and_the_server_keeps_running(archiving_pg, reachable):
    server, _ = archiving_pg
    with mounted_tmpfs(reachable / "small", 20) as small:
        spool = owned_dir(small / "spool")
        configure(server, {"archive_command": archive_command(spool, "--max-spool-mb 0")})
        first = switch_wal(server)
        wait_archived(server, first)
        switch_wal(server)                       # the second 16 MiB segment does not fit
        deadline = time.monotonic() + 60
        while archiver(server)["failed"] < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        state = archiver(server)
        assert state["failed"] >= 2 and state["last"] == first, state
        started = time.monotonic()
        assert server.sql("INSERT INTO _switch VALUES (2); SELECT count(*) FROM _switch") == "3"
        assert time.monotonic() - started < 5                 # the server still serves
        assert spooled(spool) == [first, f"{first}.sha256"]   # no half file left behind
        assert "No space left on device" in (spool / ".refused").read_text()   # for the next job's log

        # by hand: the one-line reason, within seconds
        segment = reachable / "segment"
        segment.write_bytes(b"\0" * SEGMENT)
        started = time.monotonic()
        result = dbpipe("dbpipe-wal-archive", segment, "000000010000000000000099", "--spool", spool,
                        "--max-spool-mb", "0")
        assert time.monotonic() - started < 5
        assert result.returncode == 73
        assert "No space left on device" in last_line(result)

        # room again: PostgreSQL's own retry catches up, nothing lost
        subprocess.run(["mount", "-o", "remount,size=100m", str(small)], check=True)
        second = switch_wal(server)
        wait_archived(server, second)
        assert len([n for n in spooled(spool) if not n.endswith(".sha256")]) >= 3


def test_spool_over_its_limit_is_refused_at_once(archiving_pg, reachable):
    server, spool = archiving_pg
    configure(server, {"archive_command": archive_command(spool, "--max-spool-mb 40")})
    wait_archived(server, switch_wal(server))   # two segments: 32 MiB of 40
    segment = reachable / "segment"
    segment.write_bytes(b"\0" * SEGMENT)
    started = time.monotonic()
    result = dbpipe("dbpipe-wal-archive", segment, "000000010000000000000099", "--spool", spool,
                    "--max-spool-mb", "40", env=bareos_env())
    assert time.monotonic() - started < 5
    assert result.returncode == 75
    assert f"archive spool {spool} is full" in last_line(result)
    assert "the Bareos archive job has not taken the spool" in last_line(result)
    switch_wal(server)
    deadline = time.monotonic() + 30
    while archiver(server)["failed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert archiver(server)["failed"] >= 1
    assert "is full" in (server_log(server))
    assert server.sql("SELECT 1") == "1"


def server_log(server) -> str:
    return open(os.path.join(server.workdir, "server.log"), errors="replace").read()
