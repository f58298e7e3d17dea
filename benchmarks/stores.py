"""Store micro-benchmarks: load, save and renew per second, sync and async.

Why: the HTTP table says what a request costs end to end; this says how much
of it is the store, without a web framework in the way. The three operations
are the ones a request makes: ``load`` (every request with a session),
``save`` (a request that changed one key: a delta commit with renewal) and
``renew`` (a request that only pushes the idle deadline: metadata and expiry).

The sync face runs one call after another in one thread (its rate is one over
its latency); the async face keeps 32 calls in flight on one event loop, as a
busy ASGI worker does. 200 sessions are used round-robin so no single row or
key is hot.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from serversession.core.codec import SessionMeta, encode_meta
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit
from serversession.exceptions import ConfigurationError, StoreError
from serversession.stores.url import open_store

from .harness import Backends
from .targets import Target

OPS = ("load", "save", "renew")
SESSIONS = 200
IN_FLIGHT = 32


@dataclass
class StoreResult:
    """ops/s per (face, op) for one store, or why it was skipped."""

    store: str
    rates: dict[tuple[str, str], float]
    skipped: str = ""
    failed: bool = False


def _commit(op: str, i: int) -> Commit:
    now = time.time()
    meta = {"s": repr(round(now, 3))}
    if op == "save":
        return Commit(set_data={"cart": f'{{"sku-{i % 97}":{i % 5}}}'}, meta=meta, expires_at=now + 1800)
    return Commit(meta=meta, expires_at=now + 1800)


def _seed(store: Any) -> list[str]:
    now = time.time()
    meta = encode_meta(SessionMeta(created_at=now, last_seen_at=now, user_agent="Mozilla/5.0 bench", ip="127.0.0.1",
                                   csrf_secret="x" * 43))  # fmt: skip
    keys = [storage_key(new_session_id()) for _ in range(SESSIONS)]
    for key in keys:
        store.create(key, Commit(set_data={"cart": "{}"}, meta=meta, expires_at=now + 1800))
    return keys


def _sync_rate(store: Any, op: str, keys: list[str], seconds: float) -> float:
    call: Callable[[str, int], Any] = (
        (lambda key, i: store.load(key)) if op == "load" else (lambda key, i: store.commit(key, _commit(op, i)))
    )
    done, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(20):
            call(keys[done % SESSIONS], done)
            done += 1
    return done / (time.perf_counter() - start)


async def _async_rates(store: Any, keys: list[str], seconds: float) -> dict[str, float]:
    # One call before the concurrent ones: redis-py 8.1's async cluster client fails when its
    # first commands arrive together (it initialises once per caller); see docs/performance.md.
    await store.aload(keys[0])
    rates = {}
    for op in OPS:
        done = [0]
        deadline = time.perf_counter() + seconds

        async def worker(offset: int, op: str = op, done: list[int] = done, deadline: float = deadline) -> None:
            i = offset
            while time.perf_counter() < deadline:
                key = keys[i % SESSIONS]
                await (store.aload(key) if op == "load" else store.acommit(key, _commit(op, i)))
                i += IN_FLIGHT
                done[0] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(IN_FLIGHT)))
        rates[op] = done[0] / (time.perf_counter() - start)
    await store.aclose()  # closes the sync face too
    return rates


@contextlib.contextmanager
def _store_url(name: str, backends: Backends) -> Iterator[str]:
    """The URL of store ``name``; PostgreSQL is started for its benchmark only."""
    if name == "postgres":
        from servers import PostgresServer

        with PostgresServer() as server:
            yield server.url
    elif name == "memory":
        yield "memory://"
    elif name == "sqlite":
        path = backends.dir / "micro.sqlite3"
        path.unlink(missing_ok=True)
        yield f"sqlite:///{path}"
    else:
        yield backends.url(Target(name, "asgi", "ours", name))


def bench_store(name: str, backends: Backends, seconds: float) -> StoreResult:
    """Measure one store; a missing driver or server is reported as skipped, not raised."""
    try:
        with _store_url(name, backends) as url:
            store = open_store(url)
            keys = _seed(store)
            rates = {("sync", op): _sync_rate(store, op, keys, seconds) for op in OPS}
            # The same object: the memory store's sessions live in it; async clients bind to this loop.
            arates = asyncio.run(_async_rates(store, keys, seconds))
            rates.update({("async", op): rate for op, rate in arates.items()})
            return StoreResult(name, rates)
    except (ImportError, RuntimeError, FileNotFoundError, ConfigurationError) as exc:
        return StoreResult(name, {}, skipped=f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
    except StoreError as exc:  # the store itself failed: a finding, and the run counts as broken
        return StoreResult(name, {}, skipped=f"FAILED {type(exc).__name__}: {str(exc)[:80]}", failed=True)


def run(backends: Backends, seconds: float, stores: tuple[str, ...]) -> list[StoreResult]:
    """Benchmark each store in ``stores``."""
    return [bench_store(name, backends, seconds) for name in stores]


def table(results: list[StoreResult]) -> str:
    head = f"{'store':<9}" + "".join(f"{face + ' ' + op:>13}" for face in ("sync", "async") for op in OPS)
    lines = [head + "   (operations per second)", "-" * len(head)]
    for r in results:
        if r.skipped:
            lines.append(f"{r.store:<9} n/a ({r.skipped})")
            continue
        lines.append(f"{r.store:<9}" + "".join(f"{r.rates[(f, op)]:>13.0f}" for f in ("sync", "async") for op in OPS))
    return "\n".join(lines)
