"""dbpipe-verify's command line: its options, and from them a typed
verify.CheckRequest."""

from __future__ import annotations

import argparse

from . import cli
from .nextcloud.config import CORE_TABLES
from .nextcloud.options import installation_target
from .verify import CheckRequest, Scratch, scratch_target

NAMED = ("type", "config", "profile", "user", "password_file", "defaults_file")   # an account is named


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", help="stream file (default: stdin)")
    parser.add_argument("--test-restore", action="store_true",
                        help="also restore into a throwaway database/file, check it, remove it")
    parser.add_argument("--require-core-tables", action="store_true",
                        help="with --nextcloud: the test restore must hold Nextcloud's core tables "
                             "(oc_appconfig, oc_filecache, oc_storages, oc_users; prefix from config.php)")
    parser.add_argument("--remove", action="store_true",
                        help="remove FILE afterwards, whatever the verdict (a restore drill's copy)")
    cli.add_target_options(parser, "server for --test-restore (mysql/pgsql)")


def request(args: argparse.Namespace) -> CheckRequest:
    scratch = (lambda: _scratch(args)) if args.test_restore else None
    return CheckRequest(args.file, args.remove, scratch)


def _scratch(args: argparse.Namespace) -> Scratch:
    """With --nextcloud: Nextcloud's core tables may be required, and the
    scratch database goes beside Nextcloud's."""
    installation = installation_target(args)
    required = (tuple((installation.table_prefix or "") + name for name in CORE_TABLES)
                if installation and args.require_core_tables else ())
    named = (cli.target_from_args(args, all_databases=True, base=installation)
             if any(getattr(args, key, None) for key in NAMED) and args.type != "sqlite" else None)
    return Scratch(scratch_target(named, installation), required)
