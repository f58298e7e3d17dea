"""Fixtures for the demo tests: the demo shop as a real server process per store.

``demo`` is parametrized over every store the contract names (memory, a SQLite
file, Redis, Redis Cluster; the Redis servers are the run's shared ones from
``tests/conftest.py``), one server per store for the whole module. Tests on a
shared server must not assume they are alone on it: other tests' sessions of
alice may exist, so they identify sessions by their own handles.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from demo_client import DemoServer

STORES = ["memory", "sqlite", "redis", "redis-cluster"]


def store_url(kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store URL of ``kind``; Redis kinds use the run's shared servers."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('demo-sqlite') / 'sessions.sqlite3'}"
    if kind == "redis":
        return str(request.getfixturevalue("redis_server").url)
    if kind == "redis-cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    raise ValueError(kind)


@pytest.fixture(scope="module", params=STORES)
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """The demo served over each store in turn."""
    with DemoServer(store_url(request.param, request, tmp_path_factory)) as server:
        yield server


@pytest.fixture(scope="module")
def sqlite_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """One demo over a SQLite file whose rows a test can count (``.db_path``)."""
    path = tmp_path_factory.mktemp("demo-sqlite-rows") / "sessions.sqlite3"
    with DemoServer(f"sqlite:///{path}") as server:
        yield server
