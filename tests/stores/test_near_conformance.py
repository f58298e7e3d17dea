"""The store contract (``test_conformance.py``), run unchanged against Redis and Redis
Cluster stores with the near cache on: a cache that changed any answer of the
contract would fail here. Tracking is on before each test starts, so loads are
answered from memory wherever the contract allows it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from serversession.stores.redis import RedisStore

from .test_conformance import *  # noqa: F403  (every contract test, collected here again)


@pytest.fixture(params=["redis", "cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh Redis or Cluster store with its near cache on and tracking established."""
    server = request.getfixturevalue("fresh_redis" if request.param == "redis" else "fresh_cluster")
    built = RedisStore(server.url, near_cache=True)
    built.load("probe")  # the first lookup starts the listener
    cache = built.near_cache
    assert cache is not None
    deadline = time.monotonic() + 10
    while not cache.active:
        assert time.monotonic() < deadline, "tracking never came on"
        time.sleep(0.005)
    try:
        yield built
    finally:
        built.close()
