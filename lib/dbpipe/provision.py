"""An empty database server on a new machine: create the database and the
account a restore's target names, before anything else changes.

Disaster recovery restores the files first and the database stream last (a
FileSet lists its files before the bpipe plugin, and Bareos restores in
backup order), so the writer reads the database name, user and password
from the config.php that job has just put back - the password never travels
in the stream.  When the account cannot log in, the server's administrative
account (verify.administrative_target: MariaDB root over the socket,
PostgreSQL postgres by peer) creates what is missing, as the application's
installer would.  Without that account nothing is changed: the verified
stream is kept in the state directory and one line says which statements
the administrator runs and which command then finishes the restore."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .engines import Engine
from .errors import DbpipeError, NoInputError, PermissionDenied, UnavailableError, UsageError
from .files import state_root
from .log import log
from .target import Target

PLACEHOLDER = "'<password>'"


@dataclass(frozen=True)
class Finish:
    """How the admin finishes a restore the missing account stopped: where
    the password is read, and the command that loads the kept stream
    ({file} is replaced by its path)."""

    password_from: str = "the password of the restore's database account"
    command: str = "dbpipe-restore --database {database} < {file}"


DEFAULT_FINISH = Finish()


class AccountMissing(PermissionDenied):
    """The account or database is missing and only the administrator can create it."""

    def __init__(self, message: str, statements: list[str]):
        super().__init__(message)
        self.statements = statements


def ensure_account(engine: Engine, target: Target) -> None:
    """Return when target's account can log in, creating the user (and its
    database when missing) with the administrative account; raise
    AccountMissing when that account is out of reach - then nobody can tell
    a missing user from a wrong password, so the line says both.  An
    existing user is never changed, and a server that does not answer is no
    missing account: the restore's own error says so."""
    steps = engine.provisioning()
    if steps is None or not target.user:
        return
    try:
        steps.can_log_in(engine, target)
        return
    except NoInputError:
        return             # logged in, the database is missing: the engine creates it, as ever
    except PermissionDenied as exc:
        reason = exc
    try:
        user_missing, database_missing, admin = _ask_administrator(engine, steps, target)
    except (PermissionDenied, UnavailableError, UsageError, NoInputError) as exc:
        raise AccountMissing(f"{reason}; {exc}", steps.statements(target, PLACEHOLDER)) from None
    if not user_missing:
        raise reason       # an existing user: a wrong password or a narrower grant is the admin's call
    log.info("creating %s on the empty server, as the application's installer does",
             _what(target, user_missing, database_missing))
    steps.create(engine, admin, target, user_missing, database_missing)
    steps.can_log_in(engine, target)


def _ask_administrator(engine: Engine, steps, target: Target) -> tuple[bool, bool, Target]:
    """(user missing, database missing, the administrative account)."""
    if os.geteuid() != 0:
        raise PermissionDenied("not run as root, the writer cannot use the server's administrative account")
    admin = _administrative(target)
    try:
        return (*steps.missing(engine, admin, target), admin)
    except (PermissionDenied, UnavailableError, NoInputError) as exc:
        raise PermissionDenied(f"the server's administrative account is out of reach ({exc})") from None


def _administrative(target: Target) -> Target:
    """verify.administrative_target, which asks the server for its socket
    with target's own login - impossible when that user is what is missing.
    Then, for a server config.php reaches as plain 'localhost', the
    distribution's socket: MariaDB's default ones, PostgreSQL's
    /var/run/postgresql."""
    from .verify import PG_SOCKET_DIR, LOCAL_HOSTS, administrative_target

    try:
        return administrative_target(target)
    except DbpipeError:    # denied: 1045, or 1698 for a missing user over the socket
        if target.socket or target.host not in LOCAL_HOSTS or (target.type == "mysql" and target.port):
            raise
    if target.type == "mysql":
        return Target(type="mysql", user="root")      # connect() takes the first default socket there is
    return Target(type="pgsql", socket=PG_SOCKET_DIR, port=target.port, user="postgres", peer=True)


def _what(target: Target, user_missing: bool, database_missing: bool) -> str:
    return " and ".join(([f"the user {target.user!r}"] if user_missing else [])
                        + ([f"the database {target.database!r}"] if database_missing else []))


def kept_stream_path(target: Target, engine: Engine) -> str:
    """Where the verified stream waits for the administrator (0600, private state)."""
    return os.path.join(state_root(), "restore", f"{engine.name}-{os.path.basename(target.database)}.sql")


def instructions(exc: AccountMissing, finish: Finish, target: Target, kept: str | None) -> DbpipeError:
    """The one line the job log shows: the statements, where the password
    is (never the password), and what then finishes the restore."""
    sql = "; ".join(exc.statements)
    then = (finish.command.format(file=kept, database=target.database) if kept
            else "run the restore again")
    return PermissionDenied(f"{exc}; nothing was changed. As the database server's administrator run: {sql}; "
                            f"(<password>: {finish.password_from}); then: {then}")
