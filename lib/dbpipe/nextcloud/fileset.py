"""What a Nextcloud backup must include and may leave out, read from the
installation itself.

A FileSet with hard-coded paths silently misses a data directory moved out of
the web root (config.php 'datadirectory', e.g. /srv/nextcloud-data), and ends
every job with W where custom_apps does not exist.  Bareos runs
`File = "\\|command"` on the client and backs up the lines it prints, so the
shipped FileSets ask this module instead: config/, the real data directory,
themes/ and every writable apps_paths entry that exists; and, for the Exclude
block, what is cheap to lose (previews, the updater's copies of old releases,
Nextcloud's own log files).

bareos-fd merges the command's stderr into the list it reads: nothing but
paths may be printed, and a warning on stderr would become a bogus file name.
A path with a newline would reach it as two wrong paths, so it is refused.

The data directory is the part of the backup that matters, and the one most
easily absent: a disk that is not mounted leaves the mount point empty or
gone.  Nextcloud itself refuses to run on a data directory without its
.ocdata marker (OC_Util::checkDataDirectoryValidity); the file list refuses
it the same way, so the job fails instead of ending T without user files.

In snapshot mode the same directories are read from the snapshot view,
<view root>/<path>; the FileSet's StripPath turns them back into <path>.  The
view does not exist yet when Bareos runs this (before the job's Before
script), so the paths are computed, never looked up.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from ..errors import ConfigError, NoInputError
from ..snapshot import snapshot_homes
from ..snapshot.view import view_path
from .config import php_truthy, read_system_config, with_environment
from .installation import Installation


OCDATA = ".ocdata"


@dataclass(frozen=True)
class FileList:
    include: list[str]
    exclude: list[str]


def file_list(installation: Installation, values: dict | None = None) -> FileList:
    """values: the merged system config (read through PHP when not given)."""
    if values is None:
        values = with_environment(read_system_config(installation))
    configured = str(values.get("datadirectory") or os.path.join(installation.root, "data"))
    apps = writable_app_dirs(installation.root, values.get("apps_paths"))
    for path, key in [(configured, "datadirectory")] + [(app, "apps_paths") for app in apps]:
        _refuse_newline(path, f"config.php '{key}'")
    data = checked_data_directory(configured)
    include = [os.path.join(installation.root, "config"), data, os.path.join(installation.root, "themes")]
    files = FileList(_existing_once(include + apps), excluded(data, values))
    for path in files.include + files.exclude:
        _refuse_newline(path, "the path")
    return files


def checked_data_directory(configured: str) -> str:
    """The real data directory, if it is one Nextcloud would run on."""
    data = os.path.realpath(configured)
    if not os.path.isdir(data):
        raise NoInputError(f"Nextcloud data directory {configured} is missing (disk not mounted?)")
    if not os.path.exists(os.path.join(data, OCDATA)):
        raise NoInputError(f"Nextcloud data directory {configured} has no {OCDATA} (disk not mounted?)")
    return data


def _refuse_newline(path: str, what: str) -> None:
    """A line break would split the path into two wrong ones in Bareos' list."""
    if "\n" in path or "\r" in path:
        raise ConfigError(f"{what} {path!r} contains a line break: refusing to list it for Bareos")


def in_view(files: FileList, view: str) -> FileList:
    """The same lists as the snapshot view shows them.  A backed-up directory
    that is a mount point of its own holds the snapshots of its filesystem
    (a provider keeps them on the same filesystem): those are left out."""
    own = [home for path in files.include if os.path.ismount(path) for home in snapshot_homes(path)]
    return FileList([view_path(view, p) for p in files.include],
                    [view_path(view, p) for p in sorted(files.exclude + own)])


def writable_app_dirs(root: str, apps_paths) -> list[str]:
    """Where the app store installs apps (OC::initPaths: without apps_paths, apps/ is writable)."""
    if not apps_paths:
        return [os.path.join(root, "apps")]
    entries = apps_paths.values() if isinstance(apps_paths, dict) else apps_paths
    return [str(entry["path"]) for entry in entries
            if isinstance(entry, dict) and entry.get("path") and php_truthy(entry.get("writable"))]


def excluded(data: str, values: dict) -> list[str]:
    """Regenerated on demand, code rather than data, or logs: not worth a restore."""
    instance = str(values.get("instanceid") or "")
    paths = [os.path.join(data, f"appdata_{instance}", "preview")] if instance else []
    paths += glob.glob(os.path.join(glob.escape(data), "updater-*", "backups"))
    for log_file in (values.get("logfile") or os.path.join(data, "nextcloud.log"),
                     values.get("logfile_audit") or os.path.join(data, "audit.log"),
                     os.path.join(data, "updater.log")):
        paths += [str(log_file)] + glob.glob(glob.escape(str(log_file)) + ".[0-9]*")
    return sorted(set(paths))


def _existing_once(paths: list[str]) -> list[str]:
    """Existing directories, each once, none inside another (Bareos would read it twice)."""
    result: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths if os.path.isdir(p)}):
        if not any(path.startswith(parent.rstrip("/") + "/") for parent in result):
            result.append(path)
    return result
