"""What `list` prints: a user's collections, or the items of one of them,
so the right calendar, address book or UID can be picked for export/push."""

from __future__ import annotations

from ..stamps import for_listing
from .ical import title
from .model import ADDRESSBOOK, CALENDAR, Collection, Item

MAX_TITLE = 60


def collections_table(user: str, collections: list[Collection]) -> str:
    rows = [("TYPE", "URI", "NAME", "ITEMS", "IN TRASH BIN", "NOTE")]
    for c in collections:
        note = f"calendar in trash bin since {for_listing(c.deleted_at)}" if c.in_trash else ""
        rows.append((c.kind, c.uri, c.displayname, str(c.items),
                     str(c.items_in_trash) if c.kind == CALENDAR else "-", note))
    calendars = sum(1 for c in collections if c.kind == CALENDAR)
    books = sum(1 for c in collections if c.kind == ADDRESSBOOK)
    head = f"user {user}: {calendars} calendar(s), {books} address book(s)"
    return head + "\n" + _table(rows)


def items_table(collection: Collection, items: list[Item]) -> str:
    rows = [("URI", "UID", "TYPE", "FIRST", "TITLE", "NOTE")]
    for item in items:
        note = "in trash bin" + (f" since {for_listing(item.deleted_at)}" if item.deleted_at else "") \
            if item.in_trash else ""
        name = title(item.data, collection.kind == ADDRESSBOOK)
        name = name if len(name) <= MAX_TITLE else name[: MAX_TITLE - 1] + "…"
        rows.append((item.uri, item.uid, item.component, for_listing(item.first), name, note))
    return f"{collection.label()}: {len(items)} item(s)\n" + _table(rows)


def _table(rows) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
                     for row in rows)
