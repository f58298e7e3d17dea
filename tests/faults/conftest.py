"""The fault tests drive the demo (``tests/demo/demo_client.py``) with helpers from
``tests/security/sec_kit.py`` and ``fault_kit.py``; each starts the servers it breaks."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _helper_dir in (_TESTS / "demo", _TESTS / "security", _TESTS / "faults"):
    if str(_helper_dir) not in sys.path:
        sys.path.insert(0, str(_helper_dir))
