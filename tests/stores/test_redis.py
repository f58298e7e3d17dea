"""Redis-specific behaviour: command counts, key layout, index upkeep, outages, cluster spread.

The contract itself is checked by ``test_conformance.py``; this file checks what
only Redis has. Command counts come from two server-side views: ``INFO
commandstats`` (which also counts the commands a Lua script runs inside the
server) and ``MONITOR`` (which tells the client's commands from the script's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import redis

from servers import RedisCluster, RedisServer, free_port
from serversession.core.codec import SessionMeta, encode_meta, encode_meta_fields
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit, Outcome, UserCap
from serversession.exceptions import ConfigurationError, StoreError, StoreUnavailableError
from serversession.stores import open_store
from serversession.stores._redis_scripts import ALL as SCRIPTS
from serversession.stores.redis import RedisStore


def new_key() -> str:
    return storage_key(new_session_id())


def fresh(user: str | None = None, ttl: float = 60.0, absolute: float | None = None) -> Commit:
    now = time.time()
    meta = encode_meta(SessionMeta(created_at=now, last_seen_at=now, user=user, csrf_secret="c"))
    return Commit(set_data={"cart": '["apple"]'}, meta=meta, expires_at=now + ttl, index_user=user,
                  absolute_at=now + (absolute if absolute is not None else 2 * ttl))  # fmt: skip


#: What a pooled connection sends once when it (re)connects: not a per-operation cost.
HANDSHAKE = ("hello", "client", "client|setinfo")


def measure(nodes: list[RedisServer], op: Callable[[], Any]) -> tuple[Counter[str], Counter[str]]:
    """Run ``op``; return (commands the client sent, all commands run) over ``nodes``."""
    with ExitStack() as stack:
        clients = [stack.enter_context(node.client()) for node in nodes]
        probes = [stack.enter_context(node.client()) for node in nodes]
        monitors = []
        for client, probe in zip(clients, probes, strict=True):
            probe.ping()  # connected before MONITOR starts, so its handshake stays unseen
            client.config_resetstat()
            monitors.append(stack.enter_context(client.monitor()))
        op()
        sent: Counter[str] = Counter()
        for probe, monitor in zip(probes, monitors, strict=True):
            probe.echo("__end__")
            while (cmd := monitor.next_command())["command"] != "ECHO __end__":
                name = cmd["command"].split()[0].lower()
                if cmd["client_type"] != "lua" and name not in HANDSHAKE:
                    sent[name] += 1
        ran: Counter[str] = Counter()
        for client in clients:
            for name, stat in client.info("commandstats").items():
                ran[name.removeprefix("cmdstat_")] += stat["calls"]
        for noise in ("echo", "config|resetstat", "monitor", "info", *HANDSHAKE):
            del ran[noise]
        return sent, ran


def warm(nodes: list[RedisServer]) -> None:
    """Cache every script on every node, as a running app would have."""
    for node in nodes:
        with node.client() as r:
            for text in SCRIPTS.values():
                r.script_load(text)


@pytest.fixture
def rstore(fresh_redis: RedisServer) -> Iterator[RedisStore]:
    store = RedisStore(fresh_redis.url)
    store.ping()  # connect outside the measurements
    yield store
    store.close()


@pytest.fixture
def cstore(fresh_cluster: RedisCluster) -> Iterator[RedisStore]:
    store = RedisStore(fresh_cluster.url)
    store.ping()
    yield store
    store.close()


def test_commands_per_operation_standalone(rstore: RedisStore, fresh_redis: RedisServer) -> None:
    nodes = [fresh_redis]
    warm(nodes)
    key = new_key()
    sent, ran = measure(nodes, lambda: rstore.create(key, fresh(user="alice")))
    assert sent == {"evalsha": 1}  # session + user index in one script
    assert ran["zadd"] == 1 and ran["pexpireat"] == 2
    sent, ran = measure(nodes, lambda: rstore.load(key))
    assert sent == {"hgetall": 1} and ran == {"hgetall": 1}
    sent, ran = measure(nodes, lambda: rstore.commit(key, Commit(set_data={"n": "1"}, expires_at=time.time() + 60)))
    assert sent == {"evalsha": 1} and ran["evalsha"] == 1 and not ran["eval"] and not ran["zadd"]
    sent, _ = measure(nodes, lambda: rstore.commit(key, fresh(user="alice")))
    assert sent == {"evalsha": 1}
    sent, _ = measure(nodes, lambda: rstore.rotate(key, new_key(), fresh(user="alice"), 5.0))
    assert sent == {"evalsha": 1}
    sent, _ = measure(nodes, lambda: rstore.list_user("alice"))
    assert sent == {"evalsha": 1, "hgetall": 2, "zrem": 1}  # one pipeline; the tombstone's entry goes
    sent, _ = measure(nodes, lambda: rstore.list_user("alice"))
    assert sent == {"evalsha": 1, "hgetall": 1}


def test_commands_per_operation_cluster(cstore: RedisStore, fresh_cluster: RedisCluster) -> None:
    masters = fresh_cluster.nodes[: fresh_cluster.MASTERS]
    warm(masters)
    key = new_key()
    sent, _ = measure(masters, lambda: cstore.create(key, fresh(user="alice")))
    assert sent == {"evalsha": 2}  # session, then the index in its own slot
    sent, ran = measure(masters, lambda: cstore.load(key))
    assert sent == {"hgetall": 1} and ran == {"hgetall": 1}
    sent, _ = measure(masters, lambda: cstore.commit(key, Commit(set_data={"n": "1"})))
    assert sent == {"evalsha": 1}
    sent, _ = measure(masters, lambda: cstore.rotate(key, new_key(), fresh(user="alice"), 5.0))
    assert sent == {"evalsha": 3}  # take + create + index (three slots)


def test_script_cache_loss_falls_back_to_eval(rstore: RedisStore, fresh_redis: RedisServer) -> None:
    key = new_key()
    assert rstore.create(key, fresh())
    with fresh_redis.client() as r:
        r.script_flush()
    assert rstore.commit(key, Commit(set_data={"n": "1"})).outcome is Outcome.OK
    assert rstore.load(key) is not None


def test_key_layout_holds_no_session_id(rstore: RedisStore, fresh_redis: RedisServer) -> None:
    session_id = new_session_id()
    key, new = storage_key(session_id), new_key()
    assert rstore.create(key, fresh(user="alice"))
    with fresh_redis.client() as r:
        assert sorted(r.keys("*")) == [f"ss:s:{key}".encode(), b"ss:u:alice"]
        fields = {k.decode(): v.decode() for k, v in r.hgetall(f"ss:s:{key}").items()}
        assert set(fields) == {"c", "s", "u", "a", "i", "p", "x", "d:cart"}
        assert fields["d:cart"] == '["apple"]' and fields["u"] == "alice"
        assert session_id not in repr(fields)
        assert rstore.rotate(key, new, Commit(expires_at=time.time() + 60), 5.0).outcome is Outcome.OK
        assert r.hgetall(f"ss:s:{key}") == {b"m": new.encode()}
        assert 0 < r.pttl(f"ss:s:{key}") <= 5000
        assert 0 < r.pttl(f"ss:s:{new}") <= 60000


def test_user_index_expires_and_prunes(rstore: RedisStore, fresh_redis: RedisServer) -> None:
    first, short = new_key(), new_key()
    assert rstore.create(first, fresh(user="alice", absolute=100))
    with fresh_redis.client() as r:
        assert 95_000 < r.pttl("ss:u:alice") <= 100_000
        assert rstore.create(short, fresh(user="alice", ttl=1, absolute=1))
        assert 95_000 < r.pttl("ss:u:alice") <= 100_000  # the latest deadline rules
        r.zadd("ss:u:alice", {"long-gone": time.time() - 10})
        assert rstore.create(new_key(), fresh(user="alice"))  # every index write prunes
        assert r.zscore("ss:u:alice", "long-gone") is None
        r.zadd("ss:u:alice", {"long-gone": time.time() - 10, "never-stored": time.time() + 50})
        assert {s.key for s in rstore.list_user("alice")} >= {first}
        assert r.zscore("ss:u:alice", "long-gone") is None
        assert r.zscore("ss:u:alice", "never-stored") is None  # a missing hash drops its entry


def test_prefix_separates_apps(fresh_redis: RedisServer) -> None:
    one, two = RedisStore(fresh_redis.url), RedisStore(fresh_redis.url, prefix="other:")
    try:
        key = new_key()
        assert one.create(key, fresh(user="alice"))
        assert two.load(key) is None and two.list_user("alice") == []
        assert [s.key for s in one.scan()] == [key] and list(two.scan()) == []
    finally:
        one.close()
        two.close()


def test_urls_and_open_store(fresh_redis: RedisServer) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore("http://localhost:6379")
    valkey = open_store(fresh_redis.url.replace("redis://", "valkey://"))
    try:
        assert isinstance(valkey, RedisStore) and not valkey.cluster
        valkey.ping()
    finally:
        valkey.close()


def test_driver_errors_are_store_errors(rstore: RedisStore, fresh_redis: RedisServer) -> None:
    bad, corrupt = new_key(), new_key()
    with fresh_redis.client() as r:
        r.set(f"ss:s:{bad}", "not a hash")
        r.hset(f"ss:s:{corrupt}", "d:a", "1")  # no metadata fields
    for call in (lambda: rstore.load(bad), lambda: rstore.commit(bad, Commit()), lambda: rstore.load(corrupt)):
        with pytest.raises(StoreError) as info:
            call()
        assert not isinstance(info.value, StoreUnavailableError)
        assert info.value.store == "redis" and info.value.__cause__ is not None


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
def test_server_down_at_start_up(scheme: str) -> None:
    store = RedisStore(f"{scheme}://127.0.0.1:{free_port()}")  # builds: the app may start first
    try:
        _assert_unavailable(lambda: store.load(new_key()), "load")
    finally:
        store.close()


@pytest.fixture
def doomed() -> Iterator[RedisServer]:
    """A private server that tests may kill (never the shared one)."""
    with RedisServer() as server:
        yield server


def _assert_unavailable(call: Callable[[], Any], operation: str) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        call()
    assert time.monotonic() - started < 3.0
    assert info.value.operation == operation
    assert isinstance(info.value.__cause__, (redis.RedisError, redis.exceptions.RedisClusterException))


def test_outage_and_recovery_sync(doomed: RedisServer) -> None:
    store = RedisStore(doomed.url)
    try:
        key = new_key()
        assert store.create(key, fresh())
        doomed.kill()
        _assert_unavailable(lambda: store.load(key), "load")
        _assert_unavailable(lambda: store.commit(key, Commit()), "commit")
        _assert_unavailable(store.ping, "ping")
        doomed.restart()
        assert store.load(key) is None  # no persistence: a clean slate, but it answers
        assert store.create(key, fresh())
        assert store.commit(key, Commit(set_data={"n": "1"})).outcome is Outcome.OK
    finally:
        store.close()


@pytest.mark.anyio
async def test_outage_and_recovery_async(doomed: RedisServer) -> None:
    store = RedisStore(doomed.url)
    try:
        key = new_key()
        assert await store.acreate(key, fresh())
        doomed.kill()
        for operation, call in (("load", store.aload(key)), ("commit", store.acommit(key, Commit())),
                                ("ping", store.aping())):  # fmt: skip
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError) as info:
                await call
            assert time.monotonic() - started < 3.0 and info.value.operation == operation
        doomed.restart()
        assert await store.aload(key) is None
        assert await store.acreate(key, fresh())
        assert (await store.acommit(key, Commit(set_data={"n": "1"}))).outcome is Outcome.OK
    finally:
        await store.aclose()


def test_cluster_spreads_sessions_over_masters(cstore: RedisStore, fresh_cluster: RedisCluster) -> None:
    keys = [new_key() for _ in range(60)]
    for i, key in enumerate(keys):
        assert cstore.create(key, fresh(user=f"user{i % 3}"))
    for node in fresh_cluster.nodes[: fresh_cluster.MASTERS]:
        with node.client() as r:
            assert r.dbsize() > 5
    assert all(cstore.load(key) is not None for key in keys)
    assert sorted(s.key for s in cstore.list_user("user0")) == sorted(keys[0::3])
    assert sorted(s.key for s in cstore.scan()) == sorted(keys)


@pytest.mark.anyio
async def test_cluster_async_face(fresh_cluster: RedisCluster) -> None:
    store = RedisStore(fresh_cluster.url)
    try:
        old, new = new_key(), new_key()
        assert await store.acreate(old, fresh(user="bob"))
        commit = Commit(meta=encode_meta_fields(user="bob"), expires_at=time.time() + 60, index_user="bob")
        assert (await store.arotate(old, new, commit, 5.0)).outcome is Outcome.OK
        assert [s.key for s in await store.alist_user("bob")] == [new]
        assert (await store.acommit(old, Commit())).moved_to == new
    finally:
        await store.aclose()


# -- deletes that wait for replicas (wait_replicas) ------------------------------------


@pytest.fixture(scope="module")
def replicated() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A master and one replica of it, replication link up."""
    master = RedisServer().start()
    replica = RedisServer("--replicaof", "127.0.0.1", str(master.port)).start()
    try:
        deadline = time.monotonic() + 20
        with replica.client() as r:
            while r.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica never linked to its master")
                time.sleep(0.05)
        yield master, replica
    finally:
        replica.stop()
        master.stop()


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_delete_waits_until_the_replica_has_it(replicated: tuple[RedisServer, RedisServer], face: str) -> None:
    """Once a logout is acknowledged the replica no longer has the session, so a
    failover to it cannot bring the session back."""
    master, replica = replicated
    store = RedisStore(master.url + "?wait_replicas=1&wait_timeout=5")
    key = new_key()
    try:
        assert store.create(key, fresh())
        if face == "sync":
            assert store.delete(key)
        else:

            async def both() -> bool:
                try:
                    return await store.adelete(key)
                finally:
                    await store.aclose()

            assert asyncio.run(both())
        with replica.client() as r:
            assert r.exists(store._skey(key)) == 0
    finally:
        store.close()


def test_a_delete_no_replica_acknowledged_is_logged_not_failed(
    replicated: tuple[RedisServer, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """A frozen replica: the delete still stands on the master (it cannot be taken
    back), after wait_timeout, and the log says a failover could undo it."""
    master, replica = replicated
    store = RedisStore(master.url, wait_replicas=1, wait_timeout=0.2)
    key = new_key()
    assert replica.proc is not None
    try:
        assert store.create(key, fresh())
        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            with caplog.at_level("WARNING", logger="serversession"):
                assert store.delete(key)
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        assert store.load(key) is None
        assert any("reached 0 of 1 replicas" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


def test_a_script_cache_flush_does_not_break_a_waiting_delete(replicated: tuple[RedisServer, RedisServer]) -> None:
    master, _ = replicated
    store = RedisStore(master.url, wait_replicas=1, wait_timeout=5)
    key = new_key()
    try:
        assert store.create(key, fresh())
        with master.client() as r:
            r.script_flush()
        assert store.delete(key) and store.load(key) is None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("redis://127.0.0.1:1/0?wait_replicas=x", {}),
        ("redis://127.0.0.1:1/0", {"wait_replicas": -1}),
        ("redis://127.0.0.1:1/0?wait_timeout=0", {}),
        ("redis+cluster://127.0.0.1:1?wait_replicas=1", {}),
    ],
)
def test_bad_wait_settings_are_configuration_errors(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore(url, **options)


def test_wait_settings_are_not_passed_to_redis_py(redis_server: RedisServer) -> None:
    store = open_store(redis_server.url + "?wait_replicas=0&wait_timeout=0.5&socket_keepalive=true")
    try:
        assert isinstance(store, RedisStore) and store.wait_timeout == 0.5
        store.ping()
    finally:
        store.close()


# -- the per-user cap: what a sign-in costs ------------------------------------------------


def capped(user: str, limit: int, evict: bool = True) -> Commit:
    return dataclasses.replace(fresh(user=user), user_cap=UserCap(limit, evict, "signed out elsewhere"))


def test_commands_per_capped_sign_in_standalone(rstore: RedisStore, fresh_redis: RedisServer) -> None:
    nodes = [fresh_redis]
    warm(nodes)
    for _ in range(3):
        assert rstore.create(new_key(), fresh(user="alice"))
    # At the cap: still the create's one script; inside it one HMGET per session of the user,
    # the eviction (PTTL, DEL, HSET, PEXPIRE) and the index's upkeep.
    sent, ran = measure(nodes, lambda: rstore.create(new_key(), capped("alice", 3)))
    assert sent == {"evalsha": 1}
    assert ran["hmget"] == 3 and ran["del"] == 1 and ran["zrem"] == 1
    anonymous = new_key()
    assert rstore.create(anonymous, fresh())
    result: list[Any] = []
    sent, ran = measure(nodes, lambda: result.append(rstore.rotate(anonymous, new_key(), capped("alice", 3), 5.0)))
    assert sent == {"evalsha": 1} and ran["hmget"] == 3 and len(result[0].evicted) == 1
    sent, ran = measure(nodes, lambda: rstore.create(new_key(), capped("alice", 3, evict=False)))
    assert sent == {"evalsha": 1} and ran["hmget"] == 3 and not ran["hset"]  # refused: nothing written
    marker = result[0].evicted[0]
    sent, ran = measure(nodes, lambda: result.append(rstore.load(marker)))
    assert sent == {"hgetall": 1} and ran == {"hgetall": 1} and result[-1].ended == "signed out elsewhere"


def test_commands_per_capped_sign_in_cluster(cstore: RedisStore, fresh_cluster: RedisCluster) -> None:
    masters = fresh_cluster.nodes[: fresh_cluster.MASTERS]
    warm(masters)
    for _ in range(3):
        assert cstore.create(new_key(), fresh(user="alice"))
    # create, claim (index + members), finish (the eviction); one HMGET per session; one ZREM.
    sent, _ = measure(masters, lambda: cstore.create(new_key(), capped("alice", 3)))
    assert sent == {"evalsha": 3, "hmget": 3, "zrem": 1}
    anonymous = new_key()
    assert cstore.create(anonymous, fresh())
    sent, _ = measure(masters, lambda: cstore.rotate(anonymous, new_key(), capped("alice", 3), 5.0))
    assert sent == {"evalsha": 4, "hmget": 3, "zrem": 1}  # take + create + claim + finish
    # Below the cap: the claim and the reads only.
    sent, _ = measure(masters, lambda: cstore.create(new_key(), capped("alice", 10)))
    assert sent == {"evalsha": 2, "hmget": 3}
    # Refused: found after the write, which is undone (a delete; a rotation's old session put back).
    sent, _ = measure(masters, lambda: cstore.create(new_key(), capped("alice", 4, evict=False)))
    assert sent == {"evalsha": 3, "hmget": 4, "zrem": 1}  # create + claim + delete
    anonymous = new_key()
    assert cstore.create(anonymous, fresh())
    sent, _ = measure(masters, lambda: cstore.rotate(anonymous, new_key(), capped("alice", 4, evict=False), 5.0))
    assert sent == {"evalsha": 5, "hmget": 4, "zrem": 1}  # take + create + claim + delete + restore
    assert cstore.load(anonymous) is not None
