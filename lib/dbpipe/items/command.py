"""nextcloud-restore-items' three commands: list, export and push what a
Request selects from a stored dump."""

from __future__ import annotations

from dataclasses import dataclass

from .. import files
from ..errors import NoInputError, UnavailableError
from ..log import log
from . import export, listing, push, source
from .model import Selection
from .push import DavAccount
from .source import Backup, ScratchFor


@dataclass(frozen=True)
class Request:
    command: str                    # list | export | push
    dump: str                       # a path, or "-" for stdin
    selection: Selection
    prefix: str                     # Nextcloud's table prefix
    scratch_for: ScratchFor
    out: str | None = None          # export
    split: bool = False
    force: bool = False
    account: DavAccount | None = None   # push
    overwrite: bool = False
    collection_url: str | None = None

    @property
    def one_collection(self) -> bool:
        return bool(self.selection.calendar or self.selection.addressbook)


def run(request: Request) -> None:
    with files.open_input(request.dump) as handle:
        backup = source.read_backup(
            handle.fileno(), "stdin" if request.dump == "-" else request.dump, request.scratch_for,
            request.prefix, request.selection, with_items=request.command != "list" or request.one_collection)
    {"list": _list, "export": _export, "push": _push}[request.command](request, backup)


def _list(request: Request, backup: Backup) -> None:
    selection = request.selection
    if not backup.groups and request.one_collection:
        print(f"no matching items in {selection.calendar or selection.addressbook}")
    for collection, items in backup.groups:
        print(listing.items_table(collection, items))
    if not request.one_collection:
        print(listing.collections_table(backup.user, backup.collections))


def _export(request: Request, backup: Backup) -> None:
    written = export.plan(_selected(backup), request.out, request.split)
    export.write(written, request.force)
    for output in written:
        print(output.path)
    log.info("exported %d item(s) of %s into %d file(s) in %s", len(backup.items), request.selection.user,
             len(written), request.out)


def _push(request: Request, backup: Backup) -> None:
    user = request.selection.user
    pusher = push.Pusher(request.account, user, request.overwrite, request.collection_url,
                         report=lambda line: print(line, flush=True))
    outcomes = pusher.push(_selected(backup))
    failed = sum(1 for outcome in outcomes if outcome.status == push.FAILED)
    log.info("push of %s's items: %s", user, push.summary(outcomes))
    if failed:
        raise UnavailableError(f"{failed} of {len(outcomes)} item(s) could not be uploaded")


def _selected(backup: Backup):
    if not backup.items:
        raise NoInputError("no items match the selection")
    return backup.groups
