"""A runbook's blocks, run as written on the test bed with only host names,
ports and paths substituted.

Blocks of resources headed `# /etc/bareos/<daemon>.d/<path>` are written to
that host's config tree; ```sh blocks run line by line.  The few commands a
test bed runs otherwise than a host are mapped here, each by a pattern:

- `echo "<command>" | bconsole`: the bed's bconsole with its own conf;
  `<... job id>` placeholders are the last job queued;
- `bareos-fd -t`, `bareos-dir -t`: Bareos' parser on the host's config tree;
- `systemctl restart bareos-fd`: the host's file daemon restarted by its pid
  (the bed's daemons are not systemd services);
- `apt install <file>.deb`: the one package the file pattern names (from the
  working directory: a bed's Runner starts in the directory `make deb` built
  the bed's package in) unpacked with dpkg-deb -x into the root of each host
  the runbook installs on (`roots`) - this machine's /usr is never written.

Any other line runs in bash as written (after substitution: a doc's
/usr/share/dbpipe and /etc/bareos become the host's root and config tree),
and a line that fails fails the test: a runbook that stops working fails CI.
What a `cp` writes into a config tree is then loaded as the bed loads every
package resource: paths mapped (`shipped`), the file daemon's port and
working directory added (testbed.Bareos.as_loaded)."""

from __future__ import annotations

import glob
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from testkit import package
from ..helpers import BARE_PATH

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
HEADER = re.compile(r"^# /etc/bareos/(bareos-(?:fd|dir)\.d)/(\S+)$", re.MULTILINE)
BCONSOLE = re.compile(r'^echo "?(.*?)"? \| bconsole$')
APT_INSTALL = re.compile(r"^apt install (\S+\.deb)$")


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
    roots: list[Path] = field(default_factory=list)   # the hosts' roots `apt install` installs on
    shipped: object = None             # testbed.ShippedConfig: the paths of what `cp` puts in a config tree
    added: dict[str, str] = field(default_factory=dict)   # lines the bed adds to a client's resource file
    outputs: list[str] = field(default_factory=list)
    last_job: int | None = None

    def substituted(self, text: str) -> str:
        for old in sorted(self.substitutions, key=len, reverse=True):
            text = text.replace(old, self.substitutions[old])
        return text

    def write(self, text: str, added: dict[str, str] | None = None) -> None:
        """Headed resources to the host (bareos-fd.d) or the director (bareos-dir.d);
        added: lines the test bed adds to a resource file (its port, address, working directory)."""
        added = self.added if added is None else added
        for (daemon, rel), content in resources(text).items():
            content, rel = self.substituted(content), self.substituted(rel)
            if rel in added:
                content = _add(content, added[rel])
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
        elif APT_INSTALL.match(command):
            self._install(APT_INSTALL.match(command).group(1))
        elif command.startswith("cp "):
            before = self._trees()
            self._shell(command)
            after = self._trees()
            for path in (path for path in after if after[path] != before.get(path)):
                self._load(path)
        else:
            self._shell(command)

    def _install(self, named: str) -> None:
        assert self.roots, "apt install: this runbook's Runner installs on no host"
        debs = glob.glob(os.path.join(self.env.get("PWD", "/"), named))
        assert len(debs) == 1, f"apt install {named}: {len(debs)} packages match"
        for root in self.roots:
            package.unpack(Path(debs[0]), root)

    def _trees(self) -> dict[Path, bytes]:
        """Every resource file of the config trees a `cp` may write to."""
        trees = [self.bareos.conf("")] + ([self.client.conf()] if self.client else [])
        return {path: path.read_bytes() for tree in trees for path in tree.rglob("*.conf")}

    def _load(self, path: Path) -> None:
        """A package resource `cp` put in place, as the bed loads it."""
        on_client = self.client is not None and path.is_relative_to(self.client.conf())
        parts = path.relative_to(self.client.conf() if on_client else self.bareos.conf("")).parts
        daemon, rel = parts[0].removesuffix(".d"), "/".join(parts[1:])
        text = self.shipped.mapped(path.read_text()) if self.shipped else path.read_text()
        if on_client:
            text = _add(text, self.added[rel]) if rel in self.added else text
        else:
            text = self.bareos.as_loaded(daemon, rel, text)
        path.write_text(text)

    def _shell(self, command: str) -> None:
        result = subprocess.run(["bash", "-e", "-c", command], capture_output=True, text=True,
                                cwd=self.env.get("PWD", "/"), env={"PATH": BARE_PATH, **self.env}, timeout=300)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
        self.outputs.append(result.stdout)
        if command.startswith("cd "):
            self.env["PWD"] = command[3:].strip()


def _add(content: str, lines: str) -> str:
    """lines inserted at the top of a resource (after its opening brace)."""
    return re.sub(r"(\{\n)", r"\1" + lines.replace("\\", "\\\\"), content, count=1)


def section_blocks(doc: Path, heading: str) -> list[tuple[str, str]]:
    """(language, text) of the fenced blocks of one `## heading` section: a
    runbook that is one part of a longer document."""
    text = doc.read_text().split(f"\n## {heading}\n", 1)[1]
    return FENCE.findall(text.split("\n## ", 1)[0])
