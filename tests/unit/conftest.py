"""Unit tests import the library straight from lib/ (and its vendored
dependencies), exactly as bin/* does."""

import sys

from ..helpers import ROOT

for path in (ROOT / "lib" / "vendor", ROOT / "lib"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
