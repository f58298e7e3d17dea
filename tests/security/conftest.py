"""Fixtures for the security tests: the demo shop as a real process, over real stores.

The demo is started by ``tests/demo/demo_client.py`` (through
:class:`sec_kit.TunedDemo`); Redis servers are the run's shared ones from
``tests/conftest.py`` unless a test needs a server of its own (a clean MONITOR).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for _helper_dir in (_TESTS / "demo", _TESTS / "security"):
    if str(_helper_dir) not in sys.path:
        sys.path.insert(0, str(_helper_dir))

from sec_kit import TunedDemo  # noqa: E402

from servers import RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_demo(redis_server: RedisServer) -> Iterator[TunedDemo]:
    """One demo process on the run's shared Redis server, for every security test."""
    with TunedDemo(redis_server.url) as demo:
        yield demo


@pytest.fixture(scope="session")
def sqlite_demo_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TunedDemo]:
    """One demo process on a SQLite file of its own (``.db_path``)."""
    path = tmp_path_factory.mktemp("security-sqlite") / "sessions.sqlite3"
    with TunedDemo(f"sqlite:///{path}") as demo:
        yield demo
