"""Stream filters that see the payload in arbitrary chunks: they must give the
same result whatever the chunk borders are."""

from __future__ import annotations

import random

import pytest

from dbpipe.engines.pgsql import LargeObjectTransactions
from dbpipe.verify import TableCounter

LO_SECTION = b"""--
-- Data for Name: BLOBS; Type: BLOBS; Schema: -; Owner: -
--

BEGIN;

SELECT pg_catalog.lo_open('16390', 131072);
SELECT pg_catalog.lowrite(0, '\\x68656c6c6f');
SELECT pg_catalog.lo_close(0);

BEGIN;

SELECT pg_catalog.lo_open('16391', 131072);
SELECT pg_catalog.lowrite(0, '\\x00ff');
SELECT pg_catalog.lo_close(0);

COMMIT;
"""
PG_DUMP = (b"--\n-- PostgreSQL database dump\n--\n\nCREATE FUNCTION public.f() RETURNS void\n"
           b"    LANGUAGE plpgsql\n    AS $$\nBEGIN;\nCOMMIT;\n$$;\n\n"
           b"SELECT pg_catalog.lo_create('16390');\nSELECT pg_catalog.lo_create('16391');\n\n"
           + LO_SECTION + b"\n" + LO_SECTION.replace(b"16390", b"16392").replace(b"16391", b"16393")
           + b"\nCOMMIT;\n--\n-- PostgreSQL database dump complete\n--\n\n")


def filtered(data: bytes, borders) -> bytes:
    lobs = LargeObjectTransactions()
    out, start = [], 0
    for border in list(borders) + [len(data)]:
        out += [bytes(piece) for piece in lobs.feed(data[start:border])]
        start = border
    return b"".join(out) + lobs.flush()


EXPECTED = filtered(PG_DUMP, [])


def test_large_object_transactions_are_blanked_out():
    assert EXPECTED.count(b"\nBEGIN;\n\nSELECT pg_catalog.lo_open(") == 0
    assert EXPECTED.count(b"lo_close(0);\n\nCOMMIT;") == 0
    assert EXPECTED.count(b"SELECT pg_catalog.lo_open(") == 4
    # everything else is untouched: the function body and a COMMIT of our own
    assert b"AS $$\nBEGIN;\nCOMMIT;\n$$;" in EXPECTED
    assert EXPECTED.endswith(b"\nCOMMIT;\n--\n-- PostgreSQL database dump complete\n--\n\n")
    assert len(PG_DUMP) - len(EXPECTED) == 4 * len(b"BEGIN;") + 2 * len(b"COMMIT;")


def test_every_single_chunk_border_gives_the_same_result():
    for border in range(len(PG_DUMP) + 1):
        assert filtered(PG_DUMP, [border]) == EXPECTED, border


@pytest.mark.parametrize("seed", range(20))
def test_random_chunkings_give_the_same_result(seed):
    rng = random.Random(seed)
    borders = sorted(rng.sample(range(1, len(PG_DUMP)), rng.randint(2, 60)))
    assert filtered(PG_DUMP, borders) == EXPECTED


def test_byte_by_byte():
    assert filtered(PG_DUMP, range(1, len(PG_DUMP))) == EXPECTED


def test_data_without_large_objects_passes_unchanged():
    data = b"COPY public.t (a) FROM stdin;\nBEGIN;\n\\.\n" * 100
    assert filtered(data, range(7, len(data), 13)) == data


# --- TableCounter -----------------------------------------------------------------------

DUMP = (b"-- dbpipe-stream 1 engine=mysql scope=database database=x\n"
        + b"".join(b"DROP TABLE IF EXISTS `t%d`;\nCREATE TABLE `t%d` (\n  a int\n);\n"
                   b"INSERT INTO `t%d` VALUES (1,'CREATE TABLE in data');\n" % (i, i, i)
                   for i in range(25)))


def count(data: bytes, borders) -> int:
    counter = TableCounter()
    start = 0
    for border in list(borders) + [len(data)]:
        counter(memoryview(data[start:border]))
        start = border
    return counter.count


def test_table_counter_counts_create_table_statements_only():
    assert count(DUMP, []) == 25


def test_table_counter_across_every_chunk_border():
    for border in range(len(DUMP) + 1):
        assert count(DUMP, [border]) == 25, border
    assert count(DUMP, range(1, len(DUMP))) == 25


@pytest.mark.parametrize("seed", range(10))
def test_table_counter_random_chunkings(seed):
    rng = random.Random(seed)
    assert count(DUMP, sorted(rng.sample(range(1, len(DUMP)), 40))) == 25
