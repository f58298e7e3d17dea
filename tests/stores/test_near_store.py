"""``RedisStore(..., near_cache=...)`` against real servers, with a second app process.

This process holds one store with a near cache; the other process
(:mod:`.near_store_worker`) holds its own store, with its own connections and
near cache, and makes the changes: sign-out, revocation, rotation, a cart
write, expiry. Each test checks, with a bounded poll and never a timed
assertion, that this process's next loads stop showing what ended once the
invalidation arrived. Loss of tracking (``CLIENT KILL``, a restart, a cluster
failover) must never let a session that ended be served from memory. The
cache's own race rules are tested in ``test_near_cache.py`` and
``test_near_entries.py``.
"""

from __future__ import annotations

import contextlib
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
import pytest

from servers import RedisCluster, RedisServer
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit, Outcome, StoredSession
from serversession.exceptions import ConfigurationError, StoreUnavailableError
from serversession.stores import open_store
from serversession.stores._near_cache import NearCache, NearCacheConfig
from serversession.stores.redis import RedisStore

from . import near_store_worker

BOUND = 10.0  # seconds any wait may take before the test fails: generous, never a measurement
T = TypeVar("T")


def wait_until(ready: Callable[[], Any], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def new_key() -> str:
    return storage_key(new_session_id())


def signed_in(user: str, ttl: float = 60) -> Commit:
    return near_store_worker.signed_in(user, ttl)


def with_near_cache(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "near_cache=1"


class OtherProcess:
    """The second app process; ``other("delete KEY")`` returns once its store acknowledged."""

    def __init__(self, url: str) -> None:
        argv = [sys.executable, near_store_worker.__file__, with_near_cache(url)]
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

    def until(self, command: str, expected: str) -> None:
        """Send ``command`` until it is answered ``ok expected`` (bounded): after a
        restart or failover its store's first calls may fail."""
        deadline = time.monotonic() + BOUND
        while True:
            assert self.proc.stdin is not None
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            answer = self._line()
            if answer == f"ok {expected}":
                return
            assert answer.startswith("err ") and time.monotonic() < deadline, answer
            time.sleep(0.05)

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


def near(store: RedisStore) -> NearCache:
    cache = store.near_cache
    assert cache is not None
    return cache


def wait_tracking(store: RedisStore, established: int = 1) -> None:
    """Until the store's near cache serves hits (the first lookup starts its listener)."""
    store.load(new_key())
    cache = near(store)
    wait_until(lambda: cache.active and cache.listener.established >= established, "tracking on")


def cached(store: RedisStore, key: str) -> StoredSession:
    """Load ``key`` until a load is answered from memory. Bounded; more than one miss
    happens when the invalidation of the write that made ``key`` overtakes the first fill."""
    deadline = time.monotonic() + BOUND
    while True:
        before = near(store).stats().hits
        found = store.load(key)
        if near(store).stats().hits > before:
            assert found is not None
            return found
        assert time.monotonic() < deadline, f"{key} was never answered from the near cache"
        time.sleep(0.005)


def until_gone(store: RedisStore, key: str, what: str) -> None:
    """Poll this process's loads (bounded) until ``key`` no longer loads as a live session."""

    def gone() -> bool:
        try:
            found = store.load(key)
        except StoreUnavailableError:  # a failover in progress: ask again
            return False
        return found is None or found.ended is not None

    wait_until(gone, what)


@pytest.fixture(params=["redis", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue("fresh_redis" if request.param == "redis" else "fresh_cluster")
    return str(server.url)


@pytest.fixture
def store(url: str) -> Iterator[RedisStore]:
    built = RedisStore(with_near_cache(url))
    wait_tracking(built)
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


# --- options -------------------------------------------------------------------------


def test_the_option_in_the_url_and_as_an_argument(fresh_redis: RedisServer) -> None:
    assert RedisStore(fresh_redis.url).near_cache is None  # off by default
    on = RedisStore(f"{fresh_redis.url}?near_cache=1&near_cache_max_entries=5&near_cache_max_bytes=65536")
    try:
        assert near(on).config == NearCacheConfig(max_entries=5, max_bytes=65536)
        assert not near(on).listener.established  # nothing started before the first lookup
    finally:
        on.close()
    by_argument = open_store(fresh_redis.url, near_cache={"max_entries": 7})
    try:
        assert near(by_argument).config.max_entries == 7
    finally:
        by_argument.close()
    off = RedisStore(f"{fresh_redis.url}?near_cache=1", near_cache=False)  # the argument wins
    assert off.near_cache is None
    for bad in ["?near_cache=maybe", "?near_cache_max_entries=5", "?near_cache=1&near_cache_max_bytes=big",
                "?near_cache=1&near_cache=0", "?near_cache=1&near_cache_max_entries=0"]:  # fmt: skip
        with pytest.raises(ConfigurationError):
            RedisStore(fresh_redis.url + bad)
    with pytest.raises(ConfigurationError, match="Sentinel"):
        RedisStore("redis+sentinel://127.0.0.1:1/sessions?near_cache=1")


# --- reads ---------------------------------------------------------------------------


#: What runs beside the store's own commands: the listener's heartbeat and topology
#: check, a connection's handshake, and the INFO that counts.
NOISE = ("ping", "cluster|nodes", "hello", "client", "client|setinfo", "info")


def commands(nodes: list[Any]) -> Counter[str]:
    """Calls of each command on the nodes, :data:`NOISE` left out."""
    ran: Counter[str] = Counter()
    for node in nodes:
        with node.client() as r:
            for name, stat in r.info("commandstats").items():
                ran[name.removeprefix("cmdstat_")] += int(stat["calls"])
    for noise in NOISE:
        del ran[noise]
    return ran


def server_nodes(request: pytest.FixtureRequest, url: str) -> list[Any]:
    if url.startswith("redis+cluster"):
        return list(request.getfixturevalue("fresh_cluster").nodes)
    return [request.getfixturevalue("fresh_redis")]


def test_a_repeated_read_costs_no_command(store: RedisStore, other: OtherProcess, url: str,
                                          request: pytest.FixtureRequest) -> None:  # fmt: skip
    key = new_key()
    other(f"create {key} alice 60")
    cached(store, key)
    nodes = server_nodes(request, url)
    before, hits = commands(nodes), near(store).stats().hits
    for _ in range(20):
        found = store.load(key)
        assert found is not None and found.data["cart"] == '["apple"]'
    assert commands(nodes) == before  # INFO commandstats: 20 loads, 0 commands
    assert near(store).stats().hits == hits + 20


@pytest.mark.anyio
async def test_the_async_face_shares_the_cache(store: RedisStore, other: OtherProcess) -> None:
    key = new_key()
    other(f"create {key} bo 60")
    try:
        cached(store, key)  # filled by the sync face...
        hits = near(store).stats().hits
        assert (await store.aload(key)) is not None  # ...hit by the async one
        assert near(store).stats().hits == hits + 1
        assert other(f"delete {key}") == "True"

        async def gone() -> bool:
            return (await store.aload(key)) is None

        deadline = time.monotonic() + BOUND
        while not await gone():
            assert time.monotonic() < deadline, "the async face kept serving a signed-out session"
            await anyio.sleep(0.005)
    finally:
        await store.aclose()


# --- changes made by the other process -----------------------------------------------


@pytest.mark.parametrize("change", ["sign-out", "revocation", "rotation", "cart", "expiry"])
def test_a_change_in_the_other_process_is_seen_by_the_next_loads(
    store: RedisStore, other: OtherProcess, change: str
) -> None:
    key, second, new = new_key(), new_key(), new_key()
    user = f"u{new_key()[:8]}"
    other(f"create {key} {user} {1 if change == 'expiry' else 60}")
    other(f"create {second} {user} 60")
    cached(store, key)
    cached(store, second)
    if change == "sign-out":
        assert other(f"delete {key}") == "True"
        until_gone(store, key, "the sign-out")
    elif change == "revocation":
        assert other(f"revoke {user}") == "2"
        until_gone(store, key, "the revocation")
        until_gone(store, second, "the revocation")
    elif change == "rotation":
        assert other(f"rotate {key} {new}") == "OK"
        until_gone(store, key, "the rotation")  # the old key is a tombstone now: it never loads
        moved = store.load(new)
        assert moved is not None and moved.meta.user == user
    elif change == "cart":
        assert other(f'cart {key} ["apple","pear"]') == "OK"

        def changed() -> bool:
            found = store.load(key)
            return found is not None and found.data["cart"] == '["apple","pear"]'

        wait_until(changed, "the cart write")
    else:
        until_gone(store, key, "the expiry (Redis deletes the key: its invalidation)")
    assert near(store).stats().invalidations >= 1


def test_this_process_sees_its_own_writes_at_once(store: RedisStore, other: OtherProcess) -> None:
    """Every write evicts this process's copy before it returns: no wait at all."""
    key, new = new_key(), new_key()
    assert store.create(key, signed_in("cy")).outcome is Outcome.OK
    cached(store, key)
    assert store.commit(key, Commit(set_data={"cart": '["fig"]'})).outcome is Outcome.OK
    found = store.load(key)
    assert found is not None and found.data["cart"] == '["fig"]'
    cached(store, key)
    assert store.rotate(key, new, Commit(expires_at=time.time() + 60), grace=30).outcome is Outcome.OK
    assert store.load(key) is None
    cached(store, new)
    assert store.delete(new)
    assert store.load(new) is None
    assert other(f"load {new}") == "-"  # and the other process, which never cached it, agrees


def test_the_other_process_caches_too_and_hears_this_one(store: RedisStore, other: OtherProcess) -> None:
    key = new_key()
    assert store.create(key, signed_in("di")).outcome is Outcome.OK
    other(f"load {key}")
    hits = int(other("hits"))
    assert other(f"load {key}") == '["apple"]'
    wait_until(lambda: int(other("hits")) > hits, "a hit in the other process (its tracking on)")
    assert store.delete(key)
    wait_until(lambda: other(f"load {key}") == "-", "the other process hearing this one's sign-out")


# --- loss of tracking ----------------------------------------------------------------


def test_a_killed_invalidation_connection_never_serves_what_ended(
    store: RedisStore, other: OtherProcess, url: str, request: pytest.FixtureRequest
) -> None:
    key = new_key()
    other(f"create {key} ed 60")
    cached(store, key)
    cache = near(store)
    flushes, established = cache.stats().flushes, cache.listener.established
    for node in server_nodes(request, url):  # CLIENT KILL TYPE pubsub: the listeners' connections only
        with node.client() as r:
            r.client_kill_filter(_type="pubsub")
    wait_until(lambda: cache.stats().flushes > flushes, "the loss noticed (the cache emptied)")
    assert other(f"delete {key}") == "True"  # its invalidation may be lost with the connection
    assert store.load(key) is None  # the flush covers it, tracking back or not
    wait_until(lambda: cache.listener.established > established, "tracking back")
    assert store.load(key) is None
    again = new_key()
    other(f"create {again} ed 60")
    cached(store, again)  # and hits are served again


def test_a_restarted_redis_never_serves_what_ended() -> None:
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(RedisServer("--appendonly", "yes", "--appendfsync", "always"))
        store = RedisStore(with_near_cache(server.url))
        stack.callback(store.close)
        other = OtherProcess(server.url)
        stack.callback(other.close)
        wait_tracking(store)
        key = new_key()
        other(f"create {key} fay 60")
        cached(store, key)
        server.kill()
        cache = near(store)
        wait_until(lambda: not cache.active, "the loss")
        with pytest.raises(StoreUnavailableError):
            store.load(key)  # the server is down: the cache does not answer for it
        server.restart()
        other.until(f"delete {key}", "True")
        assert until_available(lambda: store.load(key)) is None
        wait_tracking(store, 2)
        assert store.load(key) is None


def until_available(call: Callable[[], T]) -> T:
    deadline = time.monotonic() + BOUND
    while True:
        try:
            return call()
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _replica_of(node: RedisServer, master_port: int) -> bool:
    with node.client() as r:
        return int(r.info("replication").get("master_port", -1)) == master_port


def test_a_cluster_failover_never_serves_what_ended() -> None:
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(RedisCluster(replicas=1))
        store = RedisStore(cluster.url, near_cache={"topology_interval": 0.2})
        stack.callback(store.close)
        other = OtherProcess(cluster.url)
        stack.callback(other.close)
        wait_tracking(store)
        key = new_key()
        other(f"create {key} gus 60")
        cached(store, key)
        client = store._sync_client()
        master = client.nodes_manager.get_node_from_slot(client.keyslot(f"ss:s:{key}"))
        replica = next(n for n in cluster.nodes[cluster.MASTERS :] if _replica_of(n, master.port))
        established = near(store).listener.established
        with replica.client() as r:
            r.execute_command("CLUSTER", "FAILOVER")  # a manual failover: the old master stays up
            wait_until(lambda: r.info("replication")["role"] == "master", "the failover")
        other.until(f"delete {key}", "True")
        until_gone(store, key, "the sign-out on the new master")
        wait_until(lambda: near(store).listener.established > established, "tracking on the new topology")
        assert until_available(lambda: store.load(key)) is None
