"""The fuzz tests import their harness (``fuzzkit``) and the demo helpers by module name."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _helper_dir in (_TESTS / "demo", _TESTS / "security", _TESTS / "fuzz"):
    if str(_helper_dir) not in sys.path:
        sys.path.insert(0, str(_helper_dir))
