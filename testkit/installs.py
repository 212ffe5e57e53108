"""Sample Nextcloud installations for the tests: a real directory tree owned
by www-data, config/config.php (plus split *.config.php files) written as
PHP, the occ double as <root>/occ, user directories, and a real database."""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .dbs import MysqlDatabase, PgsqlDatabase, SqliteDatabase
from .paths import ROOT
from .servers import BARE_PATH

OCC_DOUBLE = ROOT / "tests" / "nextcloud" / "occ.php"  # the test double of occ stays beside its tests
WEB_USER = "www-data"
USERS = ("alice", "bob")
# the Nextcloud lines the occ double reproduces (see occ.php, "WHICH NEXTCLOUD"):
# config.php's version picks the line; pr56754 is nextcloud/server PR 56754
# (only maintenance:mode, status and _completion offered in maintenance mode)
OCC_VARIANTS = ("30", "31", "32", "pr56754")
VARIANT_VERSIONS = {"30": "30.0.16.1", "31": "31.0.10.2", "32": "32.0.2.2", "pr56754": "33.0.0.4"}


def web_account() -> pwd.struct_passwd:
    return pwd.getpwnam(WEB_USER)


def php_literal(value, depth: int = 1) -> str:
    """A PHP literal as var_export() writes it."""
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    items = value.items() if isinstance(value, dict) else enumerate(value)
    pad = "  " * depth
    body = "".join(f"{pad}{php_literal(k)} => {php_literal(v, depth + 1)},\n" for k, v in items)
    return f"array (\n{body}{'  ' * (depth - 1)})"


def php_config(values: dict) -> str:
    return "<?php\n$CONFIG = " + php_literal(values) + ";\n"


@dataclass
class Installation:
    """A sample installation: root, config, the occ double and its instruments."""

    root: Path
    database: object = None                  # tests.dbs database, when there is one
    password: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def config_file(self) -> Path:
        return self.root / "config" / "config.php"

    def config(self) -> dict:
        """The merged config as Nextcloud reads it (config.php, then *.config.php,
        each under a shared lock)."""
        code = ("$d=$argv[1].'/config/';$f=[$d.'config.php'];$e=glob($d.'*.config.php');natsort($e);"
                "$m=[];foreach(array_merge($f,$e) as $x){unset($CONFIG);$h=fopen($x,'r');flock($h,LOCK_SH);"
                "include $x;flock($h,LOCK_UN);$m=array_merge($m,$CONFIG);}"
                "echo json_encode($m);")
        out = subprocess.run(["php", "-r", code, "--", str(self.root)], check=True, capture_output=True,
                             text=True, env={"PATH": BARE_PATH}).stdout
        return json.loads(out or "{}") or {}

    def file_config(self) -> dict:
        """config/config.php alone (under a shared lock, as Nextcloud reads it:
        occ may be rewriting it this very moment)."""
        code = "$h=fopen($argv[1],'r');flock($h,LOCK_SH);include $argv[1];flock($h,LOCK_UN);echo json_encode($CONFIG);"
        out = subprocess.run(["php", "-r", code, "--", str(self.config_file)], check=True,
                             capture_output=True, text=True, env={"PATH": BARE_PATH}).stdout
        return json.loads(out)

    @property
    def maintenance(self) -> bool:
        return bool(self.config().get("maintenance"))

    def occ(self, *args: str) -> subprocess.CompletedProcess:
        """Run the double as the web user, the way an admin would."""
        account = web_account()
        return subprocess.run(["php", "occ", *args], cwd=self.root, capture_output=True, text=True,
                              env={"PATH": BARE_PATH}, user=account.pw_uid, group=account.pw_gid,
                              extra_groups=[])

    def calls(self) -> list[dict]:
        path = self.root / "occ-calls.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def commands(self) -> list[str]:
        """Each call as 'command --option ...' (globals left out), in order."""
        result = []
        for call in self.calls():
            words = [w for w in call["args"] if w not in ("--no-interaction", "--no-warnings")]
            result.append(" ".join(words))
        return result

    def scanned(self) -> list[str]:
        path = self.root / "files-scan.log"
        return path.read_text().split() if path.exists() else []

    def fail(self, *rules: dict) -> None:
        """Make matching occ calls fail or hang (see occ.php)."""
        (self.root / "occ-fail.json").write_text(json.dumps(list(rules)))
        (self.root / "occ-fail.count").unlink(missing_ok=True)

    def rule_reached(self) -> bool:
        """Whether an occ call has reached a fail() rule.  The double logs a call
        (calls()) before it looks at the rules, and counts a matching call
        (occ-fail.count) just before it fails, hangs or pauses: a test that kills
        a hanging call must wait for this, or a kill in between leaves the rule
        unspent and the next matching call hangs instead."""
        try:
            counts = json.loads((self.root / "occ-fail.count").read_text())
        except (OSError, ValueError):       # not yet written, or being written
            return False
        return any((counts.values() if isinstance(counts, dict) else counts) or ())

    def set_maintenance(self, on: bool) -> None:
        result = self.occ("maintenance:mode", "--on" if on else "--off")
        assert result.returncode == 0, result.stdout + result.stderr


def base_system(root: Path) -> dict:
    return {
        "instanceid": "oc" + secrets.token_hex(5),
        "passwordsalt": secrets.token_urlsafe(20),
        "secret": secrets.token_urlsafe(30),
        "trusted_domains": ["localhost", "cloud.example.org"],
        "datadirectory": str(root / "data"),
        "overwrite.cli.url": "http://localhost",
        "dbtableprefix": "oc_",
        "version": VARIANT_VERSIONS["32"],
        "installed": True,
        "maintenance": False,
        "data-fingerprint": "",
    }


def build(root: Path, db_values: dict, split: dict[str, dict] | None = None,
          occ: bool = True, users=USERS, variant: str = "32") -> Installation:
    """Write the tree; split maps extra file names to the keys they carry;
    variant picks the Nextcloud line the occ double is (OCC_VARIANTS).  A
    version in db_values older than the variant's is a database that
    needs 'occ upgrade' under that code."""
    (root / "config").mkdir(parents=True)
    code = VARIANT_VERSIONS[variant]
    values = {**base_system(root), "version": code, **db_values}
    data = Path(values["datadirectory"])
    data.mkdir(parents=True, exist_ok=True)
    (data / ".ocdata").write_text("")
    for user in users:
        (data / user / "files").mkdir(parents=True)
        (data / user / "files" / "Readme.md").write_text(f"hello {user}\n")
    split = split or {}
    moved = {key for extra in split.values() for key in extra}
    (root / "config" / "config.php").write_text(php_config({k: v for k, v in values.items()
                                                             if k not in moved}))
    for name, extra in split.items():
        (root / "config" / name).write_text(php_config(extra))
    if occ:
        shutil.copyfile(OCC_DOUBLE, root / "occ")
    if variant == "pr56754":
        (root / "occ-pr56754").write_text("")
    if values["version"] != code:
        (root / "occ-code-version").write_text(code + "\n")
    give_to_web_user(root)
    return Installation(root)


def give_to_web_user(root: Path) -> None:
    account = web_account()
    for directory, _dirs, files in os.walk(root):
        os.chown(directory, account.pw_uid, account.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), account.pw_uid, account.pw_gid)
    for path in (root / "config").iterdir() if (root / "config").is_dir() else ():
        os.chmod(path, 0o640)


# --- databases -------------------------------------------------------------------------

PASSWORD = "nc-pw-'\"$(x)`;:\\ #"


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def mysql_database(server, password: str = PASSWORD):
    db = MysqlDatabase(server, unique("nc"))
    db.populate()
    user = unique("ncu")
    server.create_user(user, password, db.name, can_create=True)
    return db, {"dbtype": "mysql", "dbname": db.name, "dbuser": user, "dbpassword": password,
                "dbhost": f"localhost:{server.socket}", "dbport": "", "mysql.utf8mb4": True}


def pgsql_database(server, password: str = PASSWORD):
    user = unique("ncu")
    literal = "'" + password.replace("'", "''") + "'"
    server.sql(f'CREATE ROLE "{user}" LOGIN PASSWORD {literal}')
    db = PgsqlDatabase(server, unique("nc"), owner=user)
    db.populate()
    return db, {"dbtype": "pgsql", "dbname": db.name, "dbuser": user, "dbpassword": password,
                "dbhost": f"{server.socket}:{server.port}", "dbport": ""}


def sqlite_database(root: Path):
    (root / "data").mkdir(parents=True, exist_ok=True)
    db = SqliteDatabase(str(root / "data" / "owncloud.db"))
    db.populate()
    return db, {"dbtype": "sqlite3", "dbname": "owncloud"}
