"""Snapshot mode on a real btrfs (loop device): Nextcloud is closed only for
the window, Bareos reads a read-only view of the window's files and relays
the window's database; everything is removed afterwards, also after a
failure, a cancel or a crashed run - and nothing that is not ours."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ..helpers import BARE_PATH, BIN, dbpipe
from testkit.prerequisites import require_root, require_tools
from testkit import btrfs, installs
from .conftest import _install, lines, text

BEFORE, AFTER = "nextcloud-before-backup", "nextcloud-after-backup"
MARKER = "dbpipe.maintenance"
WINDOW = re.compile(r"^maintenance window: \d+\.\d s$")
BIG_ROWS, BIG_ROW = 60, 100_000      # 6 MB: more than pipe and socket buffers hold
DUMP_TOOLS = {"mysql": "mariadb-dump", "pgsql": "pg_dump"}


@pytest.fixture(scope="module")
def fs():
    yield from btrfs.loop_or_skip()


@pytest.fixture
def snapshot_root():
    root = Path(tempfile.mkdtemp(prefix="dbpipe-view-"))
    yield root
    left = btrfs.mounts_below(root)
    for point in reversed(left):        # a failed test must not leak mounts into the next
        subprocess.run(["umount", "--lazy", point], check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=False)
    assert left == [], "bind mounts left behind"


@pytest.fixture
def site_root(fs):
    """An installation directory on btrfs whose data/ is a subvolume of its own:
    two distinct subvolumes, two snapshots."""
    root = fs.mount / installs.unique("nc")
    root.mkdir(mode=0o755)
    fs.subvolume(root / "data")
    return root


@pytest.fixture
def sqlite_site(site_root, occ_variant):
    return _install(site_root, installs.sqlite_database(site_root), occ_variant)


@pytest.fixture(params=["mysql", "pgsql"])
def server_site(request, site_root, server_pool, occ_variant):
    make = installs.mysql_database if request.param == "mysql" else installs.pgsql_database
    install = _install(site_root, make(server_pool.get(request.param, "local")), occ_variant)
    yield install
    install.database.server.drop_database(install.database.name)


def snapshot_args(root) -> tuple:
    return ("--snapshot", "--snapshot-root", str(root))


def key_of(install) -> str:
    import hashlib
    return hashlib.sha256(os.path.realpath(install.root).encode()).hexdigest()[:16]


def view_of(install, root) -> Path:
    return Path(root) / key_of(install)


def fileset(install, root, *extra) -> list[str]:
    result = dbpipe("nextcloud-fileset", *extra, *snapshot_args(root), install.root)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode().split()


def relay(install, state_dir, env):
    return dbpipe("dbpipe-dump", "--nextcloud", install.root, "--from-snapshot",
                  "--state-dir", state_dir, env=env)


def our_snapshots(fs, install) -> list[str]:
    return btrfs.subvolumes(fs.mount / ".dbpipe-snapshots" / key_of(install)) \
        if (fs.mount / ".dbpipe-snapshots" / key_of(install)).exists() else []


def assert_all_removed(fs, install, state_dir, root):
    config = install.config()
    assert config["maintenance"] is False and MARKER not in config
    assert btrfs.mounts_below(Path(root)) == []
    assert not view_of(install, root).exists()
    assert our_snapshots(fs, install) == []
    assert sorted(p.name for p in state_dir.iterdir()) == sorted(
        p.name for p in state_dir.iterdir() if p.suffix == ".lock")


def test_nextcloud_is_closed_for_the_window_only_and_the_job_reads_the_window(
        fs, sqlite_site, run_hook, state_dir, snapshot_root, env):
    install = sqlite_site
    included = fileset(install, snapshot_root)

    before = run_hook(BEFORE, install, *snapshot_args(snapshot_root))

    assert before.returncode == 0, text(before)
    assert not install.maintenance, "maintenance mode is off while the job reads"
    window = [line for line in lines(before) if line.startswith("maintenance window:")]
    assert len(window) == 1 and WINDOW.match(window[0]), lines(before)
    assert any(line.startswith("window: ") for line in lines(before))
    [record] = state_dir.glob("*.snapshot.json")        # the record says the same window
    seconds = json.loads(record.read_text())["window"]
    assert seconds > 0 and f"maintenance window: {seconds:.1f} s" == window[0]
    commands = install.commands()
    assert commands.index("maintenance:mode --on") < commands.index("maintenance:mode --off")
    # the FileSet's paths, computed before the hook ran, are the view's mounts
    view = view_of(install, snapshot_root)
    assert included == [str(view) + p for p in (str(install.root / "config"), str(install.root / "data"))]
    assert sorted(btrfs.mounts_below(snapshot_root)) == sorted(included)
    assert len(our_snapshots(fs, install)) == 2, "config/ and data/ are two subvolumes"
    readme = view / str(install.root / "data/alice/files/Readme.md").lstrip("/")
    assert readme.read_text() == "hello alice\n"
    with pytest.raises(OSError) as written:
        readme.write_text("no")
    assert written.value.errno == errno.EROFS
    # users work on: the view keeps the window's state
    (install.root / "data/alice/files/Readme.md").write_text("changed after the window\n")
    assert readme.read_text() == "hello alice\n"
    config = (view / str(install.config_file).lstrip("/")).read_text()
    assert "'maintenance' => true" in config and MARKER in config, "a restore comes back closed"
    excluded = fileset(install, snapshot_root, "--exclude")
    assert str(view) + str(install.root / "data/nextcloud.log") in excluded

    stream = relay(install, state_dir, env)

    assert stream.returncode == 0, stream.stderr
    assert b"CREATE TABLE" in stream.stdout
    assert dbpipe("dbpipe-verify", "-", stdin=stream.stdout).returncode == 0

    after = run_hook(AFTER, install)

    assert after.returncode == 0, text(after)
    assert_all_removed(fs, install, state_dir, snapshot_root)
    assert relay(install, state_dir, env).returncode == 66, "no window, no stream: never a live dump"


def test_files_and_database_are_of_the_windows_moment_not_of_the_dumps_end(
        fs, server_site, start_hook, run_hook, state_dir, snapshot_root, env):
    """Changes made after the window - while the dump is still running - reach
    neither the files nor the database: a restore gives the window's moment."""
    install, db = server_site, server_site.database
    big_table(db)
    install.fail({"match": "maintenance:mode --off", "action": "pause"})
    hook = start_hook(BEFORE, install, *snapshot_args(snapshot_root))
    wait_until(lambda: "maintenance:mode --off" in install.commands(), hook)
    # the window ends while the dump tool is still at work, its point fixed
    assert DUMP_TOOLS[db.kind] in children_of(hook.proc.pid)
    assert not (state_dir / f"nextcloud-{key_of(install)}.snapshot.sql").exists()
    window_state = db.fingerprint()
    db.sql("UPDATE oc_big SET payload = " + repeat(db, "b") + "; " + db.CHANGE)
    (install.root / "data/alice/files/Readme.md").write_text("changed after the window\n")
    (install.root / "occ-resume").touch()
    code, errors = hook.finish()
    assert code == 0, errors + "\n".join(hook.lines)
    assert not install.maintenance

    stream = relay(install, state_dir, env)
    view = view_of(install, snapshot_root)
    readme = view / str(install.root / "data/alice/files/Readme.md").lstrip("/")
    assert readme.read_text() == "hello alice\n"
    assert run_hook(AFTER, install).returncode == 0

    assert stream.returncode == 0, stream.stderr
    assert b"b" * 1000 not in stream.stdout and b"a" * 1000 in stream.stdout
    restored = dbpipe("dbpipe-restore", "--nextcloud", install.root, "--drop-old",
                      stdin=stream.stdout, env=env)
    assert restored.returncode == 0, restored.stderr
    assert db.fingerprint() == window_state
    assert_all_removed(fs, install, state_dir, snapshot_root)


def test_not_on_btrfs_fails_before_nextcloud_is_closed(plain_install, run_hook, state_dir, snapshot_root):
    result = run_hook(BEFORE, plain_install, *snapshot_args(snapshot_root))

    assert result.returncode == 78
    reason = text(result).strip().splitlines()[-1]
    assert re.search(r"is on \w+ .*not a filesystem dbpipe can snapshot .*btrfs", reason), reason
    assert not [c for c in plain_install.commands() if c.startswith("maintenance:mode")]
    assert not plain_install.maintenance
    assert [p.name for p in state_dir.iterdir() if p.suffix == ".json"] == []


def test_a_nested_subvolume_is_refused_before_nextcloud_is_closed(
        fs, sqlite_site, run_hook, state_dir, snapshot_root):
    """Its snapshot would be an empty directory: silent data loss."""
    nested = fs.subvolume(sqlite_site.root / "data" / "alice" / "files" / "Archive")

    result = run_hook(BEFORE, sqlite_site, *snapshot_args(snapshot_root))

    assert result.returncode == 78, text(result)
    assert f"{nested} is a nested btrfs subvolume below a backed-up directory" in text(result)
    assert not [c for c in sqlite_site.commands() if c.startswith("maintenance:mode")]
    assert_all_removed(fs, sqlite_site, state_dir, snapshot_root)


def test_a_failing_snapshot_puts_maintenance_back_and_fails_with_one_line(
        fs, sqlite_site, run_hook, state_dir, snapshot_root):
    home = fs.mount / ".dbpipe-snapshots" / key_of(sqlite_site)
    home.mkdir(parents=True, mode=0o700)
    os.chmod(home.parent, 0o700)
    require_tools(["chattr"], BARE_PATH, "the refused-snapshot test")
    subprocess.run(["chattr", "+i", str(home)], check=True)    # btrfs refuses: EPERM
    try:
        result = run_hook(BEFORE, sqlite_site, *snapshot_args(snapshot_root))
    finally:
        subprocess.run(["chattr", "-i", str(home)], check=True)

    assert result.returncode == 77, text(result)
    reason = result.stderr.decode().strip().splitlines()[-1]
    assert re.match(r"nextcloud-before-backup: snapshot of \S+: permission denied \(.*Operation "
                    r"not permitted\)$", reason), reason
    assert text(result).count("permission denied") == 1, "one line says it"
    assert "maintenance mode: on (confirmed by occ status)" in lines(result)
    assert_all_removed(fs, sqlite_site, state_dir, snapshot_root)


def test_a_full_state_directory_names_the_stream_file_and_exits_73(
        fs, sqlite_site, run_hook, tmp_path, snapshot_root):
    """Room for the record and the lock, not for the database stream."""
    state = tmp_path / "full-state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(state)], check=True)
    try:
        fd = os.open(state / "filler", os.O_WRONLY | os.O_CREAT)
        os.write(fd, b"x" * (256 - 48) * 1024)
        os.close(fd)
        stream = state / f"nextcloud-{key_of(sqlite_site)}.snapshot.sql"

        result = run_hook(BEFORE, sqlite_site, *snapshot_args(snapshot_root), state=state)

        assert result.returncode == 73, text(result)
        assert result.stderr.decode().strip().splitlines()[-1] == \
            f"nextcloud-before-backup: cannot write {stream}: No space left on device"
        assert not sqlite_site.maintenance
        assert sorted(p.name for p in state.iterdir() if p.suffix != ".lock") == ["filler"]
        assert btrfs.mounts_below(snapshot_root) == []
    finally:
        subprocess.run(["umount", str(state)], check=True)


def test_a_crashed_runs_snapshot_is_removed_by_the_next_run_and_nothing_else(
        fs, sqlite_site, start_hook, run_hook, state_dir, snapshot_root):
    install = sqlite_site
    install.fail({"match": "maintenance:mode --off", "action": "hang", "times": 1})
    crashed = start_hook(BEFORE, install, *snapshot_args(snapshot_root))
    wait_until(lambda: "maintenance:mode --off" in install.commands() and install.rule_reached(), crashed)
    kill_with_children(crashed.proc.pid)
    assert install.maintenance and len(our_snapshots(fs, install)) == 2
    # not ours: a snapshot beside ours, one the record names wrongly, a foreign mount in the view
    home = fs.mount / ".dbpipe-snapshots" / key_of(install)
    foreign = home / "foreign"
    subprocess.run(["btrfs", "subvolume", "snapshot", "-r", str(install.root / "data"), str(foreign)],
                   check=True, capture_output=True)
    record_file = next(state_dir.glob("*.snapshot.json"))
    swapped = sorted(our_snapshots(fs, install))[0]
    subprocess.run(["btrfs", "subvolume", "delete", swapped], check=True, capture_output=True)
    subprocess.run(["btrfs", "subvolume", "snapshot", "-r", str(install.root / "data"), swapped],
                   check=True, capture_output=True)
    assert swapped in record_file.read_text()

    result = run_hook(BEFORE, install, *snapshot_args(snapshot_root))

    assert result.returncode == 0, text(result)
    out = lines(result)
    assert any(line.startswith("removing what an earlier run left: 2 snapshot(s)") for line in out)
    assert f"snapshot: {swapped} is not the snapshot we took: left alone" in out
    assert any(line.startswith("keeping an unfinished record: maintenance mode") for line in out)
    assert not install.maintenance
    assert run_hook(AFTER, install).returncode == 0
    assert sorted(our_snapshots(fs, install)) == sorted([str(foreign), swapped])
    assert not list(state_dir.glob(".*snapshot.sql.*")), "the killed dump's temporary file"
    for path in (foreign, swapped):
        subprocess.run(["btrfs", "subvolume", "delete", str(path)], check=True, capture_output=True)
    assert_all_removed(fs, install, state_dir, snapshot_root)


def test_cancel_with_the_snapshot_taken_removes_it_and_ends_maintenance(
        fs, sqlite_site, start_hook, state_dir, snapshot_root):
    install = sqlite_site
    install.fail({"match": "maintenance:mode --off", "action": "pause"})
    hook = start_hook(BEFORE, install, *snapshot_args(snapshot_root))
    wait_until(lambda: "maintenance:mode --off" in install.commands(), hook)
    assert len(our_snapshots(fs, install)) == 2

    hook.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    (install.root / "occ-resume").touch()     # the switch-off it was in finishes first
    code, errors = hook.finish()

    assert code == 128 + signal.SIGTERM, errors
    assert "cancelled by SIGTERM" in errors
    assert_all_removed(fs, install, state_dir, snapshot_root)


# --- helpers ------------------------------------------------------------------------

def repeat(db, char: str) -> str:
    return f"REPEAT('{char}', {BIG_ROW})" if db.kind == "mysql" else f"repeat('{char}', {BIG_ROW})"


def big_table(db) -> None:
    if db.kind == "mysql":
        db.sql(f"CREATE TABLE oc_big (id INT PRIMARY KEY, payload LONGTEXT) ENGINE=InnoDB; "
               f"INSERT INTO oc_big SELECT seq, {repeat(db, 'a')} FROM seq_1_to_{BIG_ROWS}")
    else:
        db.sql(f"CREATE TABLE oc_big AS SELECT g AS id, {repeat(db, 'a')} AS payload "
               f"FROM generate_series(1, {BIG_ROWS}) g; ALTER TABLE oc_big OWNER TO \"{db.owner}\"")


def wait_until(condition, hook, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if hook.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"hook ended or timed out: {hook.lines} {hook.proc.stderr.read().decode()}")
        time.sleep(0.05)


def child_pids(pid: int) -> list[int]:
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            children += [int(c) for c in handle.read().split()]
    return children


def children_of(pid: int) -> list[str]:
    names = []
    for child in child_pids(pid):
        with contextlib.suppress(OSError), open(f"/proc/{child}/comm") as handle:
            names.append(handle.read().strip())
    return names


def kill_with_children(pid: int) -> None:
    """SIGKILL a hook and the occ it was waiting for (a crash takes both)."""
    children = child_pids(pid)
    os.kill(pid, signal.SIGKILL)
    for child in children:      # each runs in a process group of its own
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child, signal.SIGKILL)


# --- a second provider: one module, one register() line -------------------------------

DIRCOPY = Path(__file__).with_name("dircopy.py")
DIRCOPY_HOME = ".dbpipe-copies"


@pytest.fixture
def tmpfs_site(occ_variant):
    """An installation on a tmpfs of its own: no btrfs, so only the test-only
    plain-copy provider (dircopy.py) can snapshot it."""
    require_root("mounting a tmpfs")
    mount = Path(tempfile.mkdtemp(prefix="dbpipe-tmpfs-", dir="/var/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        root = mount / "nc"
        yield mount, _install(root, installs.sqlite_database(root), occ_variant)
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False)
        os.rmdir(mount)


def with_dircopy(hook: str, install, state_dir, env, *args):
    """The real hook executable, run with the test-only provider registered."""
    argv = [shutil.which("python3", path=BARE_PATH), str(DIRCOPY), str(BIN / hook), str(install.root),
            "--state-dir", str(state_dir), "--settle", "0", *map(str, args)]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          cwd="/", env=env, timeout=120)


def test_a_second_provider_plugs_in_with_one_module_and_one_register_line(
        tmpfs_site, run_hook, state_dir, snapshot_root, env):
    mount, install = tmpfs_site
    refused = run_hook(BEFORE, install, *snapshot_args(snapshot_root))
    assert refused.returncode == 78 and "not a filesystem dbpipe can snapshot (btrfs)" in text(refused)

    before = with_dircopy(BEFORE, install, state_dir, env, *snapshot_args(snapshot_root))

    assert before.returncode == 0, text(before)
    assert not install.maintenance
    assert any(WINDOW.match(line) for line in lines(before)), lines(before)
    [record] = state_dir.glob("*.snapshot.json")
    assert [taken["provider"] for taken in json.loads(record.read_text())["snapshots"]] == ["dircopy"]
    view = view_of(install, snapshot_root)
    readme = view / str(install.root / "data/alice/files/Readme.md").lstrip("/")
    (install.root / "data/alice/files/Readme.md").write_text("changed after the window\n")
    assert readme.read_text() == "hello alice\n", "the view keeps the window's state"
    assert dbpipe("dbpipe-dump", "--nextcloud", install.root, "--from-snapshot", "--state-dir", state_dir,
                  env=env).returncode == 0

    after = with_dircopy(AFTER, install, state_dir, env)

    assert after.returncode == 0, text(after)
    assert btrfs.mounts_below(snapshot_root) == [] and not view.exists()
    assert not (mount / DIRCOPY_HOME).exists(), "the copies and their directory are gone"
    assert [p.suffix for p in state_dir.iterdir()] == [".lock"]
    assert install.config()["maintenance"] is False

