"""The command lines of dbpipe-mariabackup (backup) and
dbpipe-mariabackup-restore (its list, prepare and copy-back commands), and
from their parsed options to the library calls.  Nothing here knows
Nextcloud: copy-back's Nextcloud options come from nextcloud.options,
plugged in by the executable."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from .. import cli
from ..bareos import LEVELS, BareosJob
from ..errors import UsageError
from ..process import LONG_TIMEOUT, SERVER_START_TIMEOUT
from ..services import Service, ServiceManager
from ..target import Target
from . import backup, chain, copyback, prepare, state, store
from .tool import Tools


# --- dbpipe-mariabackup -------------------------------------------------------------------

def add_backup_options(parser: argparse.ArgumentParser) -> None:
    cli.add_target_options(parser, "server to back up (mysql)", nextcloud=False)
    parser.add_argument("--level", choices=LEVELS, help="backup level (default: from Bareos, else full)")
    parser.add_argument("--strict", action="store_true",
                        help="fail instead of falling back to a full backup")
    parser.add_argument("--name", default="default",
                        help=f"chain name: state in {state.chains_root()}/NAME (default: default)")
    parser.add_argument("--state-dir", metavar="DIR", help="chain state directory (overrides --name)")
    parser.add_argument("--mariabackup", metavar="PATH", help="backup tool (default: mariabackup; "
                        "xtrabackup works too)")
    parser.add_argument("--option", dest="options", action="append", default=[], metavar="OPT",
                        help="extra option for the backup tool, e.g. --option=--parallel=4 (repeatable)")
    parser.add_argument("--temp-dir", metavar="DIR", help="where the tool's scratch files go")
    parser.add_argument("--forget-job", metavar="JOBID",
                        help="no backup: take this failed Bareos job's backup back out of the chain "
                             "(a RunScript on failure passes %%i)")


def run_backup(args: argparse.Namespace, out_fd: int) -> None:
    """Back up to out_fd, or with --forget-job take a failed job's backup out."""
    if "/" in args.name or args.name.startswith("."):
        raise UsageError(f"bad chain name {args.name!r} (see --help)")
    state_dir = args.state_dir or os.path.join(state.chains_root(), args.name)
    if args.forget_job is not None:
        backup.forget_job(state_dir, args.forget_job)
        return
    target = cli.target_from_args(args, all_databases=True, base=Target(type="mysql"))
    if target.type != "mysql":
        raise UsageError("physical backups are for MariaDB/MySQL (--type mysql) only (see --help)")
    request = backup.BackupRequest(
        level=args.level, strict=args.strict, state_dir=state_dir,
        tools=Tools.resolve(args.mariabackup, extract=False), options=tuple(args.options),
        temp_dir=args.temp_dir, job=BareosJob.from_environ())
    backup.backup(target, out_fd, request)


# --- dbpipe-mariabackup-restore -------------------------------------------------------------

def add_restore_options(parser: argparse.ArgumentParser,
                        nextcloud_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """--from-stdin (the bpipe writer) and the list, prepare and copy-back
    commands; nextcloud_options adds copy-back's --nextcloud and the like."""
    parser.add_argument("--from-stdin", action="store_true", help="bpipe writer: store the piece on stdin")
    parser.add_argument("--into", metavar="DIR", help="with --from-stdin: where pieces are stored")
    cli.add_bareos_where(parser, "Bareos restore location (pass %%w)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _list_parser(commands)
    _prepare_parser(commands)
    _copy_back_parser(commands, nextcloud_options)


def run_restore(args: argparse.Namespace) -> None:
    """The bpipe writer stores the piece on stdin; or one of the commands."""
    if args.from_stdin == bool(args.command):
        raise UsageError("give either --from-stdin --into DIR or one of list, prepare, copy-back (see --help)")
    if not args.from_stdin:
        args.run(args)
    elif not args.into:
        raise UsageError("--from-stdin needs --into DIR (see --help)")
    else:
        store_stdin(args.into, args.where, sys.stdin.fileno())


def store_stdin(into: str, where: str | None, stdin_fd: int) -> None:
    """--from-stdin: the bpipe writer stores the piece arriving on stdin."""
    store.store(stdin_fd, BareosJob.from_environ().landing_dir(os.path.abspath(into), where))


def _command(commands, name: str, help_text: str):
    sub = commands.add_parser(name, help=help_text, description=help_text)
    sub.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    return sub


def _list_parser(commands) -> None:
    sub = _command(commands, "list", "show the pieces in DIR and the chain a restore would use")
    sub.add_argument("directory", metavar="DIR")
    sub.add_argument("--until", type=int, metavar="SEQ", help="restore up to this sequence number")
    sub.set_defaults(run=_run_list)


def _run_list(args: argparse.Namespace) -> None:
    print(chain.select_chain(chain.load_pieces(args.directory), args.directory, args.until).listing())


def _prepare_parser(commands) -> None:
    sub = _command(commands, "prepare", "validate, extract and prepare the chain in DIR")
    sub.add_argument("directory", metavar="DIR")
    sub.add_argument("--until", type=int, metavar="SEQ", help="restore up to this sequence number")
    sub.add_argument("--force", action="store_true", help="replace an earlier DIR/prepared")
    _tool_options(sub)
    sub.set_defaults(run=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> None:
    result = prepare.prepare(args.directory, Tools.resolve(args.mariabackup, args.mbstream),
                             args.force, args.until, tuple(args.options))
    print(f"prepared: {os.path.join(args.directory, prepare.PREPARED)}\n{result.describe()}")


def _copy_back_parser(commands, nextcloud_options) -> None:
    sub = _command(commands, "copy-back", "swap DIR/prepared in for the server's data directory")
    sub.add_argument("directory", metavar="DIR")
    sub.add_argument("--datadir", required=True, metavar="D", help="the server's data directory")
    sub.add_argument("--service", default="mariadb", help="service to stop and start (default: mariadb)")
    cli.add_service_manager(sub)
    sub.add_argument("--start-timeout", type=cli.seconds, default=SERVER_START_TIMEOUT, metavar="SECONDS",
                     help=f"how long the restarted server may take to answer (default: {SERVER_START_TIMEOUT})")
    nextcloud_options(sub)
    sub.add_argument("--state-dir", metavar="DIR", help="chain state of dbpipe-mariabackup to retire "
                     f"(default: {state.chains_root()}/default if it exists)")
    cli.add_keep_old_copies(sub, "the data directory (DATADIR.dbpipe-old-*, .dbpipe-failed-*)")
    _tool_options(sub, prepare_options=False)
    cli.add_target_options(sub, "how to reach the restarted server (mysql)", nextcloud=False)
    sub.set_defaults(run=_run_copy_back)


def _run_copy_back(args: argparse.Namespace) -> None:
    default_state = os.path.join(state.chains_root(), "default")
    request = copyback.CopyBackRequest(
        directory=args.directory, datadir=args.datadir,
        service=Service(args.service, ServiceManager.detect(args.service_manager, LONG_TIMEOUT)),
        target=cli.target_from_args(args, all_databases=True, base=Target(type="mysql")),
        tools=Tools.resolve(args.mariabackup, args.mbstream, extract=False),
        start_timeout=args.start_timeout, closed=args.closed(args), keep_old_copies=args.keep_old_copies,
        state_dir=args.state_dir or (default_state if os.path.isdir(default_state) else None))
    copyback.copy_back(request)


def _tool_options(sub, prepare_options: bool = True) -> None:
    sub.add_argument("--mariabackup", metavar="PATH", help="default: mariabackup (or xtrabackup)")
    sub.add_argument("--mbstream", metavar="PATH", help="default: mbstream (xbstream for xtrabackup)")
    if prepare_options:
        sub.add_argument("--option", dest="options", action="append", default=[], metavar="OPT",
                         help="extra option for mariabackup --prepare, e.g. --option=--use-memory=1G")
