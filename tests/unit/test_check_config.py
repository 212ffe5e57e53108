"""tools/check-bareos-config: the shipped resources pass, and every rule
catches the mistake it exists for (each case breaks a copy of bareos-config/).
Everything else about the resources is checked by Bareos' own parser in the
real-Bareos tests (tests/bareos/test_config.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ..helpers import ROOT, bareos_env

CONFIG_DIR = ROOT / "bareos-config"
CHECKER = ROOT / "tools" / "check-bareos-config"
JOB = "bareos-dir.d/job/backup-nextcloud.conf"
STOP = "bareos-dir.d/job/backup-nextcloud-stop-service.conf"
DUMPFILE = "bareos-dir.d/job/backup-nextcloud-dumpfile.conf"
FILESET = "bareos-dir.d/fileset/nextcloud.conf"
GENERIC = "bareos-dir.d/fileset/database-mydb.conf"
RESTORE = "bareos-dir.d/job/restore-nextcloud.conf"
AFTER = '''  RunScript {
    RunsWhen = After
    RunsOnClient = yes
    RunsOnSuccess = yes
    RunsOnFailure = yes
    FailJobOnError = yes
    Command = "/usr/local/bin/nextcloud-after-backup /var/www/nextcloud"
  }
'''


def check(directory) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECKER), str(directory)], capture_output=True,
                          text=True, env=bareos_env())


def test_the_shipped_resources_pass():
    result = check(CONFIG_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_directory_is_a_clear_error(tmp_path):
    result = check(tmp_path / "nope")
    assert result.returncode == 66 and "is not a directory" in result.stderr


CASES = [
    # (file, text to replace, replacement, expected message)
    (JOB, AFTER, "", "nextcloud-before-backup without nextcloud-after-backup"),
    (JOB, "RunsOnFailure = yes", "RunsOnFailure = no", "must run on failure too"),
    (JOB, "nextcloud-before-backup /var/www/nextcloud", "nextcloud-before-backup /var/www/nextcloud | logger",
     "no shell runs this command"),
    (JOB, "/usr/local/bin/nextcloud-after-backup", "/usr/bin/nextcloud-after-backup", "is not one of our commands"),
    (JOB, "/usr/local/bin/nextcloud-before-backup", "/usr/local/bin/nextcloud-before", "is not one of our commands"),
    (JOB, "nextcloud-before-backup /var/www/nextcloud", "nextcloud-before-backup /var/www/nextcloud --quiet",
     "has no option --quiet"),
    (JOB, "  Name = \"backup-nextcloud\"\n", "  Name = \"backup-nextcloud\"  FileSet = \"x\"\n",
     "one directive per line"),
    (STOP, "nextcloud-after-backup /var/www/nextcloud --stop-service apache2",
     "nextcloud-after-backup /var/www/nextcloud", "without nextcloud-after-backup taking the same"),
    (DUMPFILE, "after-backup /var/www/nextcloud --dump-to /var/backups/dbpipe/nextcloud-database.sql",
     "after-backup /var/www/nextcloud --dump-to /var/backups/dbpipe/other.sql", "taking the same"),
    (FILESET, "--nextcloud /var/www/nextcloud\"", "--nextcloud /var/www/nextcloud --host db:3306\"",
     "no other ':'"),
    (FILESET, '":file=/NEXTCLOUD/database.sql"', '":/NEXTCLOUD/database.sql"', "plugin string needs"),
    (FILESET, "nextcloud-fileset --bareos-job %i /var/www/nextcloud\"",
     "nextcloud-fileset --bareos-job %i /var/www/nextcloud > /tmp/x\"",
     "no shell runs this command"),
    (GENERIC, '\n             ":writer=/usr/local/bin/dbpipe-restore --profile mydb --where=%w --replace=%r '
              '--pseudo-file /DBPIPE/mydb.sql"', "", "plugin string needs"),
    (GENERIC, "dbpipe-dump --profile mydb", "dbpipe-dump --profile mydb --password 'secret'", "no shell"),
    (GENERIC, "--where=%w", "--where %w", "needs --where=%w attached"),
    (RESTORE, "Command = \"/usr/local/bin/dbpipe-joblog --begin %i\"", "Command = \"/usr/local/bin/dbpipe-joblog %i\"",
     "needs the Before script 'dbpipe-joblog --begin %i'"),
]


@pytest.mark.parametrize("path,old,new,expected", CASES, ids=[c[3][:40] for c in CASES])
def test_each_rule_catches_its_mistake(path, old, new, expected, tmp_path):
    copy = tmp_path / "bareos-config"
    shutil.copytree(CONFIG_DIR, copy)
    target = copy / path
    text = target.read_text()
    assert old in text, f"test case out of date: {old!r} not in {path}"
    target.write_text(text.replace(old, new, 1))

    result = check(copy)

    assert result.returncode == 78 and expected in result.stderr, result.stderr


def test_install_never_overwrites_without_force(tmp_path):
    make = ["make", "-s", "-C", str(ROOT), "install-bareos-config", f"DESTDIR={tmp_path}",
            "BAREOS_DIR=/etc/bareos"]
    shipped = sorted(p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.rglob("*.conf"))
    installed = tmp_path / "etc/bareos"

    first = subprocess.run(make, capture_output=True, text=True, env=bareos_env())

    assert first.returncode == 0, first.stderr
    assert sorted(p.relative_to(installed) for p in installed.rglob("*.conf")) == shipped
    for rel in shipped:
        assert (installed / rel).read_bytes() == (CONFIG_DIR / rel).read_bytes()
        assert (installed / rel).stat().st_mode & 0o777 == 0o640
    mine = installed / "bareos-fd.d/client/myself.conf"
    mine.write_text("Client {\n  Name = mine\n}\n")

    kept = subprocess.run(make, capture_output=True, text=True, env=bareos_env())
    assert kept.returncode == 0 and "kept existing" in kept.stdout
    assert "Name = mine" in mine.read_text()

    forced = subprocess.run(make + ["FORCE=1"], capture_output=True, text=True, env=bareos_env())
    assert forced.returncode == 0
    assert mine.read_bytes() == (CONFIG_DIR / "bareos-fd.d/client/myself.conf").read_bytes()


def test_only_the_recommended_method_and_its_drill_run_on_schedule_as_shipped():
    """An admin copies every resource (first-backup.md): jobs for methods the
    site does not use must not start failing on the schedule."""
    import re
    scheduled = []
    for path in sorted((CONFIG_DIR / "bareos-dir.d" / "job").glob("*.conf")):
        text = path.read_text()
        backup_or_admin = re.search(r'(?m)^\s*Type\s*=\s*Admin\b', text) or re.search(
            r'(?m)^\s*JobDefs\s*=\s*"dbpipe"', text)
        if backup_or_admin and not re.search(r"(?m)^\s*Enabled\s*=\s*no\b", text):
            scheduled.append(path.stem)
    assert scheduled == ["backup-nextcloud", "drill-nextcloud"]
