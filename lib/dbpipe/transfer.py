"""Moving bytes: the dump tool's output into a framed stream, and a framed
stream from stdin into a loader, in fixed-size chunks (constant memory)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import Cancelled, DataError, IOFailure, NoInputError
from .progress import Progress
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


class Idle:
    """Waiting for input with nobody else to watch: a blocking read does it."""

    def readable(self) -> None:
        pass

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)


IDLE = Idle()


class ReaderWatch(Idle):
    """Waits for the dump tool's output while watching our own output for its
    reader going away.

    When whatever reads us goes away (`dbpipe-dump ... | head`, a killed
    consumer), a blocking read from a stalled dump tool (mariadb-dump waiting
    for a table lock) would notice only at the tool's next write.  (bareos-fd
    25.1 is no such reader: after a cancel it keeps its end open while it
    waits for data - docs/bareos.md.)  poll(2) on the write end of a pipe reports POLLERR as soon as its
    read end is closed (a socket: POLLHUP), and a regular file or /dev/null
    reports neither - so every wait for input is a poll() of both fds, and
    the coalescing pause after a short read (chunks()) is a poll() of ours.
    That is one poll() per read, about a microsecond against the ~100 KiB
    each read brings (docs/benchmark.md)."""

    GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL

    def __init__(self, fd: int, out_fd: int, gone: Callable[[OSError], Exception]):
        self.out_fd, self.gone = out_fd, gone
        self._both, self._out = select.poll(), select.poll()
        self._both.register(fd, select.POLLIN)
        for poller in (self._both, self._out):
            poller.register(out_fd, 0)  # POLLERR and POLLHUP need no asking

    def readable(self) -> None:
        """Until fd has data or its end; raises gone(EPIPE) once out_fd's reader is gone."""
        self._check(self._both.poll())

    def pause(self, seconds: float) -> None:
        self._check(self._out.poll(seconds * 1000))

    def _check(self, ready) -> None:
        for fd, events in ready:
            if fd == self.out_fd and events & self.GONE:
                raise self.gone(BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE)))


def chunks(fd: int, label: str, watch: Idle = IDLE):
    """Yield memoryviews of successive reads; each is valid until the next one.

    Dump tools write 4-8 KiB at a time; reading each piece as it comes costs
    Python more per byte than SHA-256 does.  After a short read from a 1 MiB
    pipe we wait COALESCE_WAIT so the next read takes ~100 KiB or more (20x
    fewer reads, half the relay's CPU, see docs/benchmark.md).  The writer
    never stalls on it: it would have to write 1 MiB within those 2 ms, and
    then our reads are no longer short.  watch: see ReaderWatch.
    """
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    coalesce = _large_pipe(fd)
    while True:
        watch.readable()
        try:
            count = os.readv(fd, [buffer])
        except OSError as exc:
            raise IOFailure(f"cannot read {label}: {exc.strerror}") from None
        if count == 0:
            return
        yield view[:count]
        if coalesce and count < SHORT_READ:
            watch.pause(COALESCE_WAIT)


class PipeTee:
    """tee(2): duplicate what waits in one pipe into another without copying it
    (the kernel hands on references to the same pages).  Python has no os.tee,
    so it comes from libc through ctypes."""

    def __init__(self, function, get_errno):
        self._tee, self._errno = function, get_errno

    @classmethod
    def between(cls, fd: int, out_fd: int) -> PipeTee | None:
        """A PipeTee when both fds are pipes of at least PIPE_SIZE, else None.

        The output pipe must be large too: tee moves at most what fits into it,
        and the coalescing wait after a short read must mean 'the writer was
        slow', not 'the output pipe was small'."""
        enlarge_pipe(out_fd)
        if not (_large_pipe(fd) and _large_pipe(out_fd)):
            return None
        import ctypes  # here: ~3 ms to import, and only a dump into a pipe uses it

        try:
            function = ctypes.CDLL(None, use_errno=True).tee
        except (OSError, AttributeError):
            return None
        function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_uint)
        function.restype = ctypes.c_ssize_t
        return cls(function, ctypes.get_errno)

    def __call__(self, fd: int, out_fd: int, count: int) -> int:
        """Up to count bytes from pipe fd also into pipe out_fd; 0 at the end of fd."""
        while True:
            done = self._tee(fd, out_fd, count, 0)
            if done >= 0:
                return done
            code = self._errno()
            if code != errno.EINTR:  # EINTR: a signal handler has run (a cancel raised)
                raise OSError(code, os.strerror(code))


def teed_chunks(fd: int, out_fd: int, tee: PipeTee, label: str, watch: Idle = IDLE):
    """Like chunks(), but every chunk is already in the pipe out_fd (by tee)
    when it is read: the bytes are copied once, into our buffer to be hashed,
    instead of twice (read, then write)."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        watch.readable()  # tee would block on an empty fd as read does
        try:
            count = tee(fd, out_fd, CHUNK)
        except OSError as exc:
            raise StreamWriter.write_error(exc) from None
        if count == 0:
            return
        got = 0
        while got < count:  # the teed bytes are waiting in fd: this never blocks
            try:
                got += os.readv(fd, [view[got:count]])
            except OSError as exc:
                raise IOFailure(f"cannot read {label}: {exc.strerror}") from None
        yield view[:count]
        if count < SHORT_READ:
            watch.pause(COALESCE_WAIT)  # as in chunks()


@dataclass
class CopiedDump:
    head: bytes
    tail: bytes
    count: int


def copy_dump(fd: int, writer: StreamWriter, progress: Progress,
              observer: Callable[[memoryview], None] | None = None) -> CopiedDump:
    """Copy the dump tool's stdout into the stream, keeping its first and last bytes
    for the version and completeness checks; observer sees every chunk.

    Into a pipe (Bareos, a shell pipeline) the bytes go by tee(2) and are only
    read to be hashed; into anything else by read and write.  A reader of
    writer.fd that goes away while the tool is silent ends the copy at once
    (ReaderWatch), with the error a write into its closed pipe gets."""
    enlarge_pipe(fd)
    label = "the dump tool's output"
    tee = PipeTee.between(fd, writer.fd)
    watch = ReaderWatch(fd, writer.fd, writer.error)
    if tee is not None:
        source, account = teed_chunks(fd, writer.fd, tee, label, watch), writer.wrote
    else:
        source, account = chunks(fd, label, watch), writer.write
    head = bytearray()
    tail = b""
    count = 0
    for chunk in source:
        if observer is not None:
            observer(chunk)
        if len(head) < HEAD_KEPT:
            head += chunk[: HEAD_KEPT - len(head)]
        tail = (tail + bytes(chunk[-TAIL_KEPT:]))[-TAIL_KEPT:]
        count += len(chunk)
        account(chunk)
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
                    for piece in self.verifier.pieces(chunk):
                        self._forward(sink, piece)
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
