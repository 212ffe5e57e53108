"""Where the repository is, and the bare environment dbpipe runs in under Bareos."""

from __future__ import annotations

from pathlib import Path

from .servers import BARE_PATH

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"


def bareos_env(**extra: str) -> dict:
    """The bare environment a Bareos file daemon gives its children."""
    env = {"PATH": BARE_PATH, "LANG": "C.UTF-8"}
    env.update({key: value for key, value in extra.items() if value is not None})
    return env
