"""Every Bareos resource name, resource file and pseudo file the docs mention
exists in bareos-config/: an example that names a Job or FileSet nothing
ships sends an admin hunting for it."""

from __future__ import annotations

import re

import pytest

from ..helpers import ROOT

CONFIG = ROOT / "bareos-config"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STOCK = {"bareos-fd", "File", "Full", "Differential", "Incremental", "Standard", "WeeklyCycle",
         "RestoreFiles", "MyCatalog"}


def shipped_names() -> set[str]:
    return {name for path in CONFIG.rglob("*.conf")
            for name in re.findall(r'^\s*Name = "?([^"\n]+?)"?\s*$', path.read_text(), re.MULTILINE)}


def shipped_text() -> str:
    return "\n".join(path.read_text() for path in CONFIG.rglob("*.conf"))


def mentioned(text: str) -> tuple[set[str], set[str], set[str]]:
    """(resource names, resource files, pseudo files) a doc refers to."""
    names = set(re.findall(r"\b(?:job|restorejob|fileset|FileSet|JobDefs)\s*=\s*\"?([A-Za-z][\w.-]*)", text))
    names |= set(re.findall(r"`((?:backup|restore|drill)-[a-z][\w-]*)`", text))
    files = set(re.findall(r"\b((?:job|fileset|jobdefs|schedule|client)/[\w.-]+\.conf)\b", text))
    pseudo = set(re.findall(r"(/(?:NEXTCLOUD|DBPIPE|MARIADB)/[\w.-]+)", text))
    # a dump restored elsewhere lands at <where>/<pseudo file>
    pseudo |= {"/" + rel for rel in re.findall(r"/tmp/bareos-restores/([\w.-]+/[\w.-]+\.sql)\b", text)}
    return names, files, pseudo


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_the_docs_name_only_what_ships(doc):
    names, files, pseudo = mentioned(doc.read_text())
    known = shipped_names() | STOCK
    config_files = {str(p.relative_to(p.parent.parent)) for p in CONFIG.rglob("*.conf")}
    text = shipped_text()
    assert sorted(names - known) == [], "resource names nothing ships"
    assert sorted(files - config_files) == [], "resource files nothing ships"
    assert sorted(p for p in pseudo if p not in text) == [], "pseudo files nothing ships"


def test_every_command_of_the_readme_quick_start_runs_as_a_runbook_line():
    """README's quick start gives its commands inline, in numbered steps; each
    is a line (or, for bconsole input, part of a line) of docs/first-backup.md's
    command blocks, which tests/bareos/test_runbooks.py runs as written, or the
    `make deb` of README's install block (tests/integration/test_package.py)."""
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    runbook = "\n".join(body for language, body in re.findall(r"^```(\w*)\n(.*?)^```", (
        ROOT / "docs" / "first-backup.md").read_text(), re.MULTILINE | re.DOTALL) if language == "sh")
    spans = [span for span in re.findall(r"`([^`\n]+)`", quick)
             if not span.startswith(("verdict:", "Plugin"))]        # the program's answer; a resource keyword
    assert len(spans) >= 10, spans
    missing = [span for span in spans if span.replace("jobid=N", "jobid=<backup job id>") not in runbook
               and not (span == "make deb" and "\nmake deb " in "\n" + readme)]
    assert missing == [], "quick start commands no runbook line runs"
