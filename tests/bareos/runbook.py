"""A runbook's blocks, run as written on the test bed with only host names,
ports and paths substituted.

Blocks of resources headed `# /etc/bareos/<daemon>.d/<path>` are written to
that host's config tree; ```sh blocks run line by line.  The few commands a
test bed runs otherwise than a host - its daemons are not systemd services
and have their own config directories, bconsole its own conf - are mapped
here, each by a pattern; any other line runs in bash as written, and a line
nothing maps fails the test: a runbook that stops working fails CI."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..helpers import BARE_PATH

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
HEADER = re.compile(r"^# /etc/bareos/(bareos-(?:fd|dir)\.d)/(\S+)$", re.MULTILINE)
BCONSOLE = re.compile(r'^echo "?(.*?)"? \| bconsole$')


def blocks(doc: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced block, in order."""
    return FENCE.findall(doc.read_text())


def resources(text: str) -> dict[tuple[str, str], str]:
    """(daemon dir, relative path) -> content of a block of headed resources."""
    parts = HEADER.split(text)
    return {(parts[i], parts[i + 1]): parts[i + 2].lstrip("\n") for i in range(1, len(parts), 3)}


@dataclass
class Runner:
    """Runs one runbook's blocks; `substitutions` maps the doc's host names,
    ports, paths and placeholders to the test bed's."""

    bareos: object                     # testbed.Bareos
    client: object                     # testbed.FileDaemon the runbook sets up; None: the Nextcloud host
    substitutions: dict[str, str]
    env: dict = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    last_job: int | None = None

    def substituted(self, text: str) -> str:
        for old in sorted(self.substitutions, key=len, reverse=True):
            text = text.replace(old, self.substitutions[old])
        return text

    def write(self, text: str, added: dict[str, str]) -> None:
        """Headed resources to the host (bareos-fd.d) or the director (bareos-dir.d);
        added: lines the test bed adds to a resource file (its port, address, working directory)."""
        for (daemon, rel), content in resources(text).items():
            content, rel = self.substituted(content), self.substituted(rel)
            if rel in added:
                content = re.sub(r"(\{\n)", r"\1" + added[rel].replace("\\", "\\\\"), content, count=1)
            if daemon == "bareos-fd.d":
                self.bareos.write_client(self.client, {rel: content})
            else:
                self.bareos.add_resource(rel, content)

    def run(self, text: str) -> None:
        for line in self.substituted(text).splitlines():
            if line.strip():
                for command in line.split(" && "):
                    self._command(command.strip())

    def _command(self, command: str) -> None:
        found = BCONSOLE.match(command)
        if found and found.group(1).startswith("status client=") and self.client:
            self.bareos.wait_client(self.client)      # a restarted daemon answers after a moment
        if found:
            out = self.bareos.console(re.sub(r"<\w+ job id>", str(self.last_job), found.group(1)))
            self.outputs.append(out)
            job = re.search(r"Job queued\. JobId=(\d+)", out)
            self.last_job = int(job.group(1)) if job else self.last_job
            if found.group(1) == "reload" and "rror" in out:
                raise AssertionError(f"reload failed: {out}")
        elif command == "bareos-fd -t":
            self.bareos.client_config_test(self.client) if self.client else self.bareos.config_test("bareos-fd")
        elif command == "bareos-dir -t":
            self.bareos.config_test("bareos-dir")
        elif command == "systemctl restart bareos-fd":
            self.bareos.start_client(self.client) if self.client else self.bareos.restart_fd()
        else:
            result = subprocess.run(["bash", "-e", "-c", command], capture_output=True, text=True,
                                    cwd=self.env.get("PWD", "/"), env={"PATH": BARE_PATH, **self.env}, timeout=300)
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
            self.outputs.append(result.stdout)
            if command.startswith("cd "):
                self.env["PWD"] = command[3:].strip()


def section_blocks(doc: Path, heading: str) -> list[tuple[str, str]]:
    """(language, text) of the fenced blocks of one `## heading` section: a
    runbook that is one part of a longer document."""
    text = doc.read_text().split(f"\n## {heading}\n", 1)[1]
    return FENCE.findall(text.split("\n## ", 1)[0])
