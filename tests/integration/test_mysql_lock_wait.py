"""A MariaDB dump waiting for a metadata lock (issue 18 point 5): mariadb-dump
has no lock-wait option, so dbpipe-dump's watchdog ends it after --lock-timeout
with exit 75, one line naming the table and the session holding (or likely
holding) the lock, no dump tool left running and no session left waiting on
the server; 0 waits for ever.  Real private MariaDB, a real second session
holding LOCK TABLES ... WRITE (which holds mariadb-dump --single-transaction
off: its SELECT needs a shared read lock)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time

import pytest

from ..conftest import make_mysql
from ..helpers import BARE_PATH, dbpipe, write_secret
from testkit.prerequisites import not_applicable
from .kit import LeftoverWatch, assert_result, has_trailer, wait_for

HOST = r"host [^,]+"   # localhost over the socket, address:port over TCP (docker servers)
LOCKED = "oc_shares"   # dumped after tables the dump reads first; no view is built on it
SECRET = "s3cr3t-value"


def holding_session(server, db, user: str | None = None, password: str | None = None,
                    holds: str = f"LOCK TABLES {LOCKED} WRITE"):
    """A mariadb client session (an admin's, or the account's own: Nextcloud's
    cron) that took LOCK TABLES ... WRITE and stays idle holding it, and its
    connection id.  Its last statement carries a string literal that must
    never be printed; its named lock says (IS_USED_LOCK) that it got there."""
    marker = f"held-{db.name}"
    argv = ["mariadb", "--batch", *server._mysql_conn(), f"--user={user or server.admin_user}",
            f"--database={db.name}"]
    env = {"PATH": BARE_PATH, **({"MYSQL_PWD": password} if password else server.password_env())}
    session = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, text=True, env=env)
    session.stdin.write(f"{holds}; SELECT GET_LOCK('{marker}', 0), '{SECRET}';\n")
    session.stdin.flush()
    holder = wait_for(lambda: server.sql(f"SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Sleep' "
                                         f"AND ID = IS_USED_LOCK('{marker}')"), "the session holding the lock")
    return session, holder


def waiting_sessions(server, user: str) -> str:
    return server.sql(f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}' "
                      "AND STATE LIKE 'Waiting for%'")


def release(session: subprocess.Popen) -> None:
    with contextlib.suppress(BrokenPipeError):
        session.stdin.close()
    session.wait(30)


def user_of(db) -> str:
    return db.user_args[db.user_args.index("--user") + 1]


@contextlib.contextmanager
def metadata_lock_info(server, loaded: bool):
    if loaded:
        server.sql("INSTALL SONAME 'metadata_lock_info'")
    try:
        yield
    finally:
        if loaded:
            server.sql("UNINSTALL SONAME 'metadata_lock_info'")


def dump_gives_up(db, env, syslog, pattern: str) -> None:
    """dbpipe-dump --lock-timeout 2: exit 75 within seconds with the one line,
    nothing left running here, no session of the account left waiting there."""
    started = time.monotonic()
    with LeftoverWatch():
        result = dbpipe("dbpipe-dump", *db.args(), "--lock-timeout", "2", env=env, timeout=120)
    elapsed = time.monotonic() - started
    message = assert_result(result, syslog, "dbpipe-dump", 75, pattern)
    assert 2 <= elapsed < 15, elapsed
    assert SECRET not in result.stderr.decode() and SECRET not in syslog.text()
    assert db.password not in result.stderr.decode()
    assert not has_trailer(result.stdout) and b"-- Dump completed" not in result.stdout
    wait_for(lambda: not waiting_sessions(db.server, user_of(db)), "the dump's session to go", timeout=10)
    return message


@pytest.mark.parametrize("plugin", [False, True], ids=["processlist", "metadata_lock_info"])
def test_dump_waiting_for_a_metadata_lock_gives_up_naming_the_session(mysql_server, tmp_path, env, syslog,
                                                                      plugin):
    """An admin's LOCK TABLES: with the PROCESS privilege the account sees the
    session; metadata_lock_info knows it holds the lock, PROCESSLIST alone
    makes it the likeliest holder (idle on the database the longest)."""
    if plugin:
        mariadb_only(mysql_server, "the metadata_lock_info plugin")
    db = make_mysql(mysql_server, tmp_path)
    session, holder = holding_session(mysql_server, db)
    try:
        with metadata_lock_info(mysql_server, plugin):
            dump_gives_up(db, env, syslog,
                          rf"^mariadb-dump waited more than 2 s for a table metadata lock on {db.name}\.{LOCKED} "
                          rf"\(--lock-timeout\), {'' if plugin else 'likely '}held by session {holder} \(user "
                          rf"{mysql_server.admin_user}, {HOST}, command Sleep, time \d+ s, query -\)"
                          r"( (and|or) .*)?; try again once it is released$")
        assert session.poll() is None, "the holding session must not be touched"
    finally:
        release(session)
    result = dbpipe("dbpipe-dump", *db.args(), "--lock-timeout", "2", env=env)
    assert result.returncode == 0 and has_trailer(result.stdout), result.stderr.decode()


def test_dump_as_an_account_without_process_names_its_own_sessions_only(mysql_server, tmp_path, env, syslog):
    """Nextcloud's account (all rights on its database, no PROCESS): its own
    cron session holding the lock is named - the watchdog tells the dump's
    session from the account's others; an admin's session it cannot see, and
    says so."""
    db = make_mysql(mysql_server, tmp_path, can_create=False)
    user = user_of(db)
    session, holder = holding_session(mysql_server, db, user=user, password=db.password)
    try:
        dump_gives_up(db, env, syslog,
                      rf"^mariadb-dump waited more than 2 s for a table metadata lock on {db.name}\.{LOCKED} "
                      rf"\(--lock-timeout\), likely held by session {holder} \(user {user}, {HOST}, "
                      r"command Sleep, time \d+ s, query -\); try again once it is released$")
    finally:
        release(session)
    session, _ = holding_session(mysql_server, db)
    try:
        dump_gives_up(db, env, syslog,
                      rf"^mariadb-dump waited more than 2 s for a table metadata lock on {db.name}\.{LOCKED} "
                      rf"\(--lock-timeout\), held by a session user {user} cannot see \(an account without "
                      r"the PROCESS privilege sees only its own\); try again once it is released$")
    finally:
        release(session)


def test_dump_queued_behind_an_upgrades_alter_table_names_the_open_transaction(mysql_server, tmp_path, env,
                                                                              syslog):
    """Nextcloud's upgrade runs ALTER TABLE while a transaction (cron's) still
    reads the table: the ALTER waits for its exclusive lock and every new
    reader, the dump too, queues behind it.  The likely holder is the
    transaction - not the ALTER, which waits itself."""
    db = make_mysql(mysql_server, tmp_path)
    session, holder = holding_session(mysql_server, db, holds=f"BEGIN; SELECT COUNT(*) FROM {LOCKED}")
    alter = subprocess.Popen(["mariadb", *mysql_server._mysql_conn(), f"--user={mysql_server.admin_user}",
                              f"--database={db.name}", "-e", f"ALTER TABLE {LOCKED} ADD COLUMN note INT"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={"PATH": BARE_PATH, **mysql_server.password_env()})
    try:
        wait_for(lambda: mysql_server.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                                          "'ALTER TABLE%' AND STATE = 'Waiting for table metadata lock'"),
                 "the ALTER TABLE queued for its lock")
        dump_gives_up(db, env, syslog,
                      rf"^mariadb-dump waited more than 2 s for a table metadata lock on {db.name}\.{LOCKED} "
                      rf"\(--lock-timeout\), likely held by session {holder} \(user {mysql_server.admin_user}, "
                      rf"{HOST}, command Sleep, time \d+ s, query -\); try again once it is released$")
    finally:
        release(session)
        assert alter.wait(30) == 0


def test_lock_timeout_0_waits_until_the_lock_is_released(mysql_server, tmp_path, env):
    db = make_mysql(mysql_server, tmp_path)
    session, _ = holding_session(mysql_server, db)
    releaser = threading.Timer(3, release, (session,))
    started = time.monotonic()
    releaser.start()
    try:
        with LeftoverWatch():
            result = dbpipe("dbpipe-dump", *db.args(), "--lock-timeout", "0", env=env, timeout=120)
    finally:
        releaser.join()
    assert result.returncode == 0, result.stderr.decode()
    assert time.monotonic() - started >= 3
    assert has_trailer(result.stdout)
    assert dbpipe("dbpipe-verify", stdin=result.stdout, env=env).returncode == 0



def test_a_dump_the_watchdog_cannot_watch_runs_and_says_so(mysql_server, tmp_path, env, syslog):
    """An account the watchdog's driver cannot log in as (ed25519 without
    PyNaCl) but mariadb-dump can: the dump is not refused for its watchdog;
    it succeeds, and warns that its lock wait was unbounded."""
    mariadb_only(mysql_server, "ed25519 authentication")
    if not mysql_server.socket:
        not_applicable("a local account ('localhost') needs the server's socket")
    db = make_mysql(mysql_server, tmp_path)
    user, password = f"ed_{db.name}", "ed-pw"
    mysql_server.sql("INSTALL SONAME 'auth_ed25519'")
    try:
        mysql_server.sql(f"CREATE USER '{user}'@'localhost' IDENTIFIED VIA ed25519 USING PASSWORD('{password}'); "
                         f"GRANT ALL ON `{db.name}`.* TO '{user}'@'localhost'")
        args = mysql_server.args(db.name, user=user, password_file=write_secret(tmp_path, "ed.pw", password))
        with LeftoverWatch():
            result = dbpipe("dbpipe-dump", *args, env=env)
        assert result.returncode == 0 and has_trailer(result.stdout), result.stderr.decode()
        assert "--lock-timeout was not enforced for this dump: " in result.stderr.decode()
        assert password not in result.stderr.decode()
    finally:
        mysql_server.sql(f"DROP USER IF EXISTS '{user}'@'localhost'; UNINSTALL SONAME 'auth_ed25519'")


def mariadb_only(server, what: str) -> None:
    if "mariadb" not in server.sql("SELECT VERSION()").lower():
        not_applicable(f"{what} is MariaDB's")
