"""The stream format: what the writer produces, what the verifier accepts, and
every way a stream can be damaged (each must be refused with exit 65, or 66
for no input at all)."""

from __future__ import annotations

import hashlib
import os
import tempfile

import pytest

from dbpipe.errors import DataError, ExitCode, IOFailure, NoInputError
from dbpipe.stream import (MAX_HEADER, MAX_TRAILER, TRAILER_END, TRAILER_START, TRAILER_SUM,
                           Header, StreamVerifier, StreamWriter, Trailer)

PAYLOAD = b"".join(b"INSERT INTO t VALUES (%d, 'row %d \\'x\\' \xf0\x9f\x93\x81');\n" % (i, i)
                   for i in range(300))
CREATED = "2024-05-01T12:00:00Z"


def make_stream(payload: bytes = PAYLOAD, header: Header | None = None, extra=None,
                server_version: str = "10.11.6-MariaDB") -> bytes:
    """A real stream, produced by the writer dbpipe-dump uses."""
    with tempfile.TemporaryFile() as handle:
        writer = StreamWriter(handle.fileno(), header or Header("mysql", "database", "nextcloud"))
        for start in range(0, len(payload), 1000):
            writer.write(payload[start:start + 1000])
        writer.finish(server_version, CREATED, extra if extra is not None else {"tool": "mariadb-dump"})
        handle.seek(0)
        return handle.read()


def verify(data: bytes, chunk: int | None = None):
    """Feed data to a verifier; returns (forwarded payload, trailer) or raises."""
    verifier = StreamVerifier()
    forwarded = bytearray()
    step = chunk or max(len(data), 1)
    for start in range(0, len(data), step):
        forwarded += verifier.feed(data[start:start + step])
    tail, trailer = verifier.finish()
    forwarded += tail
    assert verifier.trailer_bytes + bytes(forwarded) != b""  # keep trailer_bytes exercised
    return bytes(forwarded), trailer


STREAM = make_stream()
TRAILER_AT = STREAM.rindex(TRAILER_START)
HEADER_END = STREAM.index(b"\n") + 1


# --- what a good stream looks like ------------------------------------------------

def test_stream_is_header_payload_trailer_of_sql_comments():
    header = Header("mysql", "database", "nextcloud").encode()
    assert STREAM.startswith(header)
    assert STREAM[len(header):TRAILER_AT] == PAYLOAD
    trailer_lines = STREAM[TRAILER_AT:].decode("ascii").splitlines()
    assert all(line.startswith("-- ") for line in trailer_lines)
    assert trailer_lines[0] == "-- dbpipe-trailer 1" and trailer_lines[-1] == "-- dbpipe-trailer-end"
    assert header.startswith(b"-- ") and header.count(b"\n") == 1


@pytest.mark.parametrize("chunk", [1, 7, 4096, MAX_TRAILER, MAX_TRAILER + 1, 1 << 20])
def test_verifier_forwards_exactly_the_payload_whatever_the_chunking(chunk):
    forwarded, trailer = verify(STREAM, chunk)
    assert forwarded == STREAM[:TRAILER_AT]
    assert trailer.bytes == TRAILER_AT
    assert (trailer.engine, trailer.database, trailer.scope) == ("mysql", "nextcloud", "database")
    assert trailer.server_version == "10.11.6-MariaDB" and trailer.created == CREATED
    assert trailer.extra == {"tool": "mariadb-dump"}


def test_forwarded_bytes_never_include_the_last_bytes_before_finish():
    """Nothing of the possibly-trailer region reaches a loader before finish()."""
    verifier = StreamVerifier()
    forwarded = verifier.feed(STREAM)
    assert len(forwarded) == len(STREAM) - MAX_TRAILER
    assert TRAILER_START not in forwarded


def test_payload_without_final_newline_gets_one_so_the_trailer_stays_a_comment():
    data = make_stream(b"SELECT 1;")
    forwarded, trailer = verify(data)
    assert forwarded.endswith(b"SELECT 1;\n")
    assert data[len(forwarded):].startswith(TRAILER_START)


def test_empty_payload_is_a_valid_stream():
    forwarded, trailer = verify(make_stream(b""))
    assert forwarded == Header("mysql", "database", "nextcloud").encode()
    assert trailer.bytes == len(forwarded)


@pytest.mark.parametrize("name", ["my db", "a'b\"c`d;$(x)", "line\nbreak", "x=y z=%41",
                                  "Zürich 📁", "/srv/nextcloud/data/owncloud.db", ""])
def test_any_database_name_survives_header_and_trailer(name):
    header = Header("pgsql", "database", name)
    encoded = header.encode()
    assert encoded.count(b"\n") == 1 and encoded.isascii()
    assert Header.decode(encoded) == header
    _, trailer = verify(make_stream(header=header, extra={"note": "x: y\nz"}))
    assert trailer.database == name and trailer.extra == {"note": "x: y\nz"}


@pytest.mark.parametrize("value", ["nextcloud", "my db", "a'b\"c`d;$(x)%", "line\nbreak", "x=y z=%41",
                                   "Zürich 📁", "/srv/nc/o.db", "15.4 (Debian 15.4-1)", "", "~_.-/@+,:()"])
def test_percent_encoding_is_urllib_quote(value):
    import urllib.parse

    from dbpipe.stream import _dec, _enc

    assert _enc(value) == urllib.parse.quote(value, safe="/@+,.:-_~()")
    assert _dec(_enc(value)) == value


def test_all_databases_scope():
    header = Header("pgsql", "all", "")
    _, trailer = verify(make_stream(header=header))
    assert trailer.header() == header


# --- no input, truncation ------------------------------------------------------------

def test_empty_input_is_no_input_66():
    with pytest.raises(NoInputError) as caught:
        verify(b"")
    assert caught.value.code == ExitCode.NOINPUT == 66


def test_every_prefix_of_a_stream_is_refused():
    """The dense truncation sweep: every cut point, header to last byte."""
    for cut in range(1, len(STREAM)):
        with pytest.raises(DataError) as caught:
            verify(STREAM[:cut])
        assert caught.value.code == 65, cut
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("cut, message", [
    (5, "no complete dbpipe header"),
    (HEADER_END - 1, "no complete dbpipe header"),
    (HEADER_END, "no dbpipe trailer"),
    (TRAILER_AT - 1, "no dbpipe trailer"),
    (TRAILER_AT + len(TRAILER_START) + 3, "trailer is cut off"),
    (len(STREAM) - 1, "trailer is cut off"),
])
def test_truncation_messages_say_what_is_missing(cut, message):
    with pytest.raises(DataError, match=message):
        verify(STREAM[:cut])


def test_payload_removed_from_the_middle_is_a_length_mismatch():
    damaged = STREAM[:1000] + STREAM[1100:]
    with pytest.raises(DataError, match="length mismatch"):
        verify(damaged)


# --- corruption ------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["header", "payload", "trailer"])
def test_one_flipped_byte_anywhere_is_detected(where):
    positions = {
        "header": range(0, HEADER_END),
        "payload": range(HEADER_END, TRAILER_AT),
        "trailer": range(TRAILER_AT, len(STREAM)),
    }[where]
    for position in positions:
        damaged = bytearray(STREAM)
        damaged[position] ^= 0x01
        with pytest.raises(DataError):
            verify(bytes(damaged))


def test_a_flipped_byte_in_informational_trailer_fields_is_detected_too():
    for field in (b"10.11.6-MariaDB", CREATED.encode(), b"mariadb-dump"):
        at = STREAM.rindex(field)
        damaged = STREAM[:at] + b"X" + STREAM[at + 1:]
        with pytest.raises(DataError, match="trailer checksum mismatch"):
            verify(damaged)


def test_checksum_mismatch_message():
    damaged = bytearray(STREAM)
    damaged[HEADER_END + 10] ^= 0x20
    with pytest.raises(DataError, match="checksum mismatch"):
        verify(bytes(damaged))


def test_trailer_that_names_another_database_than_the_header_is_refused():
    header_a = Header("mysql", "database", "a").encode()
    other = make_stream(header=Header("mysql", "database", "b"))
    # a correctly summed stream whose header was swapped: sha covers the header
    swapped = header_a + other[len(Header("mysql", "database", "b").encode()):]
    with pytest.raises(DataError):
        verify(swapped)
    # a trailer forged with the right length and checksum but another name
    good = make_stream(header=Header("mysql", "database", "a"))
    trailer = Trailer.decode(good[good.rindex(TRAILER_START):])
    forged = Trailer("mysql", "b", "database", trailer.server_version, trailer.created,
                     trailer.bytes, trailer.sha256, trailer.extra)
    with pytest.raises(DataError, match="header and trailer disagree"):
        verify(good[:good.rindex(TRAILER_START)] + forged.encode())


def test_garbage_after_the_trailer_is_refused():
    with pytest.raises(DataError):
        verify(STREAM + b"SELECT 1;\n")


def test_two_streams_back_to_back_are_refused():
    with pytest.raises(DataError):
        verify(STREAM + STREAM)


def test_plain_sql_without_header_is_refused_at_once():
    verifier = StreamVerifier()
    with pytest.raises(DataError, match="not a dbpipe stream"):
        verifier.feed(b"-- MariaDB dump 10.19\nCREATE TABLE x (a int);\n")


def test_endless_first_line_is_refused():
    verifier = StreamVerifier()
    with pytest.raises(DataError, match="not a dbpipe stream"):
        verifier.feed(b"-- dbpipe-stream 1 engine=mysql " + b"x" * MAX_HEADER)


@pytest.mark.parametrize("line, message", [
    (b"-- MariaDB dump\n", "not a dbpipe stream"),
    (b"-- dbpipe-stream 2 engine=mysql scope=database database=x\n", "unsupported dbpipe stream format"),
    (b"-- dbpipe-stream 1 engine=mysql scope=cluster database=x\n", "unknown scope"),
    (b"-- dbpipe-stream 1 engine=mysql database=x\n", "malformed"),
    (b"-- dbpipe-stream 1 engine=mysql scope=database\n", "malformed"),
    (b"-- dbpipe-stream 1 engine=mysql scope=database database=x junk\n", "malformed"),
    (b"-- dbpipe-stream 1 engine=mysql scope=database database=\xc3\xa4\n", "malformed"),
    (b"-- dbpipe-stream 1 engine=mysql scope=database database=%ff\n", "malformed"),
    (b"-- dbpipe-stream \n", "malformed"),
])
def test_malformed_header_lines(line, message):
    with pytest.raises(DataError, match=message):
        Header.decode(line)


def _trailer_text(**changes) -> bytes:
    lines = {"engine": "mysql", "server-version": "10.11", "database": "nc", "scope": "database",
             "created": CREATED, "bytes": "75", "sha256": "a" * 64}
    lines.update(changes)
    body = "".join(f"-- {key}: {value}\n" for key, value in lines.items() if value is not None)
    return _summed(TRAILER_START + body.encode())


def _summed(lines: bytes) -> bytes:
    """Trailer lines plus a correct self-checksum, so the parser gets to see them."""
    return lines + TRAILER_SUM + hashlib.sha256(lines).hexdigest().encode() + b"\n" + TRAILER_END


@pytest.mark.parametrize("data, message", [
    (_trailer_text()[:-1], "cut off"),
    (b"-- dbpipe-trailer 2\n" + _trailer_text()[len(TRAILER_START):], "malformed trailer"),
    (TRAILER_START + b"-- engine: mysql\n" + TRAILER_END, "malformed trailer"),
    (_trailer_text().replace(b"-- bytes: 75", b"-- bytes: 76"), "trailer checksum mismatch"),
    (_trailer_text(bytes="12x"), "malformed trailer"),
    (_trailer_text(bytes="-1"), "malformed trailer"),
    (_trailer_text(bytes=None), "malformed trailer"),
    (_trailer_text(sha256="a" * 63), "malformed trailer"),
    (_trailer_text(sha256=None), "malformed trailer"),
    (_trailer_text(engine=None), "malformed trailer"),
    (_trailer_text(created=None), "malformed trailer"),
    (_trailer_text(database="%zz%ff"), "malformed trailer"),
    (_trailer_text(database="ä"), "malformed trailer"),
    (_summed(TRAILER_START + b"-- engine mysql\n"), "malformed trailer"),
])
def test_malformed_trailers(data, message):
    with pytest.raises(DataError, match=message):
        Trailer.decode(data)


def test_trailer_round_trip_keeps_extra_fields():
    trailer = Trailer("sqlite", "/srv/x y.db", "database", "3.40.1", CREATED, 12, "b" * 64,
                      {"tool": "sqlite3", "bareos-job-id": "42"})
    assert Trailer.decode(trailer.encode()) == trailer


def test_a_stream_of_another_engine_names_its_engine():
    _, trailer = verify(make_stream(header=Header("pgsql", "database", "nextcloud")))
    assert trailer.engine == "pgsql"


# --- writing ----------------------------------------------------------------------------

def test_writer_reports_a_closed_reader_as_io_error_74():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    try:
        with pytest.raises(IOFailure) as caught:
            StreamWriter(write_fd, Header("mysql", "database", "x"))
        assert caught.value.code == ExitCode.IOERR == 74
    finally:
        os.close(write_fd)


def test_writer_counts_and_hashes_everything_before_the_trailer():
    data = make_stream(b"abc\n")
    payload = data[:data.rindex(TRAILER_START)]
    trailer = Trailer.decode(data[len(payload):])
    assert trailer.bytes == len(payload)
    assert trailer.sha256 == hashlib.sha256(payload).hexdigest()
