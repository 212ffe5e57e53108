"""Command-line options the point-in-time commands share."""

from __future__ import annotations

import argparse
import os

from ..files import state_root
from .spool import MiB, Spool

DEFAULT_MAX_SPOOL_MB = 4096


def default_spool() -> str:
    return os.path.join(state_root(), "pitr", "spool")


def add_spool(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spool", metavar="DIR", default=None,
                        help="the archive spool (default: $DBPIPE_STATE_DIR/pitr/spool, "
                             "i.e. /var/lib/dbpipe/pitr/spool)")
    parser.add_argument("--max-spool-mb", type=int, default=DEFAULT_MAX_SPOOL_MB, metavar="N",
                        help="refuse new files while the spool holds more than N MiB "
                             "(default: %(default)s; 0: no limit)")


def spool_from(args: argparse.Namespace) -> Spool:
    limit = args.max_spool_mb * MiB if args.max_spool_mb else None
    return Spool(args.spool or default_spool(), limit)
