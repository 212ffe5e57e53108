"""What every executable shares: the parser, target options, and the one place
where exceptions become a log line and an exit code."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import DbpipeError, ExitCode, UsageError
from .engines import RestoreOptions
from .bareos import BareosJob, JobLog, JobLogHandler, is_job_id
from .log import log, register_secret, setup
from .process import cancellable
from .target import ENGINE_TYPES, Target, finish, load_config, parse_port, profile_path, read_password_file


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as exit 64 (EX_USAGE), not 2."""

    def error(self, message):
        raise UsageError(f"{message} (see --help)")


def parser(program: str, description: str, epilog: str | None = None) -> Parser:
    result = Parser(prog=program, description=description, epilog=epilog,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--version", action="version", version=f"{program} {__version__}")
    result.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    return result


def add_target_options(parser: argparse.ArgumentParser, title: str = "database target",
                       prefix: str = "", nextcloud: bool = True) -> None:
    """--type, --host, ... (with prefix: --scratch-type, --scratch-host, ...).

    --nextcloud/--php only without prefix, and not for the Nextcloud hooks,
    which take the installation as their argument."""
    group = parser.add_argument_group(title, "Command-line values override --config/--profile.")
    opt = lambda name: f"--{prefix}{name}"  # noqa: E731
    dest = lambda name: f"{prefix}{name}".replace("-", "_")  # noqa: E731
    group.add_argument(opt("type"), dest=dest("type"), choices=ENGINE_TYPES,
                       help="mysql (MariaDB and MySQL), pgsql or sqlite")
    group.add_argument(opt("host"), dest=dest("host"), help="server host name or address")
    group.add_argument(opt("port"), dest=dest("port"), help="server TCP port")
    group.add_argument(opt("socket"), dest=dest("socket"),
                       help="mysql: socket file; pgsql: directory holding the socket")
    group.add_argument(opt("user"), dest=dest("user"), help="database user")
    group.add_argument(opt("password-file"), dest=dest("password_file"), metavar="FILE",
                       help="read the password from the first line of FILE")
    group.add_argument(opt("database"), dest=dest("database"), metavar="NAME",
                       help="database name (sqlite: path of the database file)")
    group.add_argument(opt("defaults-file"), dest=dest("defaults_file"), metavar="FILE",
                       help="mysql option file, e.g. /etc/mysql/debian.cnf")
    group.add_argument(opt("config"), dest=dest("config"), metavar="FILE",
                       help="INI file with a [database] section holding these keys (+ password=)")
    group.add_argument(opt("profile"), dest=dest("profile"), metavar="NAME",
                       help="use /etc/dbpipe/NAME.conf (directory from $DBPIPE_CONFIG_DIR)")
    if not prefix and nextcloud:
        group.add_argument("--nextcloud", metavar="DIR",
                           help="take the target from the Nextcloud installation in DIR (its merged "
                                "config, read with PHP as the owner of config/config.php)")
        group.add_argument("--php", metavar="PATH", help="PHP CLI for --nextcloud (default: php)")


def add_bareos_where(parser: argparse.ArgumentParser, help_text: str) -> None:
    """--where DIR for a bpipe writer (Bareos' %w).  Bareos up to 25 turns
    where=/ into an empty string: attached (--where=%w) it arrives as
    --where=, detached it vanishes from argv and --where stands alone, which
    must mean the same (nargs="?")."""
    parser.add_argument("--where", metavar="DIR", nargs="?", const="", help=help_text)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a number >= 0: {text!r}")
    return int(text)


def job_id(text: str) -> str:
    """An argparse type: a Bareos JobId (%i), digits only."""
    if not is_job_id(text):
        raise argparse.ArgumentTypeError(f"not a Bareos JobId: {text!r}")
    return text


def seconds(text: str) -> float:
    """An argparse type: a duration in seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def add_keep_old_copies(parser: argparse.ArgumentParser, what: str = "replaced data") -> None:
    """--keep-old-copies N, shared by everything that keeps what it replaced."""
    parser.add_argument("--keep-old-copies", type=_count, metavar="N",
                        help=f"after a successful restore keep only the newest N copies of {what}, "
                             "earlier restores' included (0: none); every kept copy is listed with "
                             "its size (default: keep all)")


def add_restore_options(parser: argparse.ArgumentParser, keep_old_switch: bool = True) -> None:
    """--mode, --drop-old (and --keep-old), --keep-old-copies and
    --lock-timeout: how a restore into the live database goes, the same for
    every program that does one (restore_options reads them)."""
    parser.add_argument("--mode", choices=("auto", "atomic", "replace"), default="auto",
                        help="mysql: atomic = staging database + RENAME TABLE; replace = "
                             "verify a spooled copy, then drop and reload in place (for accounts "
                             "that may not create databases); auto picks (default)")
    old = parser.add_mutually_exclusive_group()
    if keep_old_switch:
        old.add_argument("--keep-old", dest="keep_old", action="store_true", default=True,
                         help="keep the replaced data (mysql: side database, sqlite: file) (default)")
    old.add_argument("--drop-old", dest="keep_old", action="store_false",
                     help="remove the replaced data after a successful restore")
    add_keep_old_copies(parser)
    add_lock_timeout(parser, RestoreOptions.lock_timeout, "pgsql")


def restore_options(args: argparse.Namespace) -> RestoreOptions:
    """The options add_restore_options defined, as the engines take them."""
    return RestoreOptions(mode=args.mode, keep_old=args.keep_old, temp_dir=getattr(args, "temp_dir", None),
                          keep_old_copies=args.keep_old_copies, lock_timeout=args.lock_timeout)


def add_lock_timeout(parser: argparse.ArgumentParser, default: float, what: str,
                     dest: str = "lock_timeout") -> None:
    """--lock-timeout SECONDS: how long a dump or restore waits for a lock
    another session holds before it gives up with exit 75 (try again later)."""
    parser.add_argument("--lock-timeout", type=seconds, default=default, metavar="SECONDS", dest=dest,
                        help=f"{what}: give up (exit 75, naming the session holding the lock) after "
                             f"waiting SECONDS for a lock (default: {default:g}; 0: wait for ever)")


def add_service_manager(parser) -> None:
    """--service-manager PATH, shared by everything that stops and starts a
    service (services.ServiceManager.detect takes it)."""
    parser.add_argument("--service-manager", metavar="PATH",
                        help="program run as 'PATH stop|start|is-active NAME', or one named service "
                             "the service(8) way (default: systemctl under systemd, else service)")


def target_from_args(args: argparse.Namespace, prefix: str = "", all_databases: bool = False,
                     base: Target | None = None, database_optional: bool = False) -> Target:
    """Layer: base (e.g. a Nextcloud installation: nextcloud.options builds
    it for --nextcloud), profile, config file, flags."""
    value = lambda name: getattr(args, f"{prefix}{name}".replace("-", "_"), None)  # noqa: E731
    target = base or Target()
    for path in (profile_path(value("profile")) if value("profile") else None, value("config")):
        if path:
            target = target.merged(**load_config(path))
    target = target.merged(
        type=value("type"), host=value("host"), socket=value("socket"), user=value("user"),
        database=value("database"), defaults_file=value("defaults_file"),
        port=parse_port(value("port")) if value("port") else None,
        password=read_password_file(value("password_file")) if value("password_file") else None,
    )
    register_secret(target.password)
    return finish(target, all_databases=all_databases, database_optional=database_optional)


def run(program: str, main: Callable[[Sequence[str]], int | None],
        argv: Sequence[str] | None = None, quiet_stderr: bool = False) -> int:
    """Run main; every failure becomes one log line and its exit code.

    quiet_stderr: only that line reaches stderr (a caller reads it as data).
    Inside a Bareos job the outcome is also recorded for the job (JobLog)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    job = BareosJob.from_environ()
    setup(program, job.label(), verbose=bool({"-v", "--verbose"} & set(argv)),
          stderr_level=logging.ERROR if quiet_stderr else logging.NOTSET)
    record = JobLog(job.job_id) if is_job_id(job.job_id) else None
    if record:
        log.addHandler(JobLogHandler(record, program))
        _quietly(record.prune)
        _quietly(record.started, program)
    code = _run(main, argv)
    if record:
        _quietly(record.ended, program, code)
    return code


def record_for_job(program: str, job_id: str | None) -> None:
    """Also record this run's log lines for `dbpipe-joblog JOBID`, for a
    program Bareos runs without its job environment but with %i on the
    command line (a FileSet's File = "\\|command").  Anything but a JobId
    (e.g. an unsubstituted %i in a shell) is ignored."""
    if is_job_id(job_id) and not BareosJob.from_environ().job_id:
        record = JobLog(job_id)
        log.addHandler(JobLogHandler(record, program))
        _quietly(record.prune)


def _run(main, argv) -> int:
    try:
        with cancellable():
            return int(main(argv) or ExitCode.OK)
    except DbpipeError as exc:
        log.error("%s", exc)
        return exc.code
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        log.exception("internal error: %s", exc)
        return ExitCode.SOFTWARE


def _quietly(action, *args) -> None:
    """Keeping the job's record never fails the program."""
    with contextlib.suppress(OSError):
        action(*args)
