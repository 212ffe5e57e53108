"""dbpipe-pitr-restore's command line: which archive, which engine, and
whether to fetch it from Bareos first."""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable

from .. import cli, stamps
from ..bareos import Catalog
from ..errors import UsageError
from ..files import state_root
from ..process import RECOVERY_TIMEOUT, find_tool
from ..services import Service, ServiceManager
from . import fetch, mariarestore, pgrestore
from .swap import finish_interrupted, refuse_unfinished
from .targettime import RecoveryTarget


def add_options(parser: argparse.ArgumentParser,
                nextcloud_options: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """nextcloud_options adds --nextcloud and the like (pitr/ knows no
    Nextcloud; the executable plugs them in, setting args.closed)."""
    parser.add_argument("--engine", choices=("pgsql", "mysql"), default="pgsql",
                        help="pgsql (WAL) or mysql (MariaDB binary logs) (default: %(default)s)")
    targets = parser.add_mutually_exclusive_group(required=True)
    targets.add_argument("--to", metavar="TIME", help="'YYYY-MM-DD HH:MM:SS[+zone]' or latest")
    targets.add_argument("--to-xid", metavar="XID",
                         help="pgsql: up to and including the commit of this transaction (recovery_target_xid)")
    targets.add_argument("--to-position", metavar="FILE:POS",
                         help="mysql: every binary log event before position POS of FILE (an end_log_pos, "
                              "e.g. mysql-bin.000012:4567)")
    targets.add_argument("--finish-swap", action="store_true",
                         help="only finish (or roll back) a swap a killed run left; needs --service")
    parser.add_argument("--datadir", required=True, help="the live server's data directory")
    parser.add_argument("--wal", "--archive", dest="wal", metavar="DIR",
                        help="archived WAL segments or binary logs (default: the spool, "
                        "$DBPIPE_STATE_DIR/pitr/spool)")
    parser.add_argument("--bases", metavar="DIR", help="stored base backups (default: "
                        "$DBPIPE_STATE_DIR/pitr/pg-base; mysql: $DBPIPE_STATE_DIR/mariabackup-restore)")
    parser.add_argument("--service", metavar="NAME", help="the server's service, stopped and started for the swap")
    cli.add_service_manager(parser)
    parser.add_argument("--beside", action="store_true",
                        help="leave the recovered server beside the live one; change nothing live")
    parser.add_argument("--check", action="store_true", help="only plan: say what would be recovered")
    parser.add_argument("--drill", action="store_true",
                        help="recover beside, report the newest recoverable time, remove what was built")
    parser.add_argument("--remove-archive", action="store_true",
                        help="with --drill: remove the --wal and --bases directories afterwards (a drill's "
                             "fetched copy; never the spool)")
    parser.add_argument("--pg-bindir", metavar="DIR", help="server binaries (default: by PG_VERSION)")
    parser.add_argument("--timeout", type=cli.seconds, default=RECOVERY_TIMEOUT,
                        help="for the recovery (default: %(default)s)")
    add_bareos(parser)
    if nextcloud_options:
        nextcloud_options(parser.add_argument_group("Nextcloud (with --service: closed around the swap)"))


def add_bareos(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fetching the archive from Bareos (--bareos)")
    group.add_argument("--bareos", action="store_true", help="restore base backup and WAL from Bareos first")
    group.add_argument("--bconsole-config", metavar="FILE", default="/etc/bareos/bconsole.conf",
                       help="default: %(default)s")
    group.add_argument("--client", default="bareos-fd", help="default: %(default)s")
    group.add_argument("--restorejob", default="restore-dbpipe-files", help="default: %(default)s")
    group.add_argument("--base-job", help="default: backup-pg-base; mysql: backup-mariadb-physical")
    group.add_argument("--spool-job", default="backup-pitr-spool", help="default: %(default)s")
    group.add_argument("--fetch-into", metavar="DIR",
                       help="below DIR/<time> go the fetched files (default: $DBPIPE_STATE_DIR/pitr/fetched)")


def run(args: argparse.Namespace) -> str:
    service = Service(args.service, ServiceManager.detect(args.service_manager)) if args.service else None
    service = None if args.beside or args.drill else service
    if service is None or args.check:
        refuse_unfinished(os.path.abspath(args.datadir))
    else:
        repaired = finish_interrupted(service, os.path.abspath(args.datadir))
        if repaired or args.finish_swap:
            return repaired or f"no interrupted point-in-time swap into {args.datadir} is recorded"
    target = target_of(args)
    fetched = _fetch_dir(args)
    removed = _removable(args)
    try:
        return _restore(args, target, service, fetched)
    finally:
        for path in removed + ([fetched] if args.drill and fetched else []):
            shutil.rmtree(path, ignore_errors=True)


def target_of(args: argparse.Namespace) -> RecoveryTarget:
    """--to, --to-xid (PostgreSQL) or --to-position (MariaDB), each for its engine only."""
    if args.to_xid is not None:
        if args.engine != "pgsql":
            raise UsageError("--to-xid is a PostgreSQL transaction id; for MariaDB give --to-position FILE:POS "
                             "or --to TIME")
        return RecoveryTarget.transaction(args.to_xid)
    if args.to_position is not None:
        if args.engine != "mysql":
            raise UsageError("--to-position is a MariaDB binary log position (--engine mysql); for PostgreSQL "
                             "give --to-xid XID or --to TIME")
        return RecoveryTarget.position(args.to_position)
    return RecoveryTarget.parse(args.to)


def _removable(args: argparse.Namespace) -> list[str]:
    """--remove-archive: only a drill's own copy, named explicitly, never the spool."""
    if not args.remove_archive:
        return []
    spool = os.path.join(state_root(), "pitr", "spool")
    if not (args.drill and args.wal and args.bases) or os.path.abspath(args.wal) == os.path.abspath(spool):
        raise UsageError("--remove-archive needs --drill with --wal and --bases naming a fetched copy, "
                         "not the spool")
    return [args.wal, args.bases]


def _fetch_dir(args: argparse.Namespace) -> str | None:
    """A new directory per run (a drill removes its own afterwards)."""
    if not args.bareos:
        return None
    return os.path.join(args.fetch_into or os.path.join(state_root(), "pitr", "fetched"), stamps.for_name())


def _restore(args: argparse.Namespace, target: RecoveryTarget, service: Service | None, fetched: str | None) -> str:
    wal, bases = _archive(args, target, fetched)
    datadir = os.path.abspath(args.datadir)
    closed = args.closed(args) if getattr(args, "closed", None) and service else None
    if args.engine == "mysql":
        return mariarestore.restore(mariarestore.MariaRestore(
            wal, bases, datadir, target, service, args.timeout, args.check, args.drill, closed))
    return pgrestore.restore(pgrestore.PgRestore(
        wal, bases, datadir, target, service, args.pg_bindir, args.timeout, args.check, args.drill, closed))


def _archive(args: argparse.Namespace, target: RecoveryTarget, where: str | None) -> tuple[str, str]:
    """Where the WAL/binary logs and the base backups are - fetched from Bareos first with --bareos."""
    wal = args.wal or os.path.join(state_root(), "pitr", "spool")
    bases = args.bases or os.path.join(state_root(), *(("pitr", "pg-base") if args.engine == "pgsql"
                                                       else ("mariabackup-restore",)))
    if where is None:
        return wal, bases
    base_job = args.base_job or ("backup-pg-base" if args.engine == "pgsql" else "backup-mariadb-physical")
    catalog = Catalog(find_tool("bconsole", package_hint="bareos-bconsole"), args.bconsole_config)
    source = fetch.BareosSource(catalog, args.client, args.restorejob, base_job, args.spool_job)
    fetch.fetch(source, target, where, chain=args.engine == "mysql")
    return tuple(os.path.join(where, path.lstrip("/")) for path in (wal, bases))
