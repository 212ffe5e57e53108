"""tools/check-bareos-config: the shipped resources pass, and every rule
catches the mistake it exists for (each case breaks a copy of bareos-config/)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ..helpers import BIN, ROOT, bareos_env
from .translate import CHECK, CHECKER, CONFIG_DIR

JOB = "bareos-dir.d/job/backup-nextcloud.conf"
STOP = "bareos-dir.d/job/backup-nextcloud-stop-service.conf"
DUMPFILE = "bareos-dir.d/job/backup-nextcloud-dumpfile.conf"
FILESET = "bareos-dir.d/fileset/nextcloud.conf"
GENERIC = "bareos-dir.d/fileset/database-mydb.conf"
CLIENT = "bareos-fd.d/client/myself.conf"
AFTER = '''  RunScript {
    RunsWhen = After
    RunsOnClient = yes
    RunsOnSuccess = yes
    RunsOnFailure = yes
    FailJobOnError = yes
    Command = "/usr/local/bin/nextcloud-after-backup /var/www/nextcloud"
  }
'''


def test_the_shipped_resources_pass():
    result = subprocess.run([sys.executable, str(CHECKER), str(CONFIG_DIR)],
                            capture_output=True, text=True, env=bareos_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stderr


def test_a_missing_directory_is_a_clear_error(tmp_path):
    result = subprocess.run(["python3", str(CHECKER), str(tmp_path / "nope")], capture_output=True,
                            text=True, env=bareos_env())
    assert result.returncode == 66 and "is not a directory" in result.stderr


CASES = [
    # (file, text to replace, replacement, expected message)
    (JOB, "  }\n}", "  }\n", "is never closed"),
    (JOB, 'FileSet = "nextcloud"', 'FileSet = "nextcloud"\n  Frobnicate = yes', "has no directive 'Frobnicate'"),
    (JOB, "  RunScript {", "  Include {\n  }\n  RunScript {", "has no block 'Include'"),
    (JOB, "Job {", "FileSet {", "does not belong in bareos-dir.d/job/"),
    (JOB, 'Name = "backup-nextcloud"', 'Name = "backup-cloud"', "file name should be backup-cloud.conf"),
    (JOB, "  }\n}\n", '  }\n}\nJob {\n  Name = "other"\n}\n', "one resource per file"),
    (JOB, "RunsOnFailure = yes", "RunsOnFailure = maybe", "must be yes or no"),
    (JOB, "RunsWhen = Before", "RunsWhen = Sometimes", "is not one of"),
    (JOB, 'JobDefs = "dbpipe"', 'JobDefs = "DbPipe"', "no such JobDefs"),
    (JOB, 'FileSet = "nextcloud"', 'FileSet = "nextcloud-bpipe"', "no such FileSet"),
    (JOB, 'FileSet = "nextcloud"', 'FileSet = "nextcloud"\n  Client = ubuntu-fd', "no such Client"),
    (JOB, AFTER, "", "a failed job would leave Nextcloud in maintenance mode"),
    (JOB, "RunsOnFailure = yes", "RunsOnFailure = no", "must run on success AND on failure"),
    (JOB, AFTER, '  ClientRunAfterJob = "/usr/local/bin/nextcloud-after-backup /var/www/nextcloud"\n',
     "must run on success AND on failure"),
    (JOB, "RunsWhen = Before", "RunsWhen = After", "must run Before the job"),
    (JOB, "RunsOnClient = yes\n    FailJobOnError = yes\n    Command = \"/usr/local/bin/nextcloud-before",
     "RunsOnClient = no\n    FailJobOnError = yes\n    Command = \"/usr/local/bin/nextcloud-before",
     "must run on the client"),
    (JOB, "nextcloud-before-backup /var/www/nextcloud", "nextcloud-before-backup /var/www/nextcloud | logger",
     "without a shell"),
    (JOB, "/usr/local/bin/nextcloud-after-backup", "nextcloud-after-backup", "use the installed path"),
    (JOB, "/usr/local/bin/nextcloud-before-backup", "/usr/local/bin/nextcloud-before", "does not exist"),
    (JOB, "nextcloud-before-backup /var/www/nextcloud", "nextcloud-before-backup /var/www/nextcloud --settle=0 --quiet",
     "has no option --quiet"),
    (JOB, "nextcloud-before-backup /var/www/nextcloud", "nextcloud-before-backup /var/www/nextcloud -%e",
     "%e is not expanded here"),
    (STOP, "nextcloud-after-backup /var/www/nextcloud --stop-service apache2",
     "nextcloud-after-backup /var/www/nextcloud", "needs the same --stop-service"),
    (DUMPFILE, "after-backup /var/www/nextcloud --dump-to /var/backups/dbpipe/nextcloud-database.sql",
     "after-backup /var/www/nextcloud --dump-to /var/backups/dbpipe/other.sql", "needs the same --dump-to"),
    (DUMPFILE, "before-backup /var/www/nextcloud --dump-to /var/backups/dbpipe/nextcloud-database.sql",
     "before-backup /var/www/nextcloud --dump-to /tmp/nextcloud.sql", "is not a File of FileSet"),
    (FILESET, "--nextcloud /var/www/nextcloud\"", "--nextcloud /var/www/nextcloud --host db:3306\"",
     "no ':' may appear inside a value"),
    (FILESET, '":file=/NEXTCLOUD/database.sql"', '":/NEXTCLOUD/database.sql"', "no positional syntax"),
    (FILESET, ':writer=/usr/local/bin/dbpipe-restore', ':file=/usr/local/bin/dbpipe-restore', "file= appears twice"),
    (GENERIC, '\n             ":writer=/usr/local/bin/dbpipe-restore --profile mydb --where=%w --replace=%r '
              '--pseudo-file /DBPIPE/mydb.sql"', "", "lacks writer="),
    (GENERIC, "dbpipe-dump --profile mydb", "dbpipe-dump --profile mydb --password 'secret'", "without a shell"),
    (GENERIC, "--where=%w", "--where %w", "must be attached to its option"),
    (GENERIC, " --where=%w", "", "needs '--where=%w'"),
    (GENERIC, "--pseudo-file /DBPIPE/mydb.sql", "--pseudo-file /DBPIPE/other.sql", "--pseudo-file /DBPIPE/mydb.sql"),
    (GENERIC, "dbpipe-dump --profile mydb", "dbpipe-dump --profile otherdb", "differ in --profile"),
    (CLIENT, '  Plugin Directory = "/usr/lib/bareos/plugins"\n', "", "Plugin Directory is not set"),
    (CLIENT, '  Plugin Names = "bpipe"\n', '  Plugin Names = "python3"\n', "does not list bpipe"),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    copy = tmp_path_factory.mktemp("bareos-config") / "bareos-config"
    shutil.copytree(CONFIG_DIR, copy)
    return copy


@pytest.mark.parametrize("path,old,new,expected", CASES, ids=[c[3][:40] for c in CASES])
def test_each_rule_catches_its_mistake(path, old, new, expected, pristine, tmp_path):
    copy = tmp_path / "bareos-config"
    shutil.copytree(pristine, copy)
    target = copy / path
    text = target.read_text()
    assert old in text, f"test case out of date: {old!r} not in {path}"
    target.write_text(text.replace(old, new, 1))

    problems = "\n".join(CHECK.check(copy, BIN).problems)

    assert expected in problems, problems


def test_quoted_strings_join_like_bareos():
    text = 'FileSet {\n  Name = x\n  Include {\n    Plugin = "bpipe"\n      ":file=/A"   ":reader=r"\n' \
           '      ":writer=w"\n    File = "a\\"b"\n  }\n}\n'
    (fileset,) = CHECK.parse(text)
    include = fileset.sub("Include")[0]
    assert include.get("Plugin") == "bpipe:file=/A:reader=r:writer=w"
    assert include.get("File") == 'a"b'


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


def test_files_outside_the_layout_are_reported(pristine, tmp_path):
    copy = tmp_path / "bareos-config"
    shutil.copytree(pristine, copy)
    (copy / "bareos-dir.d/jobs").mkdir()
    (copy / "bareos-dir.d/jobs/x.conf").write_text("Job {\n  Name = x\n}\n")

    problems = "\n".join(CHECK.check(copy, BIN).problems)

    assert "bareos-dir.d/jobs/x.conf: not a place Bareos reads resources from" in problems
