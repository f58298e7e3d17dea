"""The ``store`` fixture: one fresh store of every kind, for the conformance suite.

To add a store, add a builder to ``BUILDERS``: the suite then runs against it
unchanged. Builders ask for server fixtures lazily, so ``-k memory`` starts no
server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from serversession.stores.memory import MemoryStore
from serversession.stores.postgres import PostgresStore
from serversession.stores.redis import RedisStore
from serversession.stores.sqlite import SQLiteStore

Builder = Callable[[pytest.FixtureRequest, Path], Any]


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> RedisStore:
    return RedisStore(request.getfixturevalue("fresh_redis").url)


def _cluster(request: pytest.FixtureRequest, tmp_path: Path) -> RedisStore:
    return RedisStore(request.getfixturevalue("fresh_cluster").url)


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> PostgresStore:
    return PostgresStore(request.getfixturevalue("postgres_server").url, table=f"t_{uuid.uuid4().hex}")


BUILDERS: dict[str, Builder] = {
    "memory": lambda request, tmp_path: MemoryStore(),
    "sqlite": lambda request, tmp_path: SQLiteStore(tmp_path / "s.db"),
    "redis": _redis,
    "cluster": _cluster,
    "postgres": _postgres,
}


@pytest.fixture(params=list(BUILDERS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh, empty store of each kind (sync face); closed after the test."""
    built = BUILDERS[request.param](request, tmp_path)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
async def astore(store: Any, anyio_backend: str) -> AsyncIterator[Any]:
    """The same store for async tests; its async face is closed inside the event loop."""
    try:
        yield store
    finally:
        await store.aclose()
