"""Shared fixtures: ONE real Redis server and ONE 3-master Redis Cluster per test run.

Starting servers is slow, so they are session-scoped and shared by every test;
tests that need a clean slate ask for ``fresh_redis`` / ``fresh_cluster`` (or
flush themselves). A test that kills or restarts a server must start its own
``RedisServer`` instead of touching these.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers import PostgresServer, RedisCluster, RedisServer


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio only."""
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The run's standalone Redis server (``.url``, ``.client()``); never killed by tests."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """The run's 3-master Redis Cluster without replicas (``.url``, ``.nodes``)."""
    with RedisCluster(replicas=0) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server on loopback; tests isolate themselves by table name."""
    with PostgresServer() as server:
        yield server


def flush_redis(server: RedisServer) -> None:
    """Delete every key of one server."""
    with server.client() as r:
        r.flushall()


def flush_cluster(cluster: RedisCluster) -> None:
    """Delete every key on every master of a cluster."""
    for node in cluster.nodes[: cluster.MASTERS]:
        flush_redis(node)


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    """The shared standalone server, flushed before the test."""
    flush_redis(redis_server)
    return redis_server


@pytest.fixture
def fresh_cluster(redis_cluster: RedisCluster) -> RedisCluster:
    """The shared cluster, every master flushed before the test."""
    flush_cluster(redis_cluster)
    return redis_cluster
