"""Command-line options the three hook executables share."""

from __future__ import annotations

import argparse
import functools
import os
from collections.abc import Callable

from .. import cli
from ..errors import UsageError
from ..snapshot import DEFAULT_ROOT as DEFAULT_SNAPSHOT_ROOT
from ..target import Target
from .config import discover_target
from .cycle import HookOptions
from .maintenance import DEFAULT_SETTLE, DEFAULT_WAIT
from .occ import DEFAULT_TIMEOUT
from .state import DEFAULT_STATE_DIR


def add_hook_options(parser: argparse.ArgumentParser, services: bool = True) -> None:
    parser.add_argument("directory", metavar="DIR", help="the Nextcloud installation (holds occ)")
    group = parser.add_argument_group("Nextcloud")
    group.add_argument("--php", metavar="PATH", help="PHP CLI to run occ with (default: php)")
    group.add_argument("--state-dir", metavar="DIR", default=DEFAULT_STATE_DIR,
                       help=f"where the record and lock live (default: {DEFAULT_STATE_DIR})")
    group.add_argument("--settle", type=cli.seconds, default=DEFAULT_SETTLE, metavar="SECONDS",
                       help="after maintenance is confirmed on (or services stopped), let running "
                            f"requests and cron jobs finish (default: {DEFAULT_SETTLE:g})")
    group.add_argument("--wait-timeout", type=cli.seconds, default=DEFAULT_WAIT, metavar="SECONDS",
                       help=f"how long occ status may take to confirm (default: {DEFAULT_WAIT:g})")
    group.add_argument("--command-timeout", type=cli.seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                       help=f"limit for each occ or service call (default: {DEFAULT_TIMEOUT:g})")
    group.add_argument("--timeout", type=cli.seconds, default=0, metavar="SECONDS",
                       help="limit for the whole hook, then put back and fail (default: none)")
    if services:
        group.add_argument("--stop-service", dest="services", action="append", default=[],
                           metavar="NAME", help="stop (and later start) this service instead of "
                                                "maintenance mode, e.g. apache2; repeatable")
        cli.add_service_manager(group)


def add_snapshot_options(parser: argparse.ArgumentParser, switch: str = "--snapshot",
                         help_text: str = "") -> None:
    group = parser.add_argument_group("snapshot mode")
    group.add_argument(switch, dest="snapshot", action="store_true", help=help_text)
    group.add_argument("--snapshot-root", metavar="DIR", default=DEFAULT_SNAPSHOT_ROOT,
                       help="where the snapshot views are mounted, as <DIR>/<installation key>/<path> "
                            f"(default: {DEFAULT_SNAPSHOT_ROOT}; the FileSet's StripPath is the "
                            "number of components of DIR plus one)")


def add_dump_lock_timeout(parser: argparse.ArgumentParser) -> None:
    """The before hook's dump waits for locks while Nextcloud is closed: an
    admin may want it to give up (and reopen) sooner than a plain dump."""
    cli.add_lock_timeout(parser, HookOptions.dump_lock_timeout, "the dump of --dump-to or --snapshot, "
                         "while Nextcloud is closed", dest="dump_lock_timeout")


def hook_options(args: argparse.Namespace) -> HookOptions:
    services = tuple(getattr(args, "services", None) or ())
    if getattr(args, "service_manager", None) and not services:
        raise UsageError("--service-manager needs --stop-service")
    return HookOptions(args.directory, php=args.php, state_dir=args.state_dir, settle=args.settle,
                       wait_timeout=args.wait_timeout, command_timeout=args.command_timeout,
                       timeout=args.timeout, services=services,
                       service_manager=getattr(args, "service_manager", None),
                       snapshot=getattr(args, "snapshot", False),
                       dump_lock_timeout=getattr(args, "dump_lock_timeout", HookOptions.dump_lock_timeout),
                       snapshot_root=os.path.abspath(getattr(args, "snapshot_root", None)
                                                     or DEFAULT_SNAPSHOT_ROOT))


def installation_target(args: argparse.Namespace) -> Target | None:
    """The database tools' --nextcloud DIR: the target of that installation's
    merged config (read with PHP as the owner of config.php), the base the
    other target options override; None without --nextcloud."""
    return discover_target(args.nextcloud, php=args.php) if getattr(args, "nextcloud", None) else None


def database_target(args: argparse.Namespace) -> Callable[[], Target]:
    """The hooks' database: the installation's, overridden by the target
    options; discovered only when a step needs it."""
    return lambda: cli.target_from_args(
        args, base=discover_target(args.directory, php=args.php, timeout=args.command_timeout))


def add_copy_back_options(parser: argparse.ArgumentParser,
                          command: str = "dbpipe-mariabackup-restore copy-back") -> None:
    """The Nextcloud options of a restore that swaps a data directory in
    place (copy-back, dbpipe-pitr-restore): physical/ and pitr/ know no
    Nextcloud; the executable plugs these in.  command names the restore
    in the record."""
    parser.add_argument("--nextcloud", metavar="NCDIR",
                        help="maintenance mode on during the swap, then a new data fingerprint, through "
                             "the hooks' cycle (lock and record)")
    parser.add_argument("--php", metavar="PATH", help="PHP CLI for --nextcloud's occ (default: php)")
    parser.add_argument("--nextcloud-state-dir", metavar="DIR",
                        help="--nextcloud's record and lock, as the hooks' --state-dir "
                             "(default: /var/lib/dbpipe)")
    parser.add_argument("--settle", type=cli.seconds, default=DEFAULT_SETTLE, metavar="SECONDS",
                        help=f"after maintenance on, wait for running requests (default: {DEFAULT_SETTLE:g})")
    parser.set_defaults(closed=functools.partial(copy_back_closed, command=command))


def copy_back_closed(args: argparse.Namespace, command: str = "dbpipe-mariabackup-restore copy-back"):
    """--nextcloud: the hooks' restore cycle around the swap (a factory, entered
    only around it), or None."""
    if not args.nextcloud:
        return None
    from .hooks import closed_for_restore   # only a restore with --nextcloud needs the hooks
    options = HookOptions(args.nextcloud, php=args.php, settle=args.settle,
                          state_dir=args.nextcloud_state_dir or DEFAULT_STATE_DIR)
    return functools.partial(closed_for_restore, command, options)
