"""Near cache: how soon another process's write evicts our copy, and what a hit saves.

Run: ``.venv/bin/python -m benchmarks.near_cache`` (one Redis on loopback, ~20 s).

Why these figures: the near cache's promise (``docs/concurrency.md``, "Near
cache") is that a change acknowledged by another process is seen here within the
time its invalidation takes to arrive, so that time is measured, not assumed:

* **invalidation delay**: a second process (a plain redis-py client) writes a
  key this process has cached; the delay runs from its write being *sent* (and,
  separately, *acknowledged*) to this process's listener evicting the copy.
  Both processes read ``time.perf_counter`` (CLOCK_MONOTONIC, one clock for the
  machine), so the two timestamps compare. A negative "after ack" figure means
  the copy was gone before the writer even read its reply.
* **a load**: ``RedisStore.load`` without the cache (one HGETALL and the
  decode: the baseline, measured in the same run) against the same call on a
  store with ``near_cache=True`` once its records are cached (the lookup and the
  same decode); and ``aload`` from 50 concurrent tasks, without the cache (the
  load batcher's pipelined HGETALLs) and with it.
* **memory per entry**, measured with ``tracemalloc`` over 10,000 cached
  records, beside the estimate the cache bounds ``max_bytes`` by.
* **what BCAST costs a process that caches nothing**: CPU time of this process
  per invalidation of a key it never read (every process hears every session write),
  and what it costs Redis: the bytes it sends per session write to each listening
  process (``total_net_output_bytes``) and its tracking table (``INFO``'s
  ``tracking_total_keys`` and ``tracking_total_prefixes``).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import redis

from serversession.core.codec import SessionMeta, encode_meta
from serversession.core.records import Commit
from serversession.stores._near_cache import NearCache, NearCacheConfig
from serversession.stores._near_entries import record_size
from serversession.stores.redis import RedisStore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the real-server helpers shared with the test suite

from servers import RedisServer  # noqa: E402

PREFIX = "ss:"
SAMPLES = 2000
LOADS = 5000
ENTRIES = 10_000
FOREIGN = 20_000
#: What the server spends: invalidation bytes sent per session write, and its tracking table.
WIRE: dict[str, float] = {}

#: The writing process: for each key on stdin, HSET it and print "sent ack" (perf_counter).
WRITER = """
import sys, time, redis
r = redis.Redis(port=int(sys.argv[1]))
r.ping()
print("ready", flush=True)
for line in sys.stdin:
    key = line.strip()
    if key.startswith("bulk "):
        _, prefix, n = key.split()
        with r.pipeline(transaction=False) as pipe:
            for i in range(int(n)):
                pipe.hset(f"{prefix}{i:036d}", "d:x", "1")  # as long as a session key (ss:s: + 43)
            pipe.execute()
        print("done", flush=True)
        continue
    sent = time.perf_counter()
    r.hset(key, "d:cart", '["pear"]')
    print(sent, time.perf_counter(), flush=True)
"""


def session_commit() -> Commit:
    now = time.time()
    meta = encode_meta(SessionMeta(created_at=now, last_seen_at=now, user="alice", user_agent="Mozilla/5.0 bench",
                                   ip="127.0.0.1", csrf_secret="x" * 43, authenticated_at=now))  # fmt: skip
    return Commit(set_data={"cart": '["apple","pear"]', "theme": '"dark"'}, meta=meta, expires_at=now + 600,
                  index_user="alice", absolute_at=now + 3600)  # fmt: skip


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Stamped:
    """Records when the listener evicted each key (wraps ``NearEntries.invalidate``)."""

    def __init__(self, cache: NearCache) -> None:
        self.at: dict[str, float] = {}
        self.seen = threading.Condition()
        original = cache.entries.invalidate

        def invalidate(keys: Any) -> None:
            keys = list(keys)
            original(keys)
            now = time.perf_counter()
            with self.seen:
                for key in keys:
                    self.at.setdefault(key, now)
                self.seen.notify_all()

        cache.entries.invalidate = invalidate  # type: ignore[method-assign]

    def wait(self, key: str, timeout: float = 5.0) -> float:
        with self.seen:
            if not self.seen.wait_for(lambda: key in self.at, timeout):
                raise RuntimeError(f"no invalidation for {key} within {timeout} s")
            return self.at.pop(key)


def invalidation_delay(
    server: RedisServer, store: RedisStore, cache: NearCache
) -> tuple[list[float], list[float], float]:
    stamped = Stamped(cache)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(server.port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert writer.stdin is not None and writer.stdout is not None
    try:
        if writer.stdout.readline().strip() != "ready":
            raise RuntimeError("the writer did not start")
        from_sent, from_ack = [], []
        client = store._sync_client()
        for i in range(SAMPLES):
            key = f"delay{i}"
            store.create(key, session_commit())
            skey = store._skey(key)
            stamped.wait(skey)  # the create's own invalidation, else it would spoil the fill below
            ticket = cache.begin(skey)
            if not cache.fill(ticket, client.hgetall(skey)):
                raise RuntimeError("the cache did not take the record")
            writer.stdin.write(skey + "\n")
            writer.stdin.flush()
            sent, acked = map(float, writer.stdout.readline().split())
            evicted = stamped.wait(skey)
            from_sent.append((evicted - sent) * 1e3)
            from_ack.append((evicted - acked) * 1e3)
        # The cost of hearing about writes this process never cached: here, and on the server's wire.
        with redis.Redis(port=server.port) as admin:
            out = int(admin.info("stats")["total_net_output_bytes"])
            cpu = time.process_time()
            writer.stdin.write(f"bulk {PREFIX}s:foreign {FOREIGN}\n")
            writer.stdin.flush()
            writer.stdout.readline()
            stamped.wait(f"{PREFIX}s:foreign{FOREIGN - 1:036d}", timeout=30)
            foreign_us = (time.process_time() - cpu) / FOREIGN * 1e6
            # Less the writer's own replies (":1\r\n" or ":0\r\n" per HSET) and this INFO's.
            sent = int(admin.info("stats")["total_net_output_bytes"]) - out - 4 * FOREIGN
            WIRE["bytes_per_write"] = sent / FOREIGN
            WIRE.update({k: admin.info()[k] for k in ("tracking_total_keys", "tracking_total_prefixes")})
    finally:
        writer.stdin.close()
        writer.wait(timeout=10)
    return from_sent, from_ack, foreign_us


def load_cost(plain: RedisStore, cached: RedisStore) -> tuple[float, float, float]:
    """Per-load microseconds: ``plain.load`` (the baseline), ``cached.load`` once every key
    is cached, and the bare cache lookup inside it."""
    keys = [f"load{i}" for i in range(200)]
    for key in keys:
        plain.create(key, session_commit())
    cache = cached.near_cache
    assert cache is not None
    for key in keys:  # until each is a hit: a create's own invalidation may spoil the first fill
        for _ in range(100):
            hits = cache.stats().hits
            cached.load(key)
            if cache.stats().hits > hits:
                break
            time.sleep(0.002)
    start = time.perf_counter()
    for i in range(LOADS):
        plain.load(keys[i % len(keys)])
    baseline = (time.perf_counter() - start) / LOADS * 1e6
    hits = cache.stats().hits
    start = time.perf_counter()
    for i in range(LOADS):
        cached.load(keys[i % len(keys)])
    hit = (time.perf_counter() - start) / LOADS * 1e6
    if cache.stats().hits - hits != LOADS:
        raise RuntimeError("expected every load to be a hit")
    skeys = [cached._skey(key) for key in keys]
    start = time.perf_counter()
    for i in range(LOADS):
        cache.get(skeys[i % len(skeys)])
    lookup = (time.perf_counter() - start) / LOADS * 1e6
    return baseline, hit, lookup


async def _aloads(store: RedisStore, keys: list[str], concurrency: int) -> float:
    """Loads per second of ``concurrency`` tasks sharing the async face."""

    async def worker(offset: int) -> None:
        for i in range(LOADS // concurrency):
            await store.aload(keys[(offset + i) % len(keys)])

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    rate = (LOADS // concurrency * concurrency) / (time.perf_counter() - start)
    await store.aclose()
    return rate


def async_throughput(plain: RedisStore, cached: RedisStore) -> tuple[float, float]:
    """aload per second, 50 concurrent tasks: without the cache (batched HGETALLs), with it (hits)."""
    keys = [f"load{i}" for i in range(200)]  # made and cached by load_cost
    return asyncio.run(_aloads(plain, keys, 50)), asyncio.run(_aloads(cached, keys, 50))


def memory_per_entry(store: RedisStore, cache: NearCache) -> tuple[float, float]:
    store.create("mem", session_commit())
    time.sleep(0.2)
    fields = store._sync_client().hgetall(store._skey("mem"))
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(ENTRIES):  # fresh strings, as each HGETALL reply brings its own
        record = {name.encode().decode(): value.encode().decode() for name, value in fields.items()}
        cache.fill(cache.begin(f"{PREFIX}s:mem{i}"), record)
    del record
    measured = (tracemalloc.get_traced_memory()[0] - before) / ENTRIES
    tracemalloc.stop()
    return measured, float(record_size(f"{PREFIX}s:mem0", fields))


def main() -> None:
    with RedisServer() as server:
        url = server.url
        plain = RedisStore(url, prefix=PREFIX)
        store = RedisStore(url, prefix=PREFIX, near_cache=True)  # the defaults: 10,000 entries, 32 MiB
        cache = store.near_cache
        assert cache is not None
        store.load("probe")  # the first lookup starts the listener
        deadline = time.monotonic() + 10
        while not cache.active:
            if time.monotonic() > deadline:
                raise RuntimeError("tracking never came on")
            time.sleep(0.01)
        print(f"Near cache on redis-server {redis.Redis(port=server.port).info()['redis_version']}, loopback")
        sent, acked, foreign_us = invalidation_delay(server, store, cache)
        print(f"  invalidation delay, write sent -> copy evicted ({SAMPLES} writes from another process):")
        print(f"    p50 {statistics.median(sent):.3f} ms   p99 {pct(sent, 99):.3f} ms   max {max(sent):.3f} ms")
        print("  after the writer's ack (<= 0: evicted before the writer read its reply):")
        print(f"    p50 {statistics.median(acked):.3f} ms   p99 {pct(acked, 99):.3f} ms   max {max(acked):.3f} ms")
        print(f"  CPU per invalidation of a key never cached (what BCAST costs): {foreign_us:.1f} us")
        print(f"  in Redis: {WIRE['bytes_per_write']:.0f} B of invalidation sent per session write (pipelined) and"
              f" listening process; tracking table: {WIRE['tracking_total_keys']:.0f} keys,"
              f" {WIRE['tracking_total_prefixes']:.0f} prefix(es)")  # fmt: skip
        baseline, hit, lookup = load_cost(plain, store)
        print(f"  RedisStore.load: without the cache {baseline:.1f} us (baseline), a hit {hit:.1f} us"
              f" (lookup {lookup:.1f} us + decode): {1e6 / baseline:,.0f} vs {1e6 / hit:,.0f} loads/s,"
              f" ratio {baseline / hit:.1f}x")  # fmt: skip
        stats = cache.stats()
        print(f"  counters: {stats.hits} hits, {stats.misses} misses, {stats.invalidations} invalidations, "
              f"{stats.dropped_fills} dropped fills, {stats.flushes} flushes")  # fmt: skip
        without, with_cache = async_throughput(plain, store)  # closes both stores
        print(f"  aload, 50 concurrent tasks: {without:,.0f} loads/s without (baseline), {with_cache:,.0f} with,"
              f" ratio {with_cache / without:.1f}x")  # fmt: skip
        # Its own cache, marked active by hand (no listener needed to hold records), with room for them all.
        roomy = NearCache(url, f"{PREFIX}s:", cluster=False, config=NearCacheConfig(ENTRIES + 10, 1 << 30))
        roomy.entries.activate([0])
        measured, estimate = memory_per_entry(plain, roomy)
        print(f"  memory per entry (a signed-in session, {ENTRIES} cached): {measured:.0f} B measured, "
              f"{estimate:.0f} B estimated by the max_bytes bound ({estimate / measured:.2f}x)")  # fmt: skip
        roomy.close()


if __name__ == "__main__":
    main()
