"""Running the executables the way Bareos and a shell run them, and looking at
what they left behind."""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path


from dbpipe.bareos import split_argv as bareos_argv  # noqa: F401 - Bareos' own rule, for the tests

from testkit.paths import BIN, ROOT, bareos_env  # noqa: F401 - shared with the bench
from testkit.prerequisites import require_root
from testkit.servers import BARE_PATH  # noqa: F401


def dbpipe(command: str, *args, stdin=None, env: dict | None = None, timeout: float = 300,
           stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """Run bin/<command> with a bare environment from cwd /.

    stdin may be bytes, a path, an open file, or None (empty input)."""
    argv = [str(BIN / command), *map(str, args)]
    kwargs = {}
    if isinstance(stdin, (bytes, bytearray)):
        kwargs["input"] = bytes(stdin)
    elif isinstance(stdin, (str, Path)):
        kwargs["stdin"] = open(stdin, "rb")
    elif stdin is None:
        kwargs["stdin"] = subprocess.DEVNULL
    else:
        kwargs["stdin"] = stdin
    try:
        return subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, cwd="/",
                              env=env or bareos_env(), timeout=timeout, **kwargs)
    finally:
        if isinstance(stdin, (str, Path)):
            kwargs["stdin"].close()


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in result.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def reachable_tempdir(prefix: str, why: str):
    """A temp dir other accounts can enter (pytest's tmp_path is root-only, 0700);
    skips (in CI: fails) unless we are root, who can hand files to those accounts."""
    require_root(why)
    base = tempfile.mkdtemp(prefix=prefix)
    os.chmod(base, 0o755)
    try:
        yield Path(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def write_secret(directory, name: str, value: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return path


class SyslogCollector:
    """A private syslog socket (pass its path as DBPIPE_SYSLOG_SOCKET)."""

    def __init__(self, path: str):
        self.path = path
        self.messages: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append(data.decode("utf-8", "replace"))

    def text(self) -> str:
        return "\n".join(self.messages)

    def close(self):
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


def describe(argv) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


def id_without_account(start: int = 54321) -> int:
    """A number that is neither a uid nor a gid in passwd/group: an owner as
    containers and restored systems leave them."""
    taken = {p.pw_uid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    return next(number for number in range(start, start + 10_000) if number not in taken)


def chown_tree(root, uid: int, gid: int) -> None:
    for directory, _, files in os.walk(root):
        os.chown(directory, uid, gid)
        for name in files:
            os.chown(os.path.join(directory, name), uid, gid)
