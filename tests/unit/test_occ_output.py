"""occ_failure() fed the exact byte streams real occ writes, per Nextcloud
line: Nextcloud's notices first on stderr (Application::loadCommands), then
Symfony's error box (Application::renderThrowable/doRenderThrowable: an empty
line, a line of spaces, each message line padded "  msg  ", a line of spaces,
an empty line; "In File.php line N:" only for exceptions that are not
Symfony's own; the running command's synopsis after).  The same streams are
what tests/nextcloud/test_occ_double.py requires of the occ double."""

from __future__ import annotations

import pytest

from dbpipe.errors import PermissionDenied
from dbpipe.nextcloud.occ import CommandUnavailable, OccError, occ_failure, occ_message
from dbpipe.process import Completed

LINES = ("30", "31", "32", "pr56754")

# lib/private/Console/Application.php writeMaintenanceModeInfo(), per line
MAINTENANCE_NOTICE = {
    "30-32": ("Nextcloud is in maintenance mode, no apps are loaded.\n"
              "Commands provided by apps are unavailable.\n"),
    "pr56754": ("Nextcloud is in maintenance mode. Only a limited number of commands are available.\n"
                "In maintenance mode logins are blocked and events may not be triggered since apps "
                "are not loaded.\n"
                "Proceed with maintenance activities then use the \"occ maintenance:mode --off\" to "
                "disable maintenance mode.\n"),
}
NOT_INSTALLED_NOTICE = {
    "30-32": "Nextcloud is not installed - only a limited number of commands are available\n",
    "pr56754": ("Nextcloud is not installed. Only a limited number of commands are available.\n"
                "Please use your browser or the \"occ maintenance:install\" command to proceed with "
                "installation.\n"),
}


def family(line: str) -> str:
    return "pr56754" if line == "pr56754" else "30-32"


def box(*message: str, header: str | None = None, synopsis: str | None = None) -> str:
    """Symfony's renderThrowable() output at normal verbosity, not decorated."""
    width = max(len(m) for m in message) + 4
    out = "\n" + (f"In {header}:\n" if header else "") + " " * width + "\n"
    out += "".join(f"  {m}  {' ' * (width - len(m) - 4)}\n" for m in message)
    out += " " * width + "\n\n"
    return out + (f"{synopsis}\n\n" if synopsis else "")


# one stream written out in full, byte for byte, as the box() above builds it
FILES_NAMESPACE_BOX = ("\n"
                       "                                                           \n"
                       "  There are no commands defined in the \"files\" namespace.  \n"
                       "                                                           \n"
                       "\n")


def streams(line: str) -> dict[str, tuple[int, str, str]]:
    """name -> (exit code, stdout, stderr) of real occ of this line."""
    notice = MAINTENANCE_NOTICE[family(line)]
    result = {
        # files:scan in maintenance mode, without --no-warnings: an app command
        "files:scan in maintenance": (1, "", notice + FILES_NAMESPACE_BOX),
        # before installation every line offers no config commands
        "config:list not installed": (1, "", NOT_INSTALLED_NOTICE[family(line)]
                                      + box('There are no commands defined in the "config" namespace.')),
        # an exception inside a command (HintException from Config::writeData);
        # maintenance:mode never gets the maintenance notice
        "read-only config": (1, "", box(
            'Config is set to be read-only via option "config_is_read_only".', header="Config.php line 287",
            synopsis="maintenance:mode [--on] [--off] [--check-if-disabled]")),
        # console.php: the owner check, on stdout
        "owner": (1, "Console has to be executed with the user that owns the file config/config.php\n"
                     "Current user id: 0\nOwner id of config.php: 33\n"
                     "Try adding 'sudo -u #33' to the beginning of the command (without the single quotes)\n"
                     "If running with 'docker exec' try adding the option '-u 33' to the docker command "
                     "(without the single quotes)\n", ""),
        # an input error is Symfony's own (no header), with the synopsis
        "bad option": (1, "", box('The "--output" option does not exist.',
                                  synopsis="maintenance:data-fingerprint")),
        # a PHP warning with display_errors on, on stdout, before the box
        "php warning": (1, "\nWarning: Undefined array key \"x\" in /var/www/nextcloud/apps/a/b.php on line 9\n",
                        box('There are no commands defined in the "foo" namespace.')),
        # console.php exceptionHandler(), before the application runs
        "unhandled": (1, "An unhandled exception has been thrown:\nException: Could not open the config "
                         "file /var/www/nextcloud/config/zz.config.php in /var/www/nextcloud/lib/private/"
                         "Config.php:222\nStack trace:\n#0 {main}", ""),
    }
    if line == "pr56754":
        # PR 56754 registers only maintenance:mode (+ status, _completion...) in maintenance mode
        result["data-fingerprint in maintenance"] = (1, "", notice + box(
            'Command "maintenance:data-fingerprint" is not defined.', "", "Did you mean this?",
            "    maintenance:mode"))
        result["data-fingerprint in maintenance, --no-warnings"] = (1, "", box(
            'Command "maintenance:data-fingerprint" is not defined.', "", "Did you mean this?",
            "    maintenance:mode"))
        result["config:list in maintenance"] = (1, "", notice + box(
            'There are no commands defined in the "config" namespace.'))
        result["config:system:set in maintenance"] = (1, "", box(
            'There are no commands defined in the "config:system" namespace.'))
    return result


EXPECTED = {
    "files:scan in maintenance": (CommandUnavailable, 'There are no commands defined in the "files" namespace.'),
    "config:list not installed": (CommandUnavailable, 'There are no commands defined in the "config" namespace.'),
    "read-only config": (OccError, 'Config is set to be read-only via option "config_is_read_only".'),
    "owner": (PermissionDenied, "Console has to be executed with the user that owns the file config/config.php"),
    "bad option": (OccError, 'The "--output" option does not exist.'),
    "php warning": (CommandUnavailable, 'There are no commands defined in the "foo" namespace.'),
    "unhandled": (OccError, "An unhandled exception has been thrown: Exception: Could not open the config file "
                            "/var/www/nextcloud/config/zz.config.php in /var/www/nextcloud/lib/private/"
                            "Config.php:222"),
    "data-fingerprint in maintenance": (CommandUnavailable,
                                        'Command "maintenance:data-fingerprint" is not defined.'),
    "data-fingerprint in maintenance, --no-warnings": (CommandUnavailable,
                                                       'Command "maintenance:data-fingerprint" is not defined.'),
    "config:list in maintenance": (CommandUnavailable, 'There are no commands defined in the "config" namespace.'),
    "config:system:set in maintenance": (CommandUnavailable,
                                         'There are no commands defined in the "config:system" namespace.'),
}

CASES = [(line, name) for line in LINES for name in streams(line)]


def test_the_written_out_box_is_what_box_builds():
    assert box('There are no commands defined in the "files" namespace.') == FILES_NAMESPACE_BOX


@pytest.mark.parametrize("line,name", CASES, ids=[f"{line}-{name}" for line, name in CASES])
def test_occ_failure_classifies_what_real_occ_writes(line, name):
    code, stdout, stderr = streams(line)[name]
    kind, message = EXPECTED[name]

    error = occ_failure("the-command", Completed(("php", "occ"), code, stdout, stderr))

    assert type(error) is kind
    assert str(error) == f"occ the-command failed (exit {code}): {message}"
    assert "\n" not in str(error)


@pytest.mark.parametrize("line", LINES)
def test_a_notice_alone_is_never_the_message(line):
    """Nextcloud's notice, then a command's own one-line failure on stdout."""
    stderr = MAINTENANCE_NOTICE[family(line)]
    message = occ_message("Please specify the user id to scan, --all to scan for all users or --path=...\n"
                          + "\n" + stderr)
    assert message == "Please specify the user id to scan, --all to scan for all users or --path=..."


def test_the_seen_failure_of_issue_19_now_falls_back():
    """What an occ with Nextcloud 26's notice wording and PR 56754's command
    set wrote in the acceptance run: the notice is no longer the message."""
    stderr = ("Nextcloud is in maintenance mode, hence the database isn't accessible.\n"
              "Cannot perform any command except 'maintenance:mode --off'\n"
              + box('Command "maintenance:data-fingerprint" is not defined.', "", "Did you mean this?",
                    "    maintenance:mode"))

    error = occ_failure("maintenance:data-fingerprint", Completed(("php", "occ"), 1, "", stderr))

    assert type(error) is CommandUnavailable
    assert str(error) == ('occ maintenance:data-fingerprint failed (exit 1): '
                          'Command "maintenance:data-fingerprint" is not defined.')
