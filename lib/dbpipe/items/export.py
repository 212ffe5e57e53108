""".ics and .vcf files from stored objects.

Default: one file per calendar (<calendar>.ics, a VCALENDAR holding every
selected event) and per address book (<addressbook>.vcf): what the
Nextcloud web UI and every client import in one go.  With split, every
object gets its own file holding exactly the stored bytes.

Files are written 0600 (they hold personal data) into a temporary name and
renamed into place; an existing file is only replaced with force, and that
is checked for all files before the first one is written.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

from ..errors import CantCreateError
from ..files import atomic_write
from ..log import log
from .ical import CalendarMerger, concatenate_cards
from .model import CALENDAR, Collection, Item

UNSAFE = set("/\\%") | {chr(c) for c in range(32)} | {chr(127)}


@dataclass(frozen=True)
class OutputFile:
    path: str
    data: bytes
    items: int


def safe_name(name: str, extension: str) -> str:
    """A file name from a DAV name: never a path, never hidden, right extension."""
    name = "".join(urllib.parse.quote(c, safe="") if c in UNSAFE else c for c in name)
    name = "%2E" + name[1:] if name.startswith(".") else name or "item"
    return name if name.lower().endswith(extension) else name + extension


def extension(collection: Collection) -> str:
    return ".ics" if collection.kind == CALENDAR else ".vcf"


def plan(groups: list[tuple[Collection, list[Item]]], out_dir: str, split: bool) -> list[OutputFile]:
    files: list[OutputFile] = []
    for collection, items in groups:
        if split:
            files += _item_files(collection, items, out_dir)
        else:
            files += _collection_files(collection, items, out_dir)
    return files


def _item_files(collection: Collection, items: list[Item], out_dir: str) -> list[OutputFile]:
    directory = os.path.join(out_dir, safe_name(collection.uri, ""))
    taken: set[str] = set()
    files = []
    for item in items:
        name = safe_name(item.uri, extension(collection))
        if name in taken:       # a trashed object whose old address was used again
            name = safe_name(item.stored_uri, extension(collection))
        taken.add(name)
        files.append(OutputFile(os.path.join(directory, name), item.data, 1))
    return files


def _collection_files(collection: Collection, items: list[Item], out_dir: str) -> list[OutputFile]:
    path = os.path.join(out_dir, safe_name(collection.uri, extension(collection)))
    if collection.kind != CALENDAR:
        return [OutputFile(path, concatenate_cards([item.data for item in items]), len(items))]
    merger = CalendarMerger(collection.displayname or collection.uri)
    loose = [item for item in items if not merger.add(item.data, f"{collection.uri}/{item.uri}")]
    files = [OutputFile(path, merger.data(), len(items) - len(loose))] if len(loose) < len(items) else []
    for item in loose:
        log.warning("%s/%s is not a VCALENDAR; written unchanged as a file of its own",
                    collection.uri, item.uri)
    return files + _item_files(collection, loose, out_dir)


def write(files: list[OutputFile], force: bool) -> None:
    existing = [f.path for f in files if os.path.lexists(f.path)]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise CantCreateError(f"{existing[0]} exists{more}; use --force to replace, or another --out directory")
    for output in files:
        _write_one(output.path, output.data)
        log.debug("wrote %s (%d item%s)", output.path, output.items, "" if output.items == 1 else "s")


def _write_one(path: str, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)
