"""The dump relay: into a pipe the bytes go by tee(2), into a file by read and
write - the stream must be the same byte for byte, and a reader that goes away
must still be a clean 'stdout was closed' (exit 74)."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time

import pytest

from dbpipe.errors import IOFailure
from dbpipe.progress import Progress
from dbpipe.stream import Header, StreamWriter
from dbpipe.transfer import PipeTee, copy_dump, enlarge_pipe

HEADER = Header("mysql", "database", "nextcloud")
# a dump tool writes in small pieces of uneven size; 3 MiB crosses many 1 MiB chunks
DUMP = b"".join(b"INSERT INTO t VALUES (%d, 'row %d');\n" % (i, i) for i in range(90000))


def feed_pipe(data: bytes, piece: int = 8191):
    """The read end of a pipe a thread fills with data, like a dump tool's stdout."""
    read_fd, write_fd = os.pipe()
    enlarge_pipe(read_fd)  # as copy_dump does

    def write():
        with open(write_fd, "wb", buffering=0) as out, contextlib.suppress(BrokenPipeError):
            for start in range(0, len(data), piece):
                out.write(data[start:start + piece])

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return read_fd, thread


def relay_into_pipe(data: bytes) -> tuple[bytes, bool]:
    """copy_dump into a pipe read by a thread (the file daemon); (stream, tee used)."""
    source, feeder = feed_pipe(data)
    out_read, out_write = os.pipe()
    received = []
    reader = threading.Thread(target=lambda: received.append(_read_all(out_read)), daemon=True)
    reader.start()
    teed = PipeTee.between(source, out_write) is not None
    writer = StreamWriter(out_write, HEADER)
    copy_dump(source, writer, Progress("test"))
    writer.finish("10.11", "2024-05-01T12:00:00Z")
    os.close(out_write)
    reader.join(10)
    feeder.join(10)
    os.close(source)
    os.close(out_read)
    return received[0], teed


def relay_into_file(data: bytes) -> bytes:
    source, feeder = feed_pipe(data)
    with tempfile.TemporaryFile() as handle:
        writer = StreamWriter(handle.fileno(), HEADER)
        copy_dump(source, writer, Progress("test"))
        writer.finish("10.11", "2024-05-01T12:00:00Z")
        handle.seek(0)
        stored = handle.read()
    feeder.join(10)
    os.close(source)
    return stored


def _read_all(fd: int) -> bytes:
    parts = []
    while True:
        data = os.read(fd, 1 << 20)
        if not data:
            return b"".join(parts)
        parts.append(data)


@pytest.mark.parametrize("data", [DUMP, b"x", DUMP[:4096 * 3 + 17]])
def test_tee_into_a_pipe_gives_the_same_stream_as_read_and_write_into_a_file(data):
    teed, used_tee = relay_into_pipe(data)
    assert used_tee
    assert teed == relay_into_file(data)
    assert teed[len(HEADER.encode()):].startswith(data)


def test_a_reader_that_goes_away_is_stdout_closed_74():
    source, feeder = feed_pipe(DUMP)
    out_read, out_write = os.pipe()
    writer = StreamWriter(out_write, HEADER)
    assert PipeTee.between(source, out_write) is not None
    os.close(out_read)  # the file daemon is gone
    with pytest.raises(IOFailure, match="stdout was closed before the dump was complete") as caught:
        copy_dump(source, writer, Progress("test"))
    assert caught.value.code == 74
    os.close(out_write)
    os.close(source)  # the feeder's next write fails: it stops
    feeder.join(10)


# --- a reader that goes away while the dump tool is silent ------------------------------------

def stalling_pipe(data: bytes, stall_at: int, release: threading.Event):
    """A dump tool that writes data[:stall_at], then is silent until release is
    set (a table lock), then writes the rest."""
    read_fd, write_fd = os.pipe()
    enlarge_pipe(read_fd)

    def write():
        with open(write_fd, "wb", buffering=0) as out, contextlib.suppress(BrokenPipeError):
            out.write(data[:stall_at])
            release.wait(30)
            out.write(data[stall_at:])

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return read_fd, thread


def output(kind: str):
    """(our end, the reader's end): a pipe (copy by tee) or a socket (read and write)."""
    if kind == "pipe":
        return os.pipe()[::-1]
    ours, theirs = socket.socketpair()
    return ours.detach(), theirs.detach()


@pytest.mark.parametrize("kind", ["pipe", "socket"])
def test_a_reader_that_goes_away_while_the_tool_is_silent_ends_the_copy_at_once(kind):
    release = threading.Event()
    source, feeder = stalling_pipe(DUMP, 100_000, release)
    ours, theirs = output(kind)
    writer = StreamWriter(ours, HEADER)
    assert (PipeTee.between(source, ours) is not None) == (kind == "pipe")

    def file_daemon():  # reads what the tool wrote before its stall, then the job is cancelled
        got = 0
        while got < 100_000:
            got += len(os.read(theirs, 1 << 20))
        time.sleep(0.2)
        os.close(theirs)

    threading.Thread(target=file_daemon, daemon=True).start()
    threading.Timer(10, release.set).start()  # without the watch: 74 only once the tool writes again
    started = time.monotonic()
    with pytest.raises(IOFailure, match="stdout was closed before the dump was complete") as caught:
        copy_dump(source, writer, Progress("test"))
    assert caught.value.code == 74
    assert time.monotonic() - started < 2, "the copy waited for the dump tool"
    release.set()
    feeder.join(10)
    os.close(ours)
    os.close(source)


def test_a_silent_tool_writing_into_a_file_is_waited_for():
    """A regular file always polls writable: the watch must not take it for a reader gone."""
    release = threading.Event()
    source, feeder = stalling_pipe(DUMP, 100_000, release)
    threading.Timer(0.5, release.set).start()
    with tempfile.TemporaryFile() as handle:
        writer = StreamWriter(handle.fileno(), HEADER)
        copy_dump(source, writer, Progress("test"))
        handle.seek(0)
        assert handle.read() == HEADER.encode() + DUMP
    feeder.join(10)
    os.close(source)
