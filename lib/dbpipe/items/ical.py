"""Just enough iCalendar/vCard handling to keep stored objects byte-faithful.

Nothing is parsed into objects and written back: a calendar file is built
by copying each stored object's components (VEVENT, VTODO, VTIMEZONE, ...)
line for line, folded lines and line endings included.  Only the frame
around them (BEGIN:VCALENDAR ... END:VCALENDAR) is ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..log import log

CRLF = b"\r\n"
PRODID = b"PRODID:-//dbpipe//nextcloud-restore-items//EN"
MAX_LINE = 75


@dataclass
class Component:
    name: bytes                     # VEVENT, VTIMEZONE, ... (upper case)
    lines: list[bytes] = field(default_factory=list)

    @property
    def data(self) -> bytes:
        return b"".join(self.lines)

    def property_value(self, name: bytes) -> bytes:
        return property_value(self.data, name)


@dataclass
class Calendar:
    """The top level of one stored VCALENDAR: its own properties and its components."""

    properties: list[bytes]         # logical lines, folded continuation lines kept
    components: list[Component]


def _keyword(line: bytes) -> tuple[bytes, bytes]:
    """(BEGIN|END|other, component name) of one content line."""
    if line[:1] in (b" ", b"\t"):
        return b"", b""         # a folded continuation, never a keyword
    head, _, rest = line.partition(b":")
    head = head.strip().upper()
    if head in (b"BEGIN", b"END"):
        return head, rest.strip().upper()
    return b"", b""


# name, parameters (a quoted parameter value may hold ":" or ";"), value
CONTENT_LINE = re.compile(rb'([^;:]*)((?:;(?:[^";:]|"[^"]*")*)*):(.*)', re.DOTALL)


def property_name(line: bytes) -> bytes:
    """The upper-case name of a content line: what stands before its
    parameters (;) and its value (:)."""
    return re.split(rb"[;:]", line, maxsplit=1)[0].strip().upper()


def unfold(line: bytes) -> bytes:
    """A logical line without its folds (a line break followed by one space or
    tab, RFC 5545 3.1) and without its line ending."""
    return re.sub(rb"\r?\n[ \t]", b"", line).rstrip(b"\r\n")


def property_value(data: bytes, name: bytes) -> bytes:
    """The raw (still escaped) value of the first property called name in data,
    whatever its case and parameters; b"" when there is none.

    The first in the whole text, nested components included: a stored
    object's UID is the one of its first component, as Nextcloud reads it."""
    wanted = name.upper()
    for line in logical_lines(data.splitlines(keepends=True)):
        found = CONTENT_LINE.match(unfold(line))
        if found and found.group(1).strip().upper() == wanted:
            return found.group(3)
    return b""


def logical_lines(lines) -> list[bytes]:
    """Physical lines joined with their folded continuations (kept as they are)."""
    joined: list[bytes] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and joined:
            joined[-1] += line
        else:
            joined.append(line)
    return joined


def split_calendar(data: bytes) -> Calendar | None:
    """The components of a VCALENDAR, or None when data is not one."""
    lines = data.splitlines(keepends=True)
    while lines and not lines[0].strip():
        del lines[0]
    while lines and not lines[-1].strip():
        del lines[-1]
    if not lines or _keyword(lines[0]) != (b"BEGIN", b"VCALENDAR") \
            or _keyword(lines[-1]) != (b"END", b"VCALENDAR"):
        return None
    properties, components, current, depth = [], [], None, 0
    for line in lines[1:-1]:
        word, name = _keyword(line)
        if current is None:
            if word == b"BEGIN":
                current, depth = Component(name, [line]), 1
            elif word == b"END":
                return None
            elif line.strip():
                properties.append(line)
            continue
        current.lines.append(line)
        depth += 1 if word == b"BEGIN" else -1 if word == b"END" else 0
        if depth == 0:
            components.append(current)
            current = None
    return None if current is not None else Calendar(logical_lines(properties), components)


def escape_text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\n", "\\n"))


def fold(line: bytes) -> bytes:
    """Fold a content line at 75 octets without splitting a UTF-8 character."""
    parts, rest, limit = [], line, MAX_LINE
    while len(rest) > limit:
        cut = limit
        while cut > 1 and (rest[cut] & 0xC0) == 0x80:
            cut -= 1
        parts.append(rest[:cut])
        rest, limit = rest[cut:], MAX_LINE - 1
    parts.append(rest)
    return (CRLF + b" ").join(parts) + CRLF


class CalendarMerger:
    """Builds one VCALENDAR out of many stored ones.

    Every event/to-do/journal component is copied unchanged; time zone
    definitions are kept once per TZID.  A stored object that is not a
    VCALENDAR is handed back to the caller, never dropped.
    """

    def __init__(self, name: str):
        self.name = name
        self.calscale: bytes | None = None
        self.timezones: dict[bytes, Component] = {}
        self.components: list[Component] = []

    def add(self, data: bytes, label: str) -> bool:
        calendar = split_calendar(data)
        if calendar is None:
            return False
        for line in calendar.properties:
            if property_name(line) == b"CALSCALE" and self.calscale is None:
                self.calscale = line if line.endswith(b"\n") else line + CRLF
        for component in calendar.components:
            if component.name == b"VTIMEZONE":
                self._add_timezone(component, label)
            else:
                self.components.append(component)
        return True

    def _add_timezone(self, component: Component, label: str) -> None:
        tzid = component.property_value(b"TZID")
        known = self.timezones.get(tzid)
        if known is None:
            self.timezones[tzid] = component
        elif _normalised(known.data) != _normalised(component.data):
            log.warning("time zone %s in %s differs from an earlier definition; the first one is "
                        "used in the merged file (--split keeps every object exactly)",
                        tzid.decode("utf-8", "replace"), label)

    def data(self) -> bytes:
        head = [b"BEGIN:VCALENDAR" + CRLF, b"VERSION:2.0" + CRLF, PRODID + CRLF]
        head += [self.calscale] if self.calscale else []
        head += [fold(b"X-WR-CALNAME:" + escape_text(self.name).encode("utf-8"))] if self.name else []
        body = [_terminated(c.data) for c in list(self.timezones.values()) + self.components]
        return b"".join(head + body + [b"END:VCALENDAR" + CRLF])


def _normalised(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def _terminated(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + CRLF


def concatenate_cards(cards: list[bytes]) -> bytes:
    """A .vcf with many vCards is simply one after the other."""
    return b"".join(_terminated(card) for card in cards)


def unescape_text(value: bytes) -> str:
    text = value.decode("utf-8", "replace")
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)


def title(data: bytes, kind_is_card: bool) -> str:
    """SUMMARY of the first event/to-do, or FN of a vCard, for listings."""
    value = property_value(data, b"FN" if kind_is_card else b"SUMMARY")
    return unescape_text(value).replace("\n", " ")
