"""The near cache against real servers, with a second app process making the changes.

The other process (:mod:`.near_worker`) signs out, revokes, rotates, changes a
cart or lets a session expire through its own RedisStore; this process reads
through the near cache exactly as the store will (:func:`cached_load`). No test
times anything: each waits, bounded, for the invalidation to be counted, and then
checks that the very next read shows the change. Delays are measured in
``benchmarks/near_cache.py``.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import redis.cluster

from servers import RedisCluster, RedisServer
from serversession.core.ids import new_session_id, storage_key
from serversession.stores._near_cache import NearCache, NearCacheConfig
from serversession.stores._redis_url import parse_url

from . import near_worker

PREFIX = "ss:s:"
BOUND = 10.0  # seconds any wait may take before the test fails: generous, never a measurement


def wait_until(ready: Callable[[], Any], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def new_key() -> str:
    return storage_key(new_session_id())


class OtherProcess:
    """The second app process; ``other("delete KEY")`` returns once its store acknowledged."""

    def __init__(self, url: str) -> None:
        argv = [sys.executable, near_worker.__file__, url]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], BOUND + 10)
        assert ready, "the other process did not answer"
        return self.proc.stdout.readline().strip()

    def __call__(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._line()
        assert answer.startswith("ok "), answer
        return answer[3:]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class App:
    """This process: a near cache and a plain client, reading the way the store will."""

    def __init__(self, url: str, config: NearCacheConfig | None = None) -> None:
        driver_url, cluster, _ = parse_url(url)
        self.cache = NearCache(driver_url, PREFIX, cluster=cluster, config=config)
        factory = redis.cluster.RedisCluster if cluster else redis.Redis
        self.client: Any = factory.from_url(driver_url, decode_responses=True, socket_timeout=2)
        self.driver_url, self.cluster = driver_url, cluster

    def load(self, key: str) -> dict[str, str]:
        return cached_load(self.cache, self.client, PREFIX + key)

    def wait_active(self, established: int = 1) -> None:
        self.cache.get(PREFIX + "probe")  # the first lookup starts the listener
        wait_until(lambda: self.cache.active and self.cache.listener.established >= established, "tracking on")

    def wait_invalidations(self, before: int, count: int = 1) -> None:
        wait_until(lambda: self.cache.stats().invalidations >= before + count, "the invalidation")

    def close(self) -> None:
        self.cache.close()
        self.client.close()


def cached_load(cache: NearCache, client: Any, skey: str) -> dict[str, str]:
    """A load as ``RedisStore.load`` will make it with a near cache (see ``_near_cache``)."""
    fields = cache.get(skey)
    if fields is not None:
        return dict(fields)
    ticket = cache.begin(skey)
    try:
        fields = client.hgetall(skey)
        cache.fill(ticket, fields)
        return dict(fields)
    finally:
        cache.release(ticket)


@pytest.fixture(params=["redis", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue("fresh_redis" if request.param == "redis" else "fresh_cluster")
    return str(server.url)


@pytest.fixture
def app(url: str) -> Iterator[App]:
    built = App(url)
    built.wait_active()
    yield built
    built.close()


@pytest.fixture(scope="module")
def other_processes() -> Iterator[dict[str, OtherProcess]]:
    started: dict[str, OtherProcess] = {}
    yield started
    for proc in started.values():
        proc.close()


@pytest.fixture
def other(url: str, other_processes: dict[str, OtherProcess]) -> OtherProcess:
    if url not in other_processes:
        other_processes[url] = OtherProcess(url)
    return other_processes[url]


def test_a_repeated_read_is_a_hit(app: App, other: OtherProcess) -> None:
    key = new_key()
    other(f"create {key} alice 60")
    first = app.load(key)
    assert app.load(key) == first and first["d:cart"] == '["apple"]'
    stats = app.cache.stats()
    assert (stats.hits, stats.fills, stats.entries) == (1, 1, 1)


@pytest.mark.parametrize("change", ["sign-out", "revocation", "rotation", "cart", "expiry"])
def test_a_change_in_the_other_process_is_seen_by_the_next_read(app: App, other: OtherProcess, change: str) -> None:
    key, new = new_key(), new_key()
    other(f"create {key} alice {0.5 if change == 'expiry' else 60}")
    app.load(key)
    assert app.load(key)["u"] == "alice"  # cached
    before = app.cache.stats().invalidations
    if change in ("sign-out", "revocation"):
        assert other(f"delete {key}") == "True"
    elif change == "rotation":
        assert other(f"rotate {key} {new}") == "OK"
    elif change == "cart":
        assert other(f'cart {key} ["apple","pear"]') == "OK"
    app.wait_invalidations(before)  # expiry: when Redis deletes the key (its active expiry, ~0.1 s)
    after = app.load(key)
    if change in ("sign-out", "revocation", "expiry"):
        assert after == {}
    elif change == "rotation":
        assert after == {"m": new}  # the tombstone: it never loads
        assert app.load(new)["u"] == "alice"
    else:
        assert after["d:cart"] == '["apple","pear"]'


def test_an_invalidation_during_a_read_in_flight_drops_its_reply(app: App, other: OtherProcess) -> None:
    key = new_key()
    other(f"create {key} alice 60")
    skey = PREFIX + key
    ticket = app.cache.begin(skey)
    old = app.client.hgetall(skey)  # answered before the other process's write...
    before = app.cache.stats().invalidations
    other(f'cart {key} ["pear"]')
    app.wait_invalidations(before)  # ...whose invalidation arrives before this reply is cached
    assert app.cache.fill(ticket, old) is False
    assert app.cache.get(skey) is None
    assert app.load(key)["d:cart"] == '["pear"]'
    assert app.cache.stats().dropped_fills == 1


def test_own_writes_evict_at_once(app: App, other: OtherProcess) -> None:
    key = new_key()
    other(f"create {key} alice 60")
    app.load(key)
    app.client.hset(PREFIX + key, "d:cart", '["fig"]')  # this process's write...
    app.cache.evict(PREFIX + key)  # ...evicts its copy before its invalidation arrives
    assert app.load(key)["d:cart"] == '["fig"]'


def test_flushall_empties_the_cache(app: App, other: OtherProcess) -> None:
    key = new_key()
    other(f"create {key} alice 60")
    app.load(key)
    flushes = app.cache.stats().flushes
    for node in [app.client] if not app.cluster else app.client.get_primaries():
        (app.client.flushall(target_nodes=node) if app.cluster else node.flushall())
    wait_until(lambda: app.cache.stats().flushes > flushes, "the flush")
    assert app.load(key) == {}


def test_a_killed_invalidation_connection_turns_the_cache_off_until_tracking_is_back(
    app: App, other: OtherProcess
) -> None:
    key = new_key()
    other(f"create {key} alice 60")
    app.load(key)
    established = app.cache.listener.established
    nodes = app.client.get_nodes() if app.cluster else [None]
    for node in nodes:  # CLIENT KILL TYPE pubsub: the listener's connections only
        if node is None:
            app.client.client_kill_filter(_type="pubsub")
        else:
            app.client.execute_command("CLIENT KILL", "TYPE", "pubsub", target_nodes=node)
    other(f"delete {key}")  # its invalidation may be lost with the connection: the flush covers it
    app.wait_active(established + 1)
    assert app.load(key) == {}
    assert app.cache.stats().flushes >= 2


@pytest.mark.anyio
async def test_the_async_face_reads_the_same_cache(app: App, other: OtherProcess) -> None:
    key = new_key()
    other(f"create {key} alice 60")
    factory = redis.asyncio.RedisCluster if app.cluster else redis.asyncio.Redis
    client: Any = factory.from_url(app.driver_url, decode_responses=True)
    try:
        skey = PREFIX + key
        for _ in range(2):
            if app.cache.get(skey) is None:
                ticket = app.cache.begin(skey)
                try:
                    app.cache.fill(ticket, await client.hgetall(skey))
                finally:
                    app.cache.release(ticket)
        assert app.cache.stats().hits == 1  # the second read, inside the event loop
        before = app.cache.stats().invalidations
        other(f"delete {key}")
        app.wait_invalidations(before)
        assert app.cache.get(skey) is None
    finally:
        await client.aclose()


def test_a_killed_and_restarted_redis_never_serves_from_memory() -> None:
    with RedisServer("--appendonly", "yes", "--appendfsync", "always") as server:
        app, other = App(server.url), OtherProcess(server.url)
        try:
            app.wait_active()
            key = new_key()
            other(f"create {key} alice 60")
            app.load(key)
            server.kill()
            wait_until(lambda: not app.cache.active, "the loss")
            with pytest.raises(redis.ConnectionError):
                app.load(key)  # the server is down: the cache does not answer for it
            server.restart()
            app.wait_active(2)
            assert app.load(key)["u"] == "alice"  # persisted, and read from the server again
            assert other(f"delete {key}") == "True"
            wait_until(lambda: app.cache.get(PREFIX + key) is None, "the invalidation")
            assert app.load(key) == {}
        finally:
            other.close()
            app.close()


def _master_of(client: Any, skey: str) -> Any:
    return client.nodes_manager.get_node_from_slot(client.keyslot(skey))


def test_a_cluster_failover_never_serves_a_session_that_ended() -> None:
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(RedisCluster(replicas=1))
        app = App(cluster.url, NearCacheConfig(topology_interval=0.2))
        stack.callback(app.close)
        other = OtherProcess(cluster.url)
        stack.callback(other.close)
        app.wait_active()
        key = new_key()
        skey = PREFIX + key
        other(f"create {key} alice 60")
        app.load(key)
        master = _master_of(app.client, skey)
        replica = next(n for n in cluster.nodes[cluster.MASTERS :] if _replica_of(n, master.port))
        with replica.client() as r:
            r.execute_command("CLUSTER", "FAILOVER")  # a manual failover: the old master stays up
            wait_until(lambda: r.info("replication")["role"] == "master", "the failover")
        assert other(f"delete {key}") == "True"  # on the new master
        wait_until(lambda: app.cache.get(skey) is None, "the invalidation or the topology flush")
        app.client.nodes_manager.initialize()
        assert app.load(key) == {}


def _replica_of(node: RedisServer, master_port: int) -> bool:
    with node.client() as r:
        return int(r.info("replication").get("master_port", -1)) == master_port
