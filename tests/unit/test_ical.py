"""items/ical.property_value: the one reader of iCalendar/vCard properties
(UIDs for listings and pushes, titles, time zone ids)."""

from __future__ import annotations

import pytest

from dbpipe.items.ical import CalendarMerger, property_value, split_calendar, title

EVENT = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Ber\r\n lin\r\n"
         b"END:VTIMEZONE\r\nBEGIN:VEVENT\r\nuid:event-1\r\n"
         b'SUMMARY;LANGUAGE=de;X-NOTE="a:b;c":Hallo\\, lange\r\n  Zeile\\nzwei\r\n'
         b"DTSTART;TZID=Europe/Berlin:20240101T100000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


@pytest.mark.parametrize("name, value", [
    (b"UID", b"event-1"),                                 # any case
    (b"uid", b"event-1"),
    (b"TZID", b"Europe/Berlin"),                          # unfolded (RFC 5545 3.1)
    (b"SUMMARY", b"Hallo\\, lange Zeile\\nzwei"),         # quoted parameter with ":" and ";"
    (b"DTSTART", b"20240101T100000"),
    (b"LOCATION", b""),
])
def test_property_value(name, value):
    assert property_value(EVENT, name) == value


def test_title_unescapes_and_components_read_the_same_way():
    assert title(EVENT, kind_is_card=False) == "Hallo, lange Zeile zwei"
    assert title(b"BEGIN:VCARD\nFN:Alice\nEND:VCARD\n", kind_is_card=True) == "Alice"
    zone = split_calendar(EVENT).components[0]
    assert zone.property_value(b"TZID") == b"Europe/Berlin"


def test_a_time_zone_folded_elsewhere_is_the_same_time_zone():
    merger = CalendarMerger("x")
    merger.add(EVENT, "one")
    merger.add(EVENT.replace(b"TZID:Europe/Ber\r\n lin", b"TZID:Europe/Berlin"), "two")
    assert list(merger.timezones) == [b"Europe/Berlin"]
