"""nextcloud-fileset: what a Bareos FileSet includes and excludes, read from
the installation the way Nextcloud reads it (File = "\\|command")."""

from __future__ import annotations

import os
import shutil

from ..helpers import bareos_env, dbpipe, last_line
from testkit import installs


def fileset(install, *args):
    return dbpipe("nextcloud-fileset", *args, install.root)


def lines(result) -> list[str]:
    return result.stdout.decode().splitlines()


def build(root, **values):
    return installs.build(root, {"dbname": "nc", "dbtype": "sqlite3", **values})


def test_the_default_layout(nc_root):
    install = build(nc_root)
    (nc_root / "apps").mkdir()
    (nc_root / "themes").mkdir()

    result = fileset(install)

    assert result.returncode == 0 and result.stderr == b"", result.stderr
    assert lines(result) == sorted(str(nc_root / name) for name in ("apps", "config", "data", "themes"))


def test_a_data_directory_outside_the_web_root_and_writable_app_paths_only(nc_root, nc_base):
    data = nc_base / f"{nc_root.name}-data"
    apps_paths = [{"path": str(nc_root / "apps"), "url": "/apps", "writable": False},
                  {"path": str(nc_root / "custom_apps"), "url": "/custom_apps", "writable": True},
                  {"path": str(nc_root / "gone_apps"), "url": "/gone", "writable": True}]
    install = build(nc_root, datadirectory=str(data), apps_paths=apps_paths)
    (nc_root / "custom_apps").mkdir()
    (nc_root / "apps").mkdir()
    try:
        result = fileset(install)
    finally:
        installs.give_to_web_user(nc_root)
    assert result.returncode == 0, result.stderr
    assert lines(result) == sorted([str(nc_root / "config"), str(nc_root / "custom_apps"), str(data)])
    assert not (nc_root / "data").exists()


def test_excludes_follow_the_data_directory_and_the_instance(nc_root, nc_base):
    data = nc_base / f"{nc_root.name}-data2"
    install = build(nc_root, datadirectory=str(data))
    instance = install.config()["instanceid"]
    for rel in ("updater-oc123/backups/x.zip", "nextcloud.log.1", "audit.log"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text("x")

    result = fileset(install, "--exclude")

    assert result.returncode == 0, result.stderr
    assert set(lines(result)) == {str(data / f"appdata_{instance}" / "preview"), str(data / "updater-oc123/backups"),
                                  str(data / "nextcloud.log"), str(data / "nextcloud.log.1"),
                                  str(data / "audit.log"), str(data / "updater.log")}


def test_an_unreadable_installation_prints_no_path_and_one_error_line(nc_root):
    install = build(nc_root)
    os.chmod(install.root / "config" / "config.php", 0)
    os.chown(install.root / "config" / "config.php", 0, 0)

    result = fileset(install)

    assert result.returncode == 78, result.stderr
    assert result.stdout == b""
    assert len(result.stderr.decode().splitlines()) == 1
    assert "owned by root" in last_line(result)


def test_a_missing_data_directory_fails_with_one_line_naming_it(nc_root, nc_base, tmp_path):
    """The disk holding 'datadirectory' is not mounted and its mount point is
    gone: nothing is listed (not even config/), the job fails; with
    --bareos-job the line is recorded for dbpipe-joblog."""
    data = nc_base / f"{nc_root.name}-unmounted"
    install = build(nc_root, datadirectory=str(data))
    (nc_root / "themes").mkdir()
    shutil.rmtree(data)
    env = bareos_env(DBPIPE_STATE_DIR=str(tmp_path))

    for args in ((), ("--exclude",), ("--bareos-job", "4711")):
        result = dbpipe("nextcloud-fileset", *args, install.root, env=env)
        assert result.returncode == 66, result.stderr
        assert result.stdout == b"" and len(result.stderr.decode().splitlines()) == 1
        assert last_line(result).endswith(f"data directory {data} is missing (disk not mounted?)")

    printed = dbpipe("dbpipe-joblog", "4711", env=env)
    assert printed.stdout.decode().splitlines() == [last_line(result)]


def test_a_data_directory_without_its_ocdata_marker_fails(nc_root, nc_base):
    """An empty mount point (the disk not mounted under it): Nextcloud itself
    refuses to run on a data directory without .ocdata."""
    data = nc_base / f"{nc_root.name}-empty"
    install = build(nc_root, datadirectory=str(data))
    shutil.rmtree(data)
    data.mkdir()

    result = fileset(install)

    assert result.returncode == 66 and result.stdout == b""
    assert last_line(result).endswith(f"data directory {data} has no .ocdata (disk not mounted?)")
    (data / ".ocdata").write_text("")
    assert lines(fileset(install)) == sorted([str(nc_root / "config"), str(data)])


def test_a_path_with_a_line_break_is_refused_not_split(nc_root, nc_base):
    data = nc_base / f"{nc_root.name}-nl\ndata"
    install = build(nc_root, datadirectory=str(data))
    try:
        result = fileset(install)
        assert result.returncode == 78 and result.stdout == b""
        assert len(result.stderr.decode().splitlines()) == 1
        assert "'datadirectory'" in last_line(result) and "contains a line break" in last_line(result)
        assert repr(str(data)) in last_line(result)

        apps = [{"path": str(nc_root / "x\ncustom_apps"), "url": "/custom", "writable": True}]
        install = build(nc_base / f"{nc_root.name}-apps", apps_paths=apps)
        result = fileset(install, "--exclude")
        assert result.returncode == 78 and result.stdout == b""
        assert "'apps_paths'" in last_line(result)
    finally:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(nc_base / f"{nc_root.name}-apps", ignore_errors=True)
