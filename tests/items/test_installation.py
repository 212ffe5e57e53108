"""--nextcloud DIR: the installation's dbtableprefix and its own database
server and account (allowed to create databases) serve as the defaults."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from ..helpers import bareos_env, dbpipe
from testkit import installs
from . import davdata as d
from .compare import components_by_uid


def test_defaults_come_from_the_installation(server_pool, env, tmp_path, private_tmp):
    server = server_pool.get("mysql", "local")
    name, user, password = f"nc_pref_{secrets.token_hex(3)}", f"ncu_{secrets.token_hex(3)}", "pw-'\"$x"
    d.make_server_db(server, name, prefix="nc_")
    server.create_user(user, password, name, can_create=True)
    dump = tmp_path / "nc.sql"
    with open(dump, "wb") as out:
        assert dbpipe("dbpipe-dump", *server.args(name), stdout=out, env=bareos_env()).returncode == 0
    base = Path(tempfile.mkdtemp(prefix="dbpipe-items-nc-"))
    os.chmod(base, 0o755)
    try:
        installs.build(base / "nextcloud", {"dbtype": "mysql", "dbname": name, "dbuser": user,
                                            "dbpassword": password, "dbhost": f"localhost:{server.socket}",
                                            "dbtableprefix": "nc_"}, occ=False)
        databases = set(server.sql("SHOW DATABASES").split())

        result = dbpipe("nextcloud-restore-items", "export", "--user", "alice", "--calendar", "work",
                        "--nextcloud", base / "nextcloud", "--out", tmp_path / "out", dump, env=env)
        after = set(server.sql("SHOW DATABASES").split())
    finally:
        shutil.rmtree(base, ignore_errors=True)
        server.drop_database(name)

    assert result.returncode == 0, result.stderr
    assert set(components_by_uid((tmp_path / "out" / "work.ics").read_bytes())) == {
        d.MEETING.uid, d.LUNCH.uid}
    assert after == databases and os.listdir(private_tmp) == []
    assert password.encode() not in result.stderr
