"""Child processes: streaming children, run-to-completion commands, and signals.

Two kinds of children, one way to start them (`_spawn`):

* Streaming children (dump tools, database clients) move the data.  We own
  their stdin/stdout file descriptors and copy raw bytes (`Child`).
* Short commands whose output we read (occ, psql queries, systemctl,
  sqlite3 pragmas) run to completion with a timeout (`run`).

Both share one privilege-drop rule (`RunAs`: numeric uid and gid, so an
owner without a passwd entry works too), one environment-scrubbing rule
(`child_environment`: no secrets can leak in from ours), and one kill rule:
every child runs in its own session, so a terminal's Ctrl-C reaches only us,
and is killed with its whole process group on every failure path.
"""

from __future__ import annotations

import collections
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass


from .errors import Cancelled, UnavailableError
from .log import log

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_KEPT_ENVIRONMENT = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
STDERR_LINES_KEPT = 40
# How long a child may take, in seconds - every limit in one place.
QUICK_TIMEOUT = 30.0      # a version query; a ping; reaping a killed child
CONNECT_TIMEOUT = 30      # reaching a database server (an int: it is also written as --connect-timeout=N)
SHORT_TIMEOUT = 60.0      # a mount or findmnt call; one HTTP request to Nextcloud's DAV
CONTROL_TIMEOUT = 120.0   # one bconsole command; pg_ctl starting or stopping a recovery server
COMMAND_TIMEOUT = 300.0   # run()'s default: occ, psql queries, systemctl, btrfs, pg_waldump, a trial shutdown
SERVER_START_TIMEOUT = 300  # a restarted database server until it answers (--start-timeout)
LONG_TIMEOUT = 600.0      # a whole database file (sqlite3 .backup, integrity_check, a binary log); a busy
                          # server's stop
RECOVERY_TIMEOUT = 3600.0  # a whole server recovered or copied back; a Bareos restore job (pitr --timeout)
DRAIN_TIMEOUT = 5.0       # the stderr reader's last lines once the child has ended
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def child_environment(extra: dict | None = None) -> dict:
    """Our environment minus everything not on a short allow-list.

    Messages are forced to English so failures can be classified.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key in _KEPT_ENVIRONMENT or key.startswith("LC_")
    }
    env.setdefault("PATH", DEFAULT_PATH)
    env.pop("LC_ALL", None)
    env["LC_MESSAGES"] = "C"
    env.update(extra or {})
    return env


def find_tool(*names: str, package_hint: str = "") -> str:
    """The first of these programs found on PATH."""
    path = os.environ.get("PATH") or DEFAULT_PATH
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    hint = f" (install {package_hint})" if package_hint else ""
    raise UnavailableError(f"{' or '.join(names)} not found on PATH{hint}")


@dataclass(frozen=True)
class RunAs:
    """An unprivileged account to run a child as (only effective when we are root).

    Numeric on purpose: files of containers and restored systems are often
    owned by a uid that has no passwd entry here, and such an owner must work
    for every child alike."""

    uid: int
    gid: int

    @classmethod
    def owner_of(cls, path: str) -> "RunAs | None":
        """The owner of path, when we are root and the owner is not."""
        st = os.stat(path)
        if os.geteuid() != 0 or st.st_uid == 0:
            return None
        return cls(st.st_uid, st.st_gid)

    def user_name(self) -> str | None:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return None

    def popen_kwargs(self) -> dict:
        """Drop to uid/gid and to the account's own supplementary groups, never
        root's; an owner without a passwd entry gets its gid alone."""
        name = self.user_name()
        groups = os.getgrouplist(name, self.gid) if name else [self.gid]
        return {"user": self.uid, "group": self.gid, "extra_groups": groups}


def _spawn(argv, *, stdin, stdout, env_extra=None, pass_fds=(), run_as: RunAs | None = None,
           cwd=None) -> subprocess.Popen:
    """Start any child: scrubbed environment, its own session (so its whole
    group can be killed), privileges dropped, cwd / unless told otherwise."""
    log.debug("starting %s", " ".join(argv))
    try:
        return subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
            env=child_environment(env_extra), pass_fds=tuple(pass_fds),
            start_new_session=True, cwd=cwd or "/",
            **(run_as.popen_kwargs() if run_as else {}),
        )
    except FileNotFoundError:
        raise UnavailableError(f"{argv[0]} not found") from None
    except PermissionError as exc:
        raise UnavailableError(f"cannot run {argv[0]}: {exc.strerror}") from None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class Child:
    """A streaming child.  Its stderr is drained into a ring buffer by a thread
    (a full stderr pipe would otherwise stall it)."""

    def __init__(self, argv, *, label=None, stdin=None, stdout=None, env_extra=None,
                 pass_fds=(), run_as: RunAs | None = None, cwd=None):
        self.label = label or os.path.basename(argv[0])
        self.stderr_lines: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_KEPT)
        with _starting_child():
            self._proc = _spawn(argv, stdin=stdin, stdout=stdout, env_extra=env_extra,
                               pass_fds=pass_fds, run_as=run_as, cwd=cwd)
            self._drainer = threading.Thread(target=self._drain_stderr, daemon=True)
            self._drainer.start()
        if _held and not _past_no_return():
            self.kill()
            _raise_held()

    def _drain_stderr(self) -> None:
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.stderr_lines.append(line)
                log.debug("%s: %s", self.label, line)
        self._proc.stderr.close()

    @property
    def stdin_fd(self) -> int:
        """Our end of the child's stdin pipe (stdin=subprocess.PIPE)."""
        return self._proc.stdin.fileno()

    @property
    def stdout_fd(self) -> int:
        """Our end of the child's stdout pipe (stdout=subprocess.PIPE)."""
        return self._proc.stdout.fileno()

    def close_stdin(self) -> None:
        """End of input: the child sees EOF."""
        with contextlib.suppress(OSError):
            self._proc.stdin.close()

    def close_stdout(self) -> None:
        """Our copy of the child's stdout pipe, once it is handed to another
        child: that one alone reads it, and sees EOF when this child ends."""
        with contextlib.suppress(OSError):
            self._proc.stdout.close()

    def poll(self) -> int | None:
        """The exit code if the child has ended, else None."""
        return self._proc.poll()

    @property
    def returncode(self) -> int | None:
        """The exit code once the child was waited for (negative: killed by that signal)."""
        return self._proc.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self._proc.wait(timeout)
        self._drainer.join(DRAIN_TIMEOUT)
        return code

    def kill(self) -> None:
        """Kill the child's whole process group and reap it."""
        if self._proc.poll() is None:
            _kill_group(self._proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.wait(QUICK_TIMEOUT)

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines)

    def failure(self, code: int | None = None) -> str:
        """One line: how the child ended and the last thing it said."""
        code = self._proc.returncode if code is None else code
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
        last = telling_line(self.stderr_lines)
        return f"{self.label} {how}" + (f": {last}" if last else "")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


_TELLING = re.compile(r"error|fatal|denied|failed|refused|cannot|can't|unable|not found|no such",
                      re.IGNORECASE)


def telling_line(lines) -> str:
    """The line of a tool's output that best says what went wrong: the last
    error-like line, else the last line (indented hints and warnings skipped)."""
    candidates = [ln.strip() for ln in lines if ln.strip() and not ln[:1].isspace()
                  and not ln.lower().startswith(("warning", "hint", "detail"))]
    errors = [ln for ln in candidates if _TELLING.search(ln)]
    return (errors or candidates or [""])[-1]


@dataclass(frozen=True)
class Completed:
    argv: tuple
    code: int
    stdout: str
    stderr: str

    def last_error_line(self) -> str:
        return telling_line((self.stderr or self.stdout).splitlines())


def run(argv, *, input: str | bytes | None = None, timeout: float | None = COMMAND_TIMEOUT,
        env_extra: dict | None = None, run_as: RunAs | None = None,
        cwd: str | None = None, pass_fds=()) -> Completed:
    """Run a short command to completion and capture its output.

    Never raises for a non-zero exit: the caller decides what a code means.
    A timeout (timeout=None: none, for work that takes as long as the data)
    kills the command's process group and raises UnavailableError; a cancel
    kills it too and goes on as Cancelled.
    """
    data = input.encode() if isinstance(input, str) else input
    with _starting_child():
        proc = _spawn(argv, stdin=subprocess.DEVNULL if data is None else subprocess.PIPE,
                      stdout=subprocess.PIPE, env_extra=env_extra, pass_fds=pass_fds,
                      run_as=run_as, cwd=cwd)
    try:
        _raise_held()
        out, err = proc.communicate(data, timeout)
    except subprocess.TimeoutExpired:
        _end(proc)
        raise UnavailableError(f"{os.path.basename(argv[0])} timed out after {timeout:g} s") from None
    except BaseException:  # e.g. Cancelled: kill and reap before going on
        _end(proc)
        raise
    return Completed(tuple(argv), proc.returncode, _text(out), _text(err))


def _end(proc: subprocess.Popen) -> None:
    """Kill a command's process group, reap it, close our ends of its pipes."""
    _kill_group(proc.pid)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(QUICK_TIMEOUT)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _text(data) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")


_starting: list[bool] = []  # non-empty while a child is being started
_deferred: list[bool] = []  # non-empty in a cancel_deferred block
_held: list[int] = []       # a cancel signal that arrived meanwhile
_fired: list[int] = []      # the cancel signal that was acted on (later ones are ignored)
_scopes: list[list[str]] = []  # per no_return_scope: the points of no return passed in it
_completed: list[bool] = []    # the program's last work is done: nothing is left to cancel


@contextlib.contextmanager
def _starting_child():
    """Hold back a cancel signal while a child is being started: raised in the
    middle of that, it would leave the child running (or unreaped) with no
    handle to kill it.  The starter raises it once it can clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only ever interrupt the main thread
        return
    _starting.append(True)
    try:
        yield
    finally:
        _starting.pop()


def _raise_held() -> None:
    if _held and not (_past_no_return() or _deferred or _completed):
        raise Cancelled(_held.pop())


@contextlib.contextmanager
def cancel_deferred():
    """Hold a cancel signal back until the block is done, then act on it: for
    a step whose outcome the cleanup needs, e.g. the JobId of a Bareos job
    just started, which a cancel in the middle would leave running unknown."""
    _deferred.append(True)
    try:
        yield
    finally:
        _deferred.pop()
    _raise_held()


def _past_no_return() -> bool:
    return any(_scopes)


def past_no_return() -> str | None:
    """What is being replaced now that stopping could leave broken (the first
    point of no return passed), or None: a deadline waits while it is set."""
    return next((passed[0] for passed in _scopes if passed), None)


@contextlib.contextmanager
def no_return_scope():
    """A block (a whole restore) that may pass a point of no return.  From
    that point (point_of_no_return) to the end of the block a cancel is held
    back: the live data is being, or has been, replaced, so stopping could
    only leave a restore that did happen reported as cancelled - or half
    put in place.  A cancel that arrived meanwhile is logged once the block
    is done, and the next one acts again."""
    passed: list[str] = []
    _scopes.append(passed)
    try:
        yield
    except BaseException:
        _scopes.pop()
        _drop_held(passed, "then the restore failed")
        raise
    _scopes.pop()
    _drop_held(passed, "the restore had passed its point of no return and is complete: nothing was cancelled")


def work_completed() -> None:
    """The program's last piece of work is done (dbpipe-restore: 'restore
    complete' is next): a cancel from here on has nothing left to stop and
    must not turn the success into exit 143; it is named at the end instead."""
    _completed.append(True)


def point_of_no_return(what: str) -> None:
    """From here to the end of the enclosing no_return_scope, cancels wait."""
    if _scopes:
        _scopes[-1].append(what)


def _drop_held(passed: list[str], outcome: str) -> None:
    if passed and _held and not _past_no_return():
        log.warning("%s arrived %s; %s", signal.Signals(_held.pop()).name, passed[0], outcome)
        _fired.clear()


@contextlib.contextmanager
def cancellable():
    """Turn SIGTERM/SIGINT/SIGHUP into a Cancelled exception in the main thread.

    Only the first signal raises; later ones arrive during cleanup and are
    ignored so the cleanup can finish.
    """
    def handler(signum, _frame):
        if not _fired:
            _fired.append(signum)
            if _starting or _deferred or _past_no_return() or _completed:
                _held.append(signum)
                return
            raise Cancelled(signum)

    try:
        # done: a cancel now has nothing left to stop, and must not turn a success into a kill
        with signals_handled(CANCEL_SIGNALS, handler, ignore_after_success=True):
            yield
        if _completed and _held:
            log.warning("%s arrived after the restore was complete: nothing was cancelled",
                        signal.Signals(_held.pop()).name)
    finally:
        _fired.clear()
        _completed.clear()


@contextlib.contextmanager
def signals_handled(signals: tuple, handler, ignore_after_success: bool = False):
    """The one place that swaps signal handlers: handler for signals while the
    block runs, then the previous handlers back - or, after a block that
    succeeded and ignore_after_success, none that could still interrupt."""
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    except BaseException:
        _put_back(previous)
        raise
    _put_back(dict.fromkeys(signals, signal.SIG_IGN) if ignore_after_success else previous)


def _put_back(handlers: dict) -> None:
    for sig, old in handlers.items():
        signal.signal(sig, signal.SIG_DFL if old is None else old)  # None: not set from Python


def running_commands(match) -> list[int]:
    """Pids of our user's other processes whose argv match(argv) accepts: for
    a program that must reach a sibling it did not start (both children of
    the Bareos director), never one it could not signal anyway."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != os.getuid():
                continue
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                argv = [arg.decode("utf-8", "replace") for arg in handle.read().split(b"\0")[:-1]]
        except OSError:
            continue
        if argv and match(argv) and alive(int(name)):
            found.append(int(name))
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def start_detached(argv, run_as: RunAs | None = None) -> int:
    """Start a server that outlives us (a recovered server left beside the live
    one): its own session, scrubbed environment, no pipe to us; its pid."""
    log.debug("starting %s (detached)", " ".join(argv))
    with _starting_child():
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=child_environment(), start_new_session=True,
                                cwd="/", **(run_as.popen_kwargs() if run_as else {}))
    _raise_held()
    return proc.pid
