"""Bareos resources from bareos-config/ -> Bacula 9.6 resources, mechanically.

The one place where the e2e tests turn what users paste into Bareos into
something the private Bacula runs:
- bpipe keyword syntax -> Bacula's positional bpipe:<file>:<reader>:<writer>;
- every reader, writer and RunScript command is handed, unmodified except for
  the path prefixes, to tests/e2e/bareos-exec, which splits it the way Bareos
  does (no shell) and execs it.  Bacula runs commands through /bin/sh -c, so
  the command travels single-quoted; Bacula still expands %w/%r in it;
- path prefixes are mapped (/usr/local/bin/ -> the repo's bin/,
  /var/www/nextcloud -> a sample installation, ...);
- the Nextcloud hooks get --state-dir (a temp dir instead of /var/lib/dbpipe)
  and --settle 0 appended: the only options the tests add.
Client, Storage, Pool and Messages are the private daemons'.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..helpers import ROOT
from .bacula import CLIENT, MESSAGES, POOL, STORAGE

CONFIG_DIR = ROOT / "bareos-config"
SHIM = Path(__file__).resolve().parent / "bareos-exec"
CHECKER = ROOT / "tools" / "check-bareos-config"


def checker_module():
    """tools/check-bareos-config as a module: its parser is the one the tests use."""
    loader = importlib.machinery.SourceFileLoader("check_bareos_config", str(CHECKER))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module   # dataclasses look their module up there
    loader.exec_module(module)
    return module


CHECK = checker_module()


def bareos_config():
    return CHECK.load(CONFIG_DIR)


@dataclass
class Translation:
    """How one test environment maps Bareos paths; suffix keeps names unique."""

    paths: dict[str, str]
    suffix: str = ""
    hook_options: list[str] = field(default_factory=list)
    config: object = field(default_factory=bareos_config)

    # --- strings ------------------------------------------------------------------
    def mapped(self, text: str) -> str:
        for old in sorted(self.paths, key=len, reverse=True):
            text = text.replace(old, self.paths[old])
        return text

    def command(self, bareos_command: str) -> str:
        """What Bacula's sh -c must run so that bareos-exec gets the Bareos string."""
        command = self.mapped(bareos_command)
        program = command.split(" ", 1)[0].rsplit("/", 1)[-1]
        if program.startswith("nextcloud-") and self.hook_options:
            command += " " + " ".join(self.hook_options)
        if "'" in command or ":" in command:
            raise ValueError(f"cannot pass {command!r} through Bacula unchanged")
        return f"{SHIM} '{command}'"

    def plugin(self, bareos_plugin: str) -> str:
        fields = CHECK.split_plugin(bareos_plugin)
        if isinstance(fields, str):
            raise ValueError(fields)
        return f"bpipe:{fields['file']}:{self.command(fields['reader'])}:{self.command(fields['writer'])}"

    # --- resources -------------------------------------------------------------------
    def name(self, bareos_name: str) -> str:
        return bareos_name + self.suffix

    def fileset(self, name: str) -> str:
        fileset = self.config.find("FileSet", name)
        lines = ["FileSet {", f'  Name = "{self.name(name)}"']
        for include in fileset.sub("Include"):
            lines.append("  Include {")
            for options in include.sub("Options"):
                lines += ["    Options {", *(f"      {d.name} = {_value(self.mapped(d.value))}"
                                             for d in options.directives), "    }"]
            lines += [f'    File = "{self.mapped(d.value)}"' for d in include.all("File")]
            lines += [f'    Plugin = "{self.plugin(d.value)}"' for d in include.all("Plugin")]
            lines.append("  }")
        for exclude in fileset.sub("Exclude"):
            files = [f'    File = "{self.mapped(d.value)}"' for d in exclude.all("File")]
            lines += ["  Exclude {", *files, "  }"]
        return "\n".join(lines + ["}", ""])

    def job(self, name: str) -> str:
        job = CHECK.merged(self.config, self.config.find("Job", name))
        kind = job.get("Type")
        lines = ["Job {", f'  Name = "{self.name(name)}"', f"  Type = {kind}",
                 f"  Client = {CLIENT}", f"  Storage = {STORAGE}", f"  Pool = {POOL}",
                 f"  Messages = {MESSAGES}", f'  FileSet = "{self.name(job.get("FileSet"))}"']
        lines += ["  Level = Full"] if kind.lower() == "backup" else []
        for directive in ("Where", "Replace"):
            if job.get(directive):
                lines.append(f'  {directive} = "{self.mapped(job.get(directive))}"')
        for short in (d for d in job.directives if d.key in CHECK.SHORT_RUNSCRIPTS):
            lines.append(f'  {short.name} = "{self.command(short.value)}"')
        for script in job.sub("RunScript"):
            lines.append("  RunScript {")
            for d in script.directives:
                if d.key == "command":
                    lines.append(f'    Command = "{self.command(d.value)}"')
                else:
                    lines.append(f"    {d.name} = {d.value}")
            lines.append("  }")
        return "\n".join(lines + ["}", ""])

    def job_with_fileset(self, name: str) -> list[str]:
        """The job and the FileSet it uses, ready for Bacula.add_resource()."""
        job = CHECK.merged(self.config, self.config.find("Job", name))
        return [self.fileset(job.get("FileSet")), self.job(name)]


def _value(text: str) -> str:
    return text if text.isalnum() else f'"{text}"'


def stock_restore_job(name: str, fileset: str, where: str) -> str:
    """Bareos' stock RestoreFiles job (no scripts), for restores elsewhere than /."""
    return (f'Job {{\n  Name = "{name}"\n  Type = Restore\n  Client = {CLIENT}\n  Storage = {STORAGE}\n'
            f'  Pool = {POOL}\n  Messages = {MESSAGES}\n  FileSet = "{fileset}"\n  Where = "{where}"\n}}\n')
