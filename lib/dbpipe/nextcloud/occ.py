"""Running `php occ ...` as the owner of config.php, with a timeout, and
turning its failures into one line carrying occ's own message."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ..errors import DbpipeError, PermissionDenied, UnavailableError
from ..log import log
from ..process import COMMAND_TIMEOUT, Completed, run
from .installation import Installation, php_environment

DEFAULT_TIMEOUT = COMMAND_TIMEOUT  # --command-timeout
# never prompt in a job; keep global warnings out of the JSON we parse
GLOBAL_OPTIONS = ("--no-interaction", "--no-warnings")
_SYMFONY_HEADER = re.compile(r"^In \S+ line \d+:$")
_PHP_NOISE = re.compile(r"^(PHP )?(Warning|Deprecated|Notice):", re.IGNORECASE)
_OWNER_REFUSAL = "has to be executed with the user that owns"
# Symfony's CommandNotFoundException / NamespaceNotFoundException messages
# (Application::find(), findNamespace()); searched anywhere in the output, as
# Nextcloud may write notices first and Symfony boxes them in
_NOT_DEFINED = re.compile(r'Command "[^"]*" is not defined\.'
                          r'|There are no commands defined in the "[^"]*" namespace\.'
                          r'|The command "[^"]*" does not exist\.')
# what Nextcloud's console.php and Application::loadCommands() write before a
# command runs (state notices, memory and PCNTL warnings), in 26 to 32 and newer
_NOTICE = re.compile(r"^(Nextcloud is in maintenance mode|Commands provided by apps are unavailable"
                     r"|Cannot perform any command except 'maintenance:mode --off'"
                     r"|In maintenance mode logins are blocked|Proceed with maintenance activities"
                     r"|Nextcloud is not installed|Please use your browser or the \"occ "
                     r"|Nextcloud or one of (the|its) apps require|You may use your browser or the occ"
                     r"|The (current )?PHP(-CLI)? memory limit|Please adjust your \"memory_limit\""
                     r"|The process control \(PCNTL\)|Additionally the function 'pcntl_signal')")
_UNHANDLED = "An unhandled exception has been thrown:"


class OccError(UnavailableError):
    """occ ran but reported a failure (exit 69)."""


class CommandUnavailable(OccError):
    """occ does not offer this command here, e.g. the next Nextcloud in
    maintenance mode, where only maintenance:mode and status exist."""


@dataclass(frozen=True)
class Status:
    """What `occ status --output=json` reports."""

    installed: bool
    version: str
    maintenance: bool
    needs_db_upgrade: bool

    def describe(self) -> str:
        return (f"version {self.version or '?'}, maintenance {'on' if self.maintenance else 'off'}"
                + (", needs occ upgrade" if self.needs_db_upgrade else ""))


@dataclass(frozen=True)
class Occ:
    installation: Installation
    timeout: float = DEFAULT_TIMEOUT

    def run(self, command: str, *args: str) -> Completed:
        """Run one occ command; a non-zero exit raises with occ's own message."""
        inst = self.installation
        label = f"{command} {args[0]}" if args[:1] in (("--on",), ("--off",)) else command
        argv = [inst.php, "occ", command, *GLOBAL_OPTIONS, *args]
        try:
            result = run(argv, timeout=self.timeout, env_extra=php_environment(),
                         run_as=inst.run_as(), cwd=inst.root)
        except UnavailableError as exc:
            raise OccError(f"occ {label}: {exc}") from None
        log.debug("occ %s exited %d", command, result.code)
        if result.code != 0:
            raise occ_failure(label, result)
        return result

    def json(self, command: str, *args: str) -> dict:
        result = self.run(command, *args, "--output=json")
        return parse_json(result.stdout, f"occ {command}")

    def status(self) -> Status:
        data = self.json("status")
        return Status(bool(data.get("installed")), str(data.get("version") or ""),
                      bool(data.get("maintenance")), bool(data.get("needsDbUpgrade")))

    def system_config(self, private: bool = False) -> dict:
        """config:list system: the merged files, with NC_* overrides applied."""
        data = self.json("config:list", "system", *(["--private"] if private else []))
        system = data.get("system")
        if not isinstance(system, dict):
            raise OccError("occ config:list printed no system section")
        return system


def occ_failure(label: str, result: Completed) -> DbpipeError:
    output = result.stdout + "\n" + result.stderr
    message = occ_message(output)
    error = (PermissionDenied if _OWNER_REFUSAL in output
             else CommandUnavailable if _NOT_DEFINED.search(output) else OccError)
    return error(f"occ {label} failed (exit {result.code}): {message or 'no message'}")


def occ_message(output: str) -> str:
    """The line that says what went wrong.

    Symfony boxes its message (padded lines between lines of spaces), with an
    'In File.php line N:' header for exceptions that are not its own; the
    console's own refusals come as plain lines.  Nextcloud's notices and PHP
    warnings may come first, so they are never taken for the message.
    """
    found = _NOT_DEFINED.search(output)
    if found:
        return found.group(0)
    raw = output.splitlines()
    lines = [line.strip() for line in raw]
    for index, line in enumerate(lines):
        if _SYMFONY_HEADER.match(line):
            following = [ln for ln in lines[index + 1:] if ln]
            if following:
                return following[0]
    for top, below in zip(raw, raw[1:], strict=False):
        if len(top) >= 5 and not top.strip() and below.startswith("  ") and below.strip():
            return below.strip()
    meaningful = [ln for ln in lines if ln and not _PHP_NOISE.match(ln) and not _NOTICE.match(ln)]
    if meaningful[:1] == [_UNHANDLED] and len(meaningful) > 1:
        return f"{_UNHANDLED} {meaningful[1]}"
    return (meaningful or [ln for ln in lines if ln] or [""])[0]


def parse_json(output: str, what: str) -> dict:
    """The first JSON object in output (older versions print warnings first)."""
    start = output.find("{")
    try:
        data, _ = json.JSONDecoder().raw_decode(output[start:]) if start >= 0 else (None, 0)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        first = next((ln.strip() for ln in output.splitlines() if ln.strip()), "nothing")
        raise OccError(f"{what} printed no JSON object: {first[:100]}")
    return data
