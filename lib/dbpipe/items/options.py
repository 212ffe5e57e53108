"""nextcloud-restore-items' command line: the options, and from parsed
options to a typed Request (checked before the dump is read, so a bad
date or password file fails at once, not after a long load)."""

from __future__ import annotations

import argparse
import dataclasses

from .. import cli
from ..errors import UsageError
from ..nextcloud.options import installation_target
from ..stream import Header
from ..target import Target, read_password_file
from .command import Request
from .model import TRASH_CHOICES, Selection, parse_moment
from .push import DavAccount
from .source import ScratchFor, scratch_target

SCRATCH_OPTIONS = ("type", "host", "port", "socket", "user", "password_file", "defaults_file",
                   "config", "profile")


def common_options() -> cli.Parser:
    """The options every command takes (a parent parser)."""
    common = cli.Parser(add_help=False)
    common.add_argument("dump", nargs="?", default="-", help="the stored dump (default: stdin)")
    common.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    common.add_argument("--user", required=True, help="the Nextcloud user id whose items to restore")
    common.add_argument("--calendar", metavar="NAME", help="only this calendar (URI or display name)")
    common.add_argument("--addressbook", metavar="NAME", help="only this address book")
    common.add_argument("--uid", help="only the event, to-do or contact with this UID")
    common.add_argument("--from", dest="start", metavar="DATE",
                        help="only events that end after DATE (YYYY-MM-DD or ISO time; UTC)")
    common.add_argument("--to", dest="end", metavar="DATE",
                        help="only events that start before the end of DATE")
    common.add_argument("--trash", choices=TRASH_CHOICES, default="include",
                        help="items in Nextcloud's trash bin: include (default), exclude, only")
    common.add_argument("--table-prefix", metavar="PREFIX",
                        help="Nextcloud's dbtableprefix (default: the installation's, else oc_)")
    common.add_argument("--nextcloud", metavar="DIR",
                        help="the live installation: its table prefix, and its database server "
                             "and account as the default scratch server")
    common.add_argument("--php", metavar="PATH", help="PHP CLI for --nextcloud (default: php)")
    cli.add_target_options(common, "scratch database server (MariaDB/PostgreSQL dumps)",
                           prefix="scratch-")
    return common


def add_export_options(exporter: argparse.ArgumentParser) -> None:
    exporter.add_argument("--out", metavar="DIR", required=True, help="directory for the files")
    exporter.add_argument("--split", action="store_true",
                          help="one file per event/contact, byte for byte the stored object "
                               "(default: one .ics per calendar, one .vcf per address book)")
    exporter.add_argument("--force", action="store_true", help="replace existing files")


def add_push_options(pusher: argparse.ArgumentParser) -> None:
    pusher.add_argument("--dav-url", required=True, metavar="URL",
                        help="the DAV root, e.g. https://cloud.example.com/remote.php/dav")
    pusher.add_argument("--dav-user", metavar="LOGIN", help="login name (default: --user)")
    pusher.add_argument("--app-password-file", required=True, metavar="FILE",
                        help="file whose first line is the user's app password")
    pusher.add_argument("--overwrite", action="store_true",
                        help="replace objects that exist (default: skip them)")
    pusher.add_argument("--collection-url", metavar="URL",
                        help="upload into this calendar/address book instead of the original "
                             "(needs exactly one --calendar or --addressbook)")
    pusher.add_argument("--dav-ca-file", metavar="FILE", help="CA certificate(s) to trust (PEM)")


def request(args: argparse.Namespace) -> Request:
    selection = _selection(args)
    account = _account(args) if args.command == "push" else None   # a bad password file fails early
    installation = installation_target(args)
    return Request(
        command=args.command, dump=args.dump, selection=selection,
        prefix=args.table_prefix or getattr(installation, "table_prefix", None) or "oc_",
        scratch_for=_scratch_for(args, installation),
        out=getattr(args, "out", None), split=getattr(args, "split", False),
        force=getattr(args, "force", False), account=account,
        overwrite=getattr(args, "overwrite", False), collection_url=getattr(args, "collection_url", None))


def _selection(args: argparse.Namespace) -> Selection:
    dated = args.start is not None or args.end is not None
    if dated and args.addressbook:
        raise UsageError("--from/--to select events; they do not apply to --addressbook")
    if getattr(args, "collection_url", None) and bool(args.calendar) == bool(args.addressbook):
        raise UsageError("--collection-url needs exactly one --calendar or --addressbook")
    selection = Selection(args.user, args.calendar, args.addressbook, args.uid,
                          parse_moment(args.start) if args.start else None,
                          parse_moment(args.end, end=True) if args.end else None, args.trash)
    if selection.start is not None and selection.end is not None and selection.start >= selection.end:
        raise UsageError("--from must come before --to")
    return selection


def _account(args: argparse.Namespace) -> DavAccount:
    return DavAccount(args.dav_url, args.dav_user or args.user,
                      read_password_file(args.app_password_file), args.dav_ca_file)


def _scratch_for(args: argparse.Namespace, installation: Target | None) -> ScratchFor:
    return lambda header: scratch_target(header, _scratch_options(args, header, installation))


def _scratch_options(args: argparse.Namespace, header: Header, installation: Target | None) -> Target:
    """--scratch-* options; without any, the installation's own server and account."""
    if header.engine == "sqlite":
        return Target()
    given = any(getattr(args, f"scratch_{name}") for name in SCRATCH_OPTIONS)
    base = Target(type=header.engine)
    if installation is not None and installation.type == header.engine and not given:
        base = dataclasses.replace(installation, database=None)
    return cli.target_from_args(args, prefix="scratch-", all_databases=True, base=base)
