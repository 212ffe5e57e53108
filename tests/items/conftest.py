"""Fixtures for item restore: DAV-table dumps on every engine (built once per
session), a scratch-server view that shows leftover databases, and a private
Radicale CalDAV/CardDAV server on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import base64
from dataclasses import dataclass, field

import pytest

from testkit import servers
from ..helpers import bareos_env, dbpipe, write_secret
from . import davdata

ENGINES = ["sqlite", "mysql", "pgsql"]


@dataclass
class Dump:
    """A stored dbpipe stream of a database holding the DAV fixture."""

    kind: str
    path: str
    server: object = None

    def scratch_args(self) -> list[str]:
        """--scratch-* options for the fixture's own server (admin account)."""
        if self.server is None:
            return []
        return ["--scratch-" + a[2:] if a.startswith("--") else a for a in self.server.args()]

    def databases(self) -> set[str]:
        """The server's databases: a scratch database left behind shows up here."""
        if self.server is None:
            return set()
        if self.kind == "mysql":
            return set(self.server.sql("SHOW DATABASES").split())
        return set(self.server.sql("SELECT datname FROM pg_database").split())


class DumpFactory:
    def __init__(self, pool, directory):
        self.pool, self.directory, self.made = pool, directory, {}

    def get(self, kind: str, variant: str = "nextcloud") -> Dump:
        if (kind, variant) not in self.made:
            self.made[kind, variant] = self._make(kind, variant)
        return self.made[kind, variant]

    def _make(self, kind: str, variant: str) -> Dump:
        path = os.path.join(self.directory, f"{kind}-{variant}.sql")
        if kind == "sqlite":
            source = os.path.join(self.directory, f"{variant}.db")
            if variant == "nextcloud":
                davdata.make_sqlite(source)
            elif variant == "legacy":
                davdata.make_sqlite(source, prefix="nc_", legacy=True)
            else:
                _no_dav_sqlite(source)
            server, args = None, ["--type", "sqlite", "--database", source]
        else:
            server = self.pool.get(kind, servers.server_specs()[kind][0])
            name = f"nc_items_{variant}_{secrets.token_hex(3)}"
            if variant == "nextcloud":
                davdata.make_server_db(server, name)
            else:
                server.create_database(name)
                server.sql("CREATE TABLE oc_appconfig (appid VARCHAR(32), configkey VARCHAR(64), "
                           "configvalue TEXT); INSERT INTO oc_appconfig VALUES ('core', 'v', '28');",
                           database=name)
            args = server.args(name)
        with open(path, "wb") as out:
            result = dbpipe("dbpipe-dump", *args, stdout=out, env=bareos_env())
        assert result.returncode == 0, result.stderr
        return Dump(kind, path, server)


def _no_dav_sqlite(path: str) -> None:
    import sqlite3
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE oc_appconfig (appid TEXT, configkey TEXT, configvalue TEXT);"
                       "INSERT INTO oc_appconfig VALUES ('core', 'installedat', '1700000000');")
    conn.commit()
    conn.close()


@pytest.fixture(scope="session")
def dav_dumps(server_pool, tmp_path_factory):
    return DumpFactory(server_pool, str(tmp_path_factory.mktemp("dav-dumps")))


@pytest.fixture(params=ENGINES)
def dav_dump(request, dav_dumps) -> Dump:
    return dav_dumps.get(request.param)


def restore_items(dump: Dump, command: str, *args, env=None, stdin=None):
    """Run nextcloud-restore-items on the dump with the scratch server options."""
    return dbpipe("nextcloud-restore-items", command, *args, *dump.scratch_args(),
                  dump.path if stdin is None else "-", stdin=stdin, env=env)


# --- Radicale ------------------------------------------------------------------------

RIGHTS = "[all]\nuser: .+\ncollection: .*\npermissions: RrWw\n"


@dataclass
class Radicale:
    """A private CalDAV/CardDAV server; every test gets its own DAV root."""

    port: int
    password: str
    password_file: str
    proc: subprocess.Popen = field(repr=False)
    login: str = "alice"

    def root(self) -> str:
        """A fresh DAV root, like https://cloud/remote.php/dav."""
        return f"http://127.0.0.1:{self.port}/t{secrets.token_hex(4)}"

    def request(self, method: str, url: str, body: bytes | None = None, headers=None):
        token = base64.b64encode(f"{self.login}:{self.password}".encode()).decode()
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={"Authorization": f"Basic {token}", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def make_collection(self, root: str, path: str, calendar: bool) -> str:
        """MKCOL the parents, then MKCALENDAR or an address-book MKCOL."""
        url = root
        self.request("MKCOL", url + "/")
        for part in path.strip("/").split("/")[:-1]:
            url += "/" + part
            self.request("MKCOL", url + "/")
        url += "/" + path.strip("/").split("/")[-1] + "/"
        if calendar:
            status, body = self.request("MKCALENDAR", url)
        else:
            status, body = self.request("MKCOL", url, ADDRESSBOOK_MKCOL, {"Content-Type": "application/xml"})
        assert status == 201, (status, body)
        return url

    def hrefs(self, collection_url: str) -> dict[str, bytes]:
        """Every object in a collection: name -> served content."""
        status, body = self.request("PROPFIND", collection_url, b"", {"Depth": "1"})
        assert status == 207, (status, body)
        import re
        import urllib.parse
        names = {urllib.parse.unquote(h.rstrip("/").rsplit("/", 1)[-1])
                 for h in re.findall(r"<(?:\w+:)?href>([^<]+)</(?:\w+:)?href>", body.decode())
                 if not h.endswith("/")}
        return {name: self.request("GET", collection_url + urllib.parse.quote(name, safe=""))[1]
                for name in names}


ADDRESSBOOK_MKCOL = (b'<?xml version="1.0" encoding="utf-8"?><D:mkcol xmlns:D="DAV:" '
                     b'xmlns:C="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype>'
                     b'<D:collection/><C:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>')


@pytest.fixture(scope="session")
def radicale():
    directory = tempfile.mkdtemp(prefix="dbpipe-radicale-")
    password = "app-pw-" + secrets.token_hex(8)
    with open(os.path.join(directory, "users"), "w") as users:
        users.write(f"alice:{password}\n")
    with open(os.path.join(directory, "rights"), "w") as rights:
        rights.write(RIGHTS)
    port = servers.free_port()
    with open(os.path.join(directory, "config"), "w") as config:
        config.write(f"[server]\nhosts = 127.0.0.1:{port}\n"
                     f"[auth]\ntype = htpasswd\nhtpasswd_filename = {directory}/users\n"
                     "htpasswd_encryption = plain\ndelay = 0\n"
                     f"[rights]\ntype = from_file\nfile = {directory}/rights\n"
                     f"[storage]\nfilesystem_folder = {directory}/collections\n"
                     "[logging]\nlevel = error\n")
    proc = subprocess.Popen([sys.executable, "-m", "radicale", "--config", f"{directory}/config"],
                            stdout=subprocess.DEVNULL, stderr=open(f"{directory}/log", "wb"),
                            start_new_session=True)
    server = Radicale(port, password, write_secret(directory, "alice.pw", password), proc)
    deadline = time.monotonic() + 30
    while True:
        try:
            server.request("PROPFIND", f"http://127.0.0.1:{port}/", b"", {"Depth": "0"})
            break
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None and time.monotonic() < deadline, open(f"{directory}/log").read()
            time.sleep(0.1)
    yield server
    proc.terminate()
    proc.wait(10)
    shutil.rmtree(directory, ignore_errors=True)
