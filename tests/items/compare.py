"""Comparing iCalendar/vCard data the way a client sees it, with vobject."""

from __future__ import annotations

from collections import defaultdict

import vobject


def parse_all(data: bytes) -> list:
    """Every top-level object, parsed and validated (times with their zones)."""
    text = data.decode("utf-8")
    parsed = list(vobject.readComponents(text))
    for obj in parsed:
        obj.serialize()          # raises on anything a client could not use
    return list(vobject.readComponents(text, transform=False))


def canonical(component) -> tuple:
    """Properties and subcomponents as an order-free, comparable value."""
    entries = []
    for child in component.getChildren():
        if isinstance(child, vobject.base.Component):
            entries.append(("BEGIN:" + child.name, canonical(child)))
        else:
            params = tuple(sorted((key, tuple(values)) for key, values in child.params.items()))
            entries.append((child.name, str(child.value), params))
    return tuple(sorted(entries, key=repr))


def components_by_uid(data: bytes, skip=("VTIMEZONE",)) -> dict[str, list[tuple]]:
    """UID -> canonical forms of its components (a recurring event with
    exceptions has several), over all VCALENDARs in data."""
    found = defaultdict(list)
    for calendar in parse_all(data):
        for component in calendar.getChildren():
            if isinstance(component, vobject.base.Component) and component.name not in skip:
                found[component.uid.value].append(canonical(component))
    return {uid: sorted(forms, key=repr) for uid, forms in found.items()}


def timezones(data: bytes) -> dict[str, tuple]:
    zones = {}
    for calendar in parse_all(data):
        for component in calendar.getChildren():
            if isinstance(component, vobject.base.Component) and component.name == "VTIMEZONE":
                zones[component.tzid.value] = canonical(component)
    return zones


def cards_by_uid(data: bytes) -> dict[str, tuple]:
    return {card.uid.value: canonical(card) for card in parse_all(data)}


def stored_body(data: bytes) -> bytes:
    """The stored object's bytes from its first event/to-do to its end: what a
    merged calendar file must contain unchanged."""
    starts = [data.find(marker) for marker in (b"BEGIN:VEVENT", b"BEGIN:VTODO")]
    start = min(s for s in starts if s >= 0)
    return data[start:data.rindex(b"END:VCALENDAR")]
