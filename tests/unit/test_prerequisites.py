"""A missing prerequisite the project installs skips on a developer's machine
and fails in CI naming the package; a by-design skip skips everywhere.  Run
in a separate pytest on a PATH where the tools really are not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from ..helpers import ROOT

PROBE = textwrap.dedent("""
    from testkit.prerequisites import not_applicable, require_tools

    def test_needs_btrfs_progs():
        require_tools(["mkfs.btrfs", "losetup"], "/nonexistent", "snapshot tests")

    def test_cannot_apply():
        not_applicable("sqlite has no password")
""")


def run_probe(tmp_path, ci: str | None) -> str:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider",
                             "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py")],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    return result.stdout


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_a_missing_package_skips_naming_it(tmp_path, ci):
    out = run_probe(tmp_path, ci)
    assert "2 skipped" in out
    assert ("snapshot tests: mkfs.btrfs, losetup missing (install btrfs-progs mount "
            "(tools/system-deps test))") in out
    assert "by design: sqlite has no password" in out


def test_in_ci_a_missing_package_fails_naming_it(tmp_path):
    out = run_probe(tmp_path, "true")
    assert "1 failed, 1 skipped" in out
    assert ("snapshot tests: mkfs.btrfs, losetup missing: install btrfs-progs mount "
            "(tools/system-deps test) (CI=true: the project installs this, so the test may not skip)") in out
    assert "by design: sqlite has no password" in out
