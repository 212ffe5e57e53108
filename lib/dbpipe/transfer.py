"""Moving bytes: the dump tool's output into a framed stream, and a framed
stream from stdin into a loader, in fixed-size chunks (constant memory)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from dataclasses import dataclass
from typing import Callable

from .errors import Cancelled, DataError, IOFailure, NoInputError
from .log import Progress
from .stream import Header, StreamVerifier, StreamWriter, Trailer, write_all

CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
HEAD_KEPT = 4096
TAIL_KEPT = 4096
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)
SHORT_READ = CHUNK // 4
COALESCE_WAIT = 0.002


def enlarge_pipe(fd: int) -> None:
    """Fewer, larger reads: ask for a 1 MiB pipe buffer (best effort)."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)


def _large_pipe(fd: int) -> bool:
    try:
        return fcntl.fcntl(fd, F_GETPIPE_SZ) >= PIPE_SIZE
    except OSError:
        return False  # not a pipe


def chunks(fd: int, label: str):
    """Yield memoryviews of successive reads; each is valid until the next one.

    Dump tools write 4-8 KiB at a time; reading each piece as it comes costs
    Python more per byte than SHA-256 does.  After a short read from a 1 MiB
    pipe we wait COALESCE_WAIT so the next read takes ~100 KiB or more (20x
    fewer reads, half the relay's CPU, see docs/benchmark.md).  The writer
    never stalls on it: it would have to write 1 MiB within those 2 ms, and
    then our reads are no longer short.
    """
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    coalesce = _large_pipe(fd)
    while True:
        try:
            count = os.readv(fd, [buffer])
        except OSError as exc:
            raise IOFailure(f"cannot read {label}: {exc.strerror}") from None
        if count == 0:
            return
        yield view[:count]
        if coalesce and count < SHORT_READ:
            time.sleep(COALESCE_WAIT)


@dataclass
class CopiedDump:
    head: bytes
    tail: bytes
    count: int


def copy_dump(fd: int, writer: StreamWriter, progress: Progress,
              observer: Callable[[memoryview], None] | None = None) -> CopiedDump:
    """Copy the dump tool's stdout into the stream, keeping its first and last bytes
    for the version and completeness checks; observer sees every chunk first."""
    enlarge_pipe(fd)
    head = bytearray()
    tail = b""
    count = 0
    for chunk in chunks(fd, "the dump tool's output"):
        if observer is not None:
            observer(chunk)
        if len(head) < HEAD_KEPT:
            head += chunk[: HEAD_KEPT - len(head)]
        tail = (tail + bytes(chunk[-TAIL_KEPT:]))[-TAIL_KEPT:]
        count += len(chunk)
        writer.write(chunk)
        progress.update(writer.count)
    progress.done()
    return CopiedDump(bytes(head), tail, count)


class Pump:
    """Reads a dbpipe stream from fd to its end, verifying it while the payload
    flows into a sink.  A sink that fails (the loader died) stops receiving,
    but reading goes on to the end: bpipe reports 'Broken pipe' otherwise."""

    def __init__(self, fd: int, label: str = "stdin", progress: Progress | None = None,
                 observer: Callable[[bytes], None] | None = None):
        self.fd = fd
        self.observer = observer
        self.label = label
        self.verifier = StreamVerifier()
        self.progress = progress or Progress("restore")
        self.sink_error: OSError | None = None
        self._chunks = chunks(fd, label)
        self._pending: list[bytes] = []
        self._at_eof = False
        enlarge_pipe(fd)

    def header(self) -> Header | None:
        """The stream's header, reading only as far as needed (None: empty input)."""
        while self.verifier.header is None and not self._at_eof:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._at_eof = True
                break
            self._pending.append(self.verifier.feed(chunk))
        return self.verifier.header

    def require_header(self, what: str = "stream") -> Header:
        """The header, or the error for input that has none: empty (66) or cut
        off inside its first line (65)."""
        header = self.header()
        if header is not None:
            return header
        if self.verifier.total_bytes:
            raise DataError("truncated stream: no complete dbpipe header")
        raise NoInputError(f"empty input: no {what}")

    @contextlib.contextmanager
    def draining(self):
        """Whatever fails inside, read the input to its end before raising (a
        bpipe writer that stops reading makes Bareos report 'Broken pipe'
        instead of our error).  A cancel is the exception: leave at once."""
        try:
            yield self
        except Cancelled:
            raise
        except BaseException:
            self.drain()
            raise

    def run(self, sink: Callable[[bytes], None]) -> Trailer:
        """Forward the whole payload to sink and return the verified trailer.

        Raises DataError/NoInputError for a bad stream, after reading it to the end.
        """
        self.header()
        for data in self._pending:
            self._forward(sink, data)
        self._pending.clear()
        stream_error = None
        for chunk in self._remaining():
            if stream_error is None:
                try:
                    self._forward(sink, self.verifier.feed(chunk))
                except DataError as exc:
                    stream_error = exc
        if stream_error is not None:
            raise stream_error
        tail, trailer = self.verifier.finish()
        self._forward(sink, tail)
        return trailer

    def _remaining(self):
        if self._at_eof:
            return
        for chunk in self._chunks:
            self.progress.update(self.verifier.total_bytes)
            yield chunk
        self._at_eof = True
        self.progress.done()

    def _forward(self, sink, data) -> None:
        if data and self.observer is not None:
            self.observer(data)
        self.send(sink, data)

    def send(self, sink, data) -> None:
        """Give the sink bytes of our own (e.g. SQL around the payload); a failing
        sink is recorded like a failure during the payload."""
        if data and self.sink_error is None:
            try:
                sink(data)
            except OSError as exc:
                self.sink_error = exc

    def drain(self) -> None:
        """Read and discard the rest of the input (never raises, except on cancel)."""
        try:
            for _ in self._remaining():
                pass
        except Cancelled:
            raise
        except Exception:  # noqa: BLE001 - draining is best effort by design
            pass


def relay(in_fd: int, out_fd: int, label: str) -> Trailer:
    """Pass a stored stream on unchanged (header, payload, trailer), checking
    it on the way: a stream that turns out damaged raises after the last
    byte, so the consumer (a bpipe job) fails instead of storing it as good."""
    verifier = StreamVerifier()
    for chunk in chunks(in_fd, label):
        verifier.feed(chunk)
        try:
            write_all(out_fd, chunk)
        except BrokenPipeError:
            raise IOFailure("stdout was closed before the stream was complete") from None
        except OSError as exc:
            raise IOFailure(f"cannot write to stdout: {exc.strerror}") from None
    return verifier.finish()[1]
