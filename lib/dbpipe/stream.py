"""The dbpipe stream format: plain SQL framed by one header line and a trailer.

    -- dbpipe-stream 1 engine=mysql scope=database database=nextcloud
    <the dump tool's output, unchanged>
    -- dbpipe-trailer 1
    -- engine: mysql
    -- ...
    -- bytes: 123456
    -- sha256: <hex>
    -- trailer-sha256: <hex of the trailer lines above>
    -- dbpipe-trailer-end

Everything is SQL comments around the tool's output, so the stock client still
loads the stream by hand.  ``bytes`` and ``sha256`` cover the payload: every
byte before the trailer, header line included.  ``trailer-sha256`` covers the
trailer lines above it, so no byte of a stored stream can change unnoticed
(not even the creation time).  The reader writes the trailer only after the
dump tool succeeded, so a stream without a valid trailer is by definition
incomplete.  Values are percent-encoded: a database name cannot
break a line.
"""

from __future__ import annotations

import hashlib
import os
import string
from dataclasses import dataclass, field

from .errors import CantCreateError, DataError, DbpipeError, IOFailure, NoInputError

FORMAT_VERSION = "1"
HEADER_PREFIX = b"-- dbpipe-stream "
TRAILER_START = b"-- dbpipe-trailer " + FORMAT_VERSION.encode() + b"\n"
TRAILER_END = b"-- dbpipe-trailer-end\n"
TRAILER_SUM = b"-- trailer-sha256: "
MAX_TRAILER = 8192
MAX_HEADER = 4096
SCOPES = ("database", "all")
UNQUOTED = frozenset(string.ascii_letters + string.digits + "_.-~" + "/@+,:()")


def _enc(value: str) -> str:
    """Percent-encode like urllib.parse.quote(value, safe="/@+,.:-_~()"), written
    out because importing urllib.parse costs every dump ~5 ms of start-up."""
    return "".join(chr(byte) if chr(byte) in UNQUOTED else f"%{byte:02X}" for byte in value.encode())


def _dec(value: str) -> str:
    if "%" not in value:
        return value
    import urllib.parse  # only a value with an escape needs it (see _enc)

    return urllib.parse.unquote(value, errors="strict")


@dataclass(frozen=True)
class Header:
    """What a restore must know before the first byte is loaded."""

    engine: str
    scope: str = "database"
    database: str = ""

    def encode(self) -> bytes:
        fields = f"engine={_enc(self.engine)} scope={self.scope} database={_enc(self.database)}"
        return HEADER_PREFIX + f"{FORMAT_VERSION} {fields}\n".encode()

    @classmethod
    def decode(cls, line: bytes) -> "Header":
        if not line.startswith(HEADER_PREFIX):
            raise DataError("not a dbpipe stream: the first line is not a dbpipe header")
        try:
            version, *pairs = line[len(HEADER_PREFIX):].decode("ascii").split()
            values = dict(pair.split("=", 1) for pair in pairs)
            header = cls(_dec(values["engine"]), values["scope"], _dec(values["database"]))
        except (UnicodeError, ValueError, KeyError):
            raise DataError("malformed dbpipe header line") from None
        if version != FORMAT_VERSION:
            raise DataError(f"unsupported dbpipe stream format {version!r}")
        if header.scope not in SCOPES:
            raise DataError(f"malformed dbpipe header: unknown scope {header.scope!r}")
        return header


@dataclass(frozen=True)
class Trailer:
    engine: str
    database: str
    scope: str
    server_version: str
    created: str
    bytes: int
    sha256: str
    extra: dict = field(default_factory=dict)

    ORDER = ("engine", "server-version", "database", "scope", "created")

    def encode(self) -> bytes:
        lines = [TRAILER_START]
        known = {"engine": self.engine, "server-version": self.server_version,
                 "database": self.database, "scope": self.scope, "created": self.created}
        for key, value in list(known.items()) + sorted(self.extra.items()):
            lines.append(f"-- {key}: {_enc(value)}\n".encode())
        lines.append(f"-- bytes: {self.bytes}\n-- sha256: {self.sha256}\n".encode())
        summed = b"".join(lines)
        return summed + _trailer_sum(summed) + TRAILER_END

    @classmethod
    def decode(cls, data: bytes) -> "Trailer":
        if not data.endswith(TRAILER_END):
            raise DataError("incomplete stream: the trailer is cut off (the backup was truncated)")
        if not data.startswith(TRAILER_START):
            raise DataError("malformed trailer")
        summed_end = data.rfind(b"\n" + TRAILER_SUM) + 1
        if summed_end <= 0:
            raise DataError("malformed trailer")
        if data[summed_end:-len(TRAILER_END)] != _trailer_sum(data[:summed_end]):
            raise DataError("trailer checksum mismatch: the trailer is corrupted")
        body = data[len(TRAILER_START):summed_end]
        values = {}
        try:
            for line in body.decode("ascii").splitlines():
                key, value = line.removeprefix("-- ").split(": ", 1)
                values[key] = _dec(value)
            known = {key: values.pop(key) for key in cls.ORDER}
            count, digest = int(values.pop("bytes")), values.pop("sha256")
        except (UnicodeError, ValueError, KeyError):
            raise DataError("malformed trailer") from None
        if len(digest) != 64 or count < 0:
            raise DataError("malformed trailer")
        return cls(known["engine"], known["database"], known["scope"], known["server-version"],
                   known["created"], count, digest, values)

    def header(self) -> Header:
        return Header(self.engine, self.scope, self.database)


def _trailer_sum(summed: bytes) -> bytes:
    """The trailer's last line: SHA-256 of the trailer lines before it."""
    return TRAILER_SUM + hashlib.sha256(summed).hexdigest().encode() + b"\n"


def write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class StreamWriter:
    """Frames a dump: header, payload (hashed and counted as it passes), trailer."""

    def __init__(self, fd: int, header: Header, name: str | None = None):
        self.fd = fd
        self.name = name          # the file written to; None: stdout
        self.header = header
        self.sha = hashlib.sha256()
        self.count = 0
        self.last_byte = b"\n"
        self.write(header.encode())

    def write(self, data) -> None:
        if not data:
            return
        self.wrote(data)
        try:
            write_all(self.fd, data)
        except OSError as exc:
            raise self.error(exc) from None

    def wrote(self, data) -> None:
        """Account for payload that reached fd another way (tee(2), see transfer.py)."""
        self.sha.update(data)
        self.count += len(data)
        self.last_byte = bytes(data[-1:]) or self.last_byte

    def error(self, exc: OSError) -> DbpipeError:
        """A failed write into a file is a file that could not be made (exit
        73, naming it, as the docs say); into stdout, an I/O error (74)."""
        if self.name is not None:
            return CantCreateError(f"cannot write {self.name}: {exc.strerror}")
        return self.write_error(exc)

    @staticmethod
    def write_error(exc: OSError) -> IOFailure:
        if isinstance(exc, BrokenPipeError):
            return IOFailure("stdout was closed before the dump was complete")
        return IOFailure(f"cannot write to stdout: {exc.strerror}")

    def finish(self, server_version: str, created: str, extra: dict | None = None) -> Trailer:
        if self.last_byte != b"\n":
            self.write(b"\n")
        trailer = Trailer(self.header.engine, self.header.database, self.header.scope,
                          server_version, created, self.count, self.sha.hexdigest(), extra or {})
        try:
            write_all(self.fd, trailer.encode())
        except OSError as exc:
            if self.name is not None:
                raise self.error(exc) from None
            raise IOFailure(f"cannot write the trailer: {exc.strerror}") from None
        return trailer


class StreamVerifier:
    """Checks a stream while it passes through, holding back its last bytes.

    ``feed`` returns the bytes that are certainly payload and may be forwarded;
    ``finish`` finds the trailer in what was held back and checks length and
    SHA-256.  Until ``finish`` succeeds nothing may be committed.
    """

    def __init__(self):
        self.sha = hashlib.sha256()
        self.payload_bytes = 0
        self.total_bytes = 0
        self.header: Header | None = None
        self.trailer_bytes = b""
        self._held = bytearray()

    def feed(self, chunk) -> bytes:
        return b"".join(self.pieces(chunk))

    def pieces(self, chunk) -> tuple:
        """Like feed, as one or two pieces without copying the large one: a
        1 MiB chunk gives the bytes held back from before, then a slice of chunk
        itself (a memoryview chunk's piece is valid as long as chunk is)."""
        self.total_bytes += len(chunk)
        if self.header is not None and len(chunk) > MAX_TRAILER:
            # the usual 1 MiB read: all but its last MAX_TRAILER bytes are payload.
            # No copy of it, and no resizing of a large bytearray (appending to and
            # cutting from one cost more system time than SHA-256 costs CPU: bench/)
            cut = len(chunk) - MAX_TRAILER
            held, self._held = bytes(self._held), bytearray(chunk[cut:])
            return self._payload(held, chunk[:cut])
        self._held += chunk
        if self.header is None:
            self._parse_header()
        if len(self._held) <= MAX_TRAILER:
            return ()
        cut = len(self._held) - MAX_TRAILER
        with memoryview(self._held) as view:
            out = bytes(view[:cut])  # one copy; a bytearray slice would make two
        del self._held[:cut]
        return self._payload(out)

    def _payload(self, *pieces) -> tuple:
        for piece in pieces:
            self.sha.update(piece)
            self.payload_bytes += len(piece)
        return pieces

    def _parse_header(self) -> None:
        newline = self._held.find(b"\n", 0, MAX_HEADER)
        if newline >= 0:
            self.header = Header.decode(bytes(self._held[: newline + 1]))
        elif len(self._held) >= MAX_HEADER or not self._held.startswith(
                HEADER_PREFIX[: len(self._held)]):
            raise DataError("not a dbpipe stream: the first line is not a dbpipe header")

    def finish(self) -> tuple[bytes, Trailer]:
        """The remaining payload bytes and the verified trailer."""
        if self.total_bytes == 0:
            raise NoInputError("empty input: no stream")
        if self.header is None:
            raise DataError("truncated stream: no complete dbpipe header")
        held = bytes(self._held)
        start = held.rfind(b"\n" + TRAILER_START)
        if start < 0:
            raise DataError(
                f"incomplete stream: no dbpipe trailer after {self.total_bytes} bytes "
                "(the backup was truncated or the dump failed)")
        tail, trailer_bytes = held[: start + 1], held[start + 1:]
        trailer = Trailer.decode(trailer_bytes)
        self.sha.update(tail)
        self.payload_bytes += len(tail)
        if trailer.bytes != self.payload_bytes:
            raise DataError(f"stream length mismatch: trailer says {trailer.bytes} bytes, "
                            f"got {self.payload_bytes}")
        if trailer.sha256 != self.sha.hexdigest():
            raise DataError("stream checksum mismatch: SHA-256 of the payload differs from "
                            "the trailer (the backup is corrupted)")
        if trailer.header() != self.header:
            raise DataError("stream header and trailer disagree")
        self.trailer_bytes = trailer_bytes
        return tail, trailer


def read_ends(path: str, expected: Header, kind: str) -> tuple[int, Trailer]:
    """(header length, trailer) of a stream stored as a file, without reading
    its payload: listing a chain or an archive must not read gigabytes.  The
    payload's SHA-256 is checked later, when it is read anyway."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(MAX_HEADER)
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - MAX_TRAILER - len(TRAILER_START) - 1))
            tail = handle.read()
    except FileNotFoundError:
        raise NoInputError(f"{path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    newline = head.find(b"\n")
    if not head.startswith(HEADER_PREFIX) or newline < 0:
        raise DataError(f"{path}: not a dbpipe stream")
    if Header.decode(head[: newline + 1]) != expected:
        raise DataError(f"{path}: not a {kind}")
    start = tail.rfind(b"\n" + TRAILER_START)
    if start < 0:
        raise DataError(f"{path}: incomplete stream, no dbpipe trailer (truncated {kind})")
    try:
        return newline + 1, Trailer.decode(tail[start + 1:])
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
