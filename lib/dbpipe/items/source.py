"""From a stored dump to the selected items: verify, load into a throwaway
scratch database, read, drop.

The scratch database lives only inside ``read_backup``: it is created
there, the verified stream is loaded into it, the wanted rows are copied
into memory and it is dropped again - on success, on every error and on
cancellation (SIGTERM/SIGINT become an exception that unwinds through here).
SQLite dumps load into a temporary file in a private 0700 directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from dataclasses import dataclass
from typing import Callable

from ..engines import get_engine
from ..errors import CantCreateError, DataError, NoInputError, PermissionDenied, UsageError
from ..log import log
from ..stream import Header
from ..target import Target
from ..transfer import Pump
from .model import ADDRESSBOOK, BIRTHDAY_CALENDAR, CALENDAR, Collection, Item, Selection
from .tables import DavTables, check_prefix, dav_tables

ScratchFor = Callable[[Header], Target]
PHYSICAL_ENGINE = "mariabackup"   # physical.piece.ENGINE; that package is not imported for this
LOGIN_REFUSED = re.compile(r"cannot connect|authentication failed|no password supplied|"
                           r"role .* does not exist", re.IGNORECASE)


@dataclass(frozen=True)
class Backup:
    """What was read from the dump for one user."""

    user: str
    collections: list[Collection]
    groups: list[tuple[Collection, list[Item]]]    # the selected items, per collection

    @property
    def items(self) -> list[Item]:
        return [item for _, items in self.groups for item in items]


def read_backup(in_fd: int, label: str, scratch_for: ScratchFor, prefix: str,
                selection: Selection, with_items: bool = True) -> Backup:
    """Load the dump on in_fd into a scratch database and read the selection."""
    check_prefix(prefix)
    with Pump(in_fd, label).draining() as pump:
        header = _check_header(pump.require_header("dump to read"))
        engine = get_engine(header.engine)
        target = scratch_for(header)
        with _scratch(engine, target) as scratch:
            where = scratch.describe() if header.engine != "sqlite" else "a temporary file"
            log.info("loading the %s dump of %r into a scratch database (%s)", header.engine,
                     header.database, where)
            engine.load_scratch(scratch, pump)
            with dav_tables(scratch, prefix) as tables:
                backup = _read(tables, selection, with_items)
        log.info("scratch database removed" + (f"; {len(backup.items)} item(s) selected" if with_items else ""))
        return backup


def _check_header(header: Header) -> Header:
    if header.engine == PHYSICAL_ENGINE:
        raise DataError("this is a physical backup piece (dbpipe-mariabackup), not an SQL dump; item "
                        "restore needs the logical dump of the Nextcloud database (dbpipe-dump)")
    if header.scope != "database":
        raise DataError("this is an all-databases dump; item restore needs the dump of the "
                        "Nextcloud database alone")
    return header


@contextlib.contextmanager
def _scratch(engine, target: Target):
    """engine.scratch, with a refusal to create the database said plainly."""
    with contextlib.ExitStack() as stack:
        try:
            scratch = stack.enter_context(engine.scratch(target))
        except (PermissionDenied, CantCreateError) as exc:
            if LOGIN_REFUSED.search(str(exc)):
                raise PermissionDenied(str(exc)) from None
            raise CantCreateError(f"the scratch server refuses to create a database ({exc}); "
                                  "give --scratch-* options for an account that may") from None
        yield scratch


def scratch_target(header: Header, options: Target) -> Target:
    """The server the scratch database goes to: for SQLite a temporary file,
    otherwise the --scratch-* options (database name left to the engine)."""
    if header.engine == "sqlite":
        return Target(type="sqlite", database="scratch.db")
    if options.type and options.type != header.engine:
        raise UsageError(f"--scratch-type {options.type} does not fit this {header.engine} dump")
    return dataclasses.replace(options, type=header.engine, database=None)


# --- selection -----------------------------------------------------------------

def _read(tables: DavTables, selection: Selection, with_items: bool) -> Backup:
    data = tables.read(selection.user)
    chosen = choose(data.collections, selection)
    groups = []
    for collection in chosen if with_items else ():
        items = [item for item in data.items_of(collection) if selection.wants(item)]
        if items:
            groups.append((collection, items))
    if with_items and selection.uid is not None and not groups:
        raise NoInputError(f"no item with UID {selection.uid!r} in "
                           + ", ".join(c.label() for c in chosen))
    return Backup(selection.user, data.collections, groups)


def choose(collections: list[Collection], selection: Selection) -> list[Collection]:
    """The collections a selection names; all of them (minus the generated
    birthday calendar) when it names none."""
    named = [(CALENDAR, selection.calendar), (ADDRESSBOOK, selection.addressbook)]
    named = [(kind, name) for kind, name in named if name is not None]
    if named:
        return [find(collections, kind, name) for kind, name in named]
    kinds = (CALENDAR,) if selection.dated else (CALENDAR, ADDRESSBOOK)
    return [c for c in collections if c.kind in kinds and c.uri != BIRTHDAY_CALENDAR]


def find(collections: list[Collection], kind: str, name: str) -> Collection:
    """By URI, else by display name (exactly, else ignoring case)."""
    mine = [c for c in collections if c.kind == kind]
    for matches in ([c for c in mine if c.uri == name], [c for c in mine if c.displayname == name],
                    [c for c in mine if c.displayname.casefold() == name.casefold()]):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError(f"{len(matches)} {kind}s are called {name!r}; name one by its URI: "
                             + ", ".join(c.uri for c in matches))
    known = ", ".join(f"{c.uri} ({c.displayname})" for c in mine) or "none"
    word = "calendar" if kind == CALENDAR else "address book"
    raise NoInputError(f"no {word} {name!r} for this user; there are: {known}")
