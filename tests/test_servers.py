"""Smoke tests for tests/servers.py: each real server starts, answers and stops.

If these fail, every integration test would fail confusingly; failing here
first points straight at the environment instead of the library.
"""

from __future__ import annotations

import psycopg
import redis
import redis.cluster

from servers import PostgresServer, RedisCluster, RedisServer, free_port


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536


def test_redis_set_get_and_restart() -> None:
    with RedisServer() as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with redis.Redis.from_url(server.url) as r:
            assert r.ping()
            r.set("k", "v")
            assert r.get("k") == b"v"
        port = server.port
        server.kill()
        with redis.Redis.from_url(server.url, socket_connect_timeout=1) as r:
            try:
                r.ping()
            except redis.ConnectionError:
                pass
            else:
                raise AssertionError("killed server still answers")
        server.restart()
        assert server.port == port
        with redis.Redis.from_url(server.url) as r:
            assert r.ping()
            assert r.get("k") is None  # no persistence: a restart is a clean slate
    assert server.proc is None
    assert not server.dir.exists()


def test_redis_cluster_write_across_slots() -> None:
    with RedisCluster() as cluster:
        assert len(cluster.nodes) == 3
        assert cluster.url == f"redis+cluster://127.0.0.1:{cluster.ports[0]}"
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        try:
            keys = [f"key-{i}" for i in range(30)]
            for k in keys:
                client.set(k, k)
            assert [client.get(k) for k in keys] == [k.encode() for k in keys]
            for node in cluster.nodes:  # the keys really were spread over every master
                with node.client() as r:
                    assert r.dbsize() > 0
        finally:
            client.close()
    assert all(node.proc is None for node in cluster.nodes)


def test_postgres_select_one() -> None:
    with PostgresServer() as server:
        assert server.url == f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        with psycopg.connect(server.url, connect_timeout=5) as conn:
            row = conn.execute("select 1").fetchone()
            assert row == (1,)
    assert not server.dir.exists()
