"""The occ double writes, byte for byte, the streams tests/unit/test_occ_output.py
holds for real occ of each Nextcloud line (30, 31, 32, PR 56754), and the
states dbpipe relies on: JSON status, --no-warnings, the owner check."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from ..helpers import BARE_PATH
from ..unit.test_occ_output import streams
from testkit import installs


def expected(variant: str, name: str) -> tuple[int, str, str]:
    return streams(variant)[name]


def got(result) -> tuple[int, str, str]:
    return result.returncode, result.stdout, result.stderr


def test_app_commands_are_gone_in_maintenance_mode(plain_install, occ_variant):
    plain_install.set_maintenance(True)
    assert got(plain_install.occ("files:scan", "--all")) == expected(occ_variant, "files:scan in maintenance")


def test_nothing_but_the_installer_before_installation(plain_install, occ_variant):
    values = plain_install.file_config()
    plain_install.config_file.write_text(installs.php_config({**values, "installed": False}))
    assert got(plain_install.occ("config:list", "system")) == expected(occ_variant, "config:list not installed")


def test_an_exception_in_a_command_has_the_header_and_the_synopsis(plain_install, occ_variant):
    values = plain_install.file_config()
    plain_install.config_file.write_text(installs.php_config({**values, "config_is_read_only": True}))
    assert got(plain_install.occ("maintenance:mode", "--on")) == expected(occ_variant, "read-only config")


def test_an_input_error_is_symfonys_own(plain_install, occ_variant):
    result = plain_install.occ("maintenance:data-fingerprint", "--output=json")
    assert got(result) == expected(occ_variant, "bad option")


def test_the_owner_check_of_console_php(plain_install, occ_variant):
    result = subprocess.run(["php", "occ", "status"], cwd=plain_install.root, capture_output=True, text=True,
                            env={"PATH": BARE_PATH})
    assert got(result) == expected(occ_variant, "owner")


def test_a_php_warning_comes_first_on_stdout(plain_install, occ_variant):
    (plain_install.root / "occ-php-warning").write_text('Undefined array key "x"')
    code, stdout, stderr = got(plain_install.occ("foo:bar"))
    want_code, want_stdout, want_stderr = expected(occ_variant, "php warning")
    assert (code, stderr) == (want_code, want_stderr)
    assert re.fullmatch(r'\nWarning: Undefined array key "x" in \S+/occ on line \d+\n', stdout)


def test_an_unreadable_config_file_is_console_phps_unhandled_exception(plain_install, occ_variant):
    extra = plain_install.root / "config" / "zz.config.php"
    extra.write_text("<?php\n$CONFIG = [];\n")
    extra.chmod(0)
    code, stdout, stderr = got(plain_install.occ("status"))
    want = expected(occ_variant, "unhandled")
    assert (code, stderr) == (want[0], want[2])
    assert stdout == want[1].replace("/var/www/nextcloud", str(plain_install.root))


@pytest.mark.parametrize("occ_variant", ["pr56754"])
def test_pr56754_offers_only_maintenance_mode_and_status_in_maintenance_mode(plain_install, occ_variant):
    plain_install.set_maintenance(True)
    assert got(plain_install.occ("maintenance:data-fingerprint")) == \
        expected(occ_variant, "data-fingerprint in maintenance")
    assert got(plain_install.occ("maintenance:data-fingerprint", "--no-interaction", "--no-warnings")) == \
        expected(occ_variant, "data-fingerprint in maintenance, --no-warnings")
    assert got(plain_install.occ("config:list", "system")) == expected(occ_variant, "config:list in maintenance")
    assert got(plain_install.occ("config:system:set", "--no-warnings", "x", "--value=1")) == \
        expected(occ_variant, "config:system:set in maintenance")
    status = plain_install.occ("status", "--output=json")
    assert (status.returncode, status.stderr) == (0, "")
    assert json.loads(status.stdout)["maintenance"] is True


def test_no_warnings_silences_the_notice_where_bind_saw_it(plain_install, occ_variant):
    """30-32 bind the global options and stop at the first word they do not
    know; PR 56754 looks for --no-warnings anywhere."""
    plain_install.set_maintenance(True)
    early = plain_install.occ("config:list", "--no-warnings", "system", "--output=json")
    late = plain_install.occ("maintenance:data-fingerprint", "--output=json", "--no-warnings")
    notice = "Nextcloud is in maintenance mode"
    if occ_variant == "pr56754":
        assert early.returncode == 1 and notice not in early.stderr
        assert late.returncode == 1 and notice not in late.stderr
    else:
        assert early.returncode == 0 and early.stderr == ""
        assert json.loads(early.stdout)["system"]["maintenance"] is True
        assert late.returncode == 1 and late.stderr.startswith(notice)


def test_status_json_names_the_line(plain_install, occ_variant):
    result = plain_install.occ("status", "--output=json")
    data = json.loads(result.stdout)
    assert (result.returncode, result.stderr) == (0, "")
    assert data["version"] == installs.VARIANT_VERSIONS[occ_variant]
    assert (data["installed"], data["maintenance"], data["needsDbUpgrade"]) == (True, False, False)
    assert plain_install.occ("status", "-e").returncode == 0


def test_data_fingerprint_talks_from_31_on(plain_install, occ_variant):
    result = plain_install.occ("maintenance:data-fingerprint")
    value = plain_install.config()["data-fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{32}", value)
    said = "" if occ_variant == "30" else f"Updated data-fingerprint to {value}\n"
    assert got(result) == (0, said, "")
