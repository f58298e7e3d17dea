"""The managers: per-process queueing of ``modify`` (one round trip per write under contention)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from serversession import AsyncSessionManager, MemoryStore, SessionManager
from serversession.core.config import SessionConfig
from serversession.core.transport import IncomingToken
from serversession.exceptions import SessionTooLargeError
from serversession.stores.sqlite import SQLiteStore

WRITERS = 16


class SlowCommits:
    """A memory store whose commits take a millisecond, so concurrent writers overlap."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, key: str, commit: Any) -> Any:
        self.commits += 1
        time.sleep(0.001)
        return self.inner.commit(key, commit)

    async def acommit(self, key: str, commit: Any) -> Any:
        self.commits += 1
        await asyncio.sleep(0.001)
        return await self.inner.acommit(key, commit)


def header(token: str | None) -> IncomingToken:
    return IncomingToken(token, via_header=True)


def test_threads_modifying_one_session_each_commit_once() -> None:
    store = SlowCommits()
    manager = SessionManager(store)
    first = manager.load(header(None))
    first["n"] = 0
    token = manager.save(first).header_token
    # Every request loads before any writes: all hold the same, soon stale, value.
    requests = [manager.load(header(token)) for _ in range(WRITERS)]
    stale = manager.load(header(token))
    store.commits = 0
    threads = [threading.Thread(target=r.modify, args=("n", lambda v: v + 1)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert manager.load(header(token))["n"] == WRITERS
    assert store.commits == WRITERS, "writers retried: modify is not queued per session"
    store.commits = 0
    assert stale.modify("n", lambda v: v + 1) == WRITERS + 1  # loaded before all of them, yet no retry
    assert store.commits == 1


def test_gates_are_bounded() -> None:
    manager = SessionManager(MemoryStore())
    for _ in range(3000):
        s = manager.load(header(None))
        s["n"] = 0
        manager.save(s)
        s.modify("n", lambda v: v + 1)
    assert len(manager._gates) <= 1024


@pytest.mark.anyio
async def test_tasks_modifying_one_session_each_commit_once() -> None:
    store = SlowCommits()
    manager = AsyncSessionManager(store)
    first = await manager.aload(header(None))
    first["cart"] = {}
    token = (await manager.asave(first)).header_token
    requests = [await manager.aload(header(token)) for _ in range(WRITERS)]
    store.commits = 0

    def add(cart: dict[str, int]) -> dict[str, int]:
        return {**cart, "tea": cart.get("tea", 0) + 1}

    await asyncio.gather(*(r.amodify("cart", add, {}) for r in requests))
    assert (await manager.aload(header(token)))["cart"] == {"tea": WRITERS}
    assert store.commits == WRITERS


def test_another_process_writing_meanwhile_is_still_caught_by_compare_and_set() -> None:
    store = MemoryStore()
    here, there = SessionManager(store), SessionManager(store)  # two processes, one store
    first = here.load(header(None))
    first["n"] = 0
    token = here.save(first).header_token
    a, b = here.load(header(token)), here.load(header(token))
    a.modify("n", lambda v: v + 1)
    elsewhere = there.load(header(token))
    elsewhere.modify("n", lambda v: v + 10)
    b.modify("n", lambda v: v + 100)
    assert here.load(header(token))["n"] == 111


class CountingCommits:
    """Store wrapper counting commits (sync and async)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, key: str, commit: Any) -> Any:
        self.commits += 1
        return self.inner.commit(key, commit)

    async def acommit(self, key: str, commit: Any) -> Any:
        self.commits += 1
        await asyncio.sleep(0.001)
        return await self.inner.acommit(key, commit)


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: Any, tmp_path: Any) -> Iterator[Any]:
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    yield store
    store.close()


# ---------------------------------------------------------------------------
# Found by review (each failed before): a gate's asyncio.Lock outlived its event loop
# ---------------------------------------------------------------------------


def test_a_second_event_loop_gets_its_own_gate() -> None:
    store = CountingCommits(MemoryStore())
    manager = AsyncSessionManager(store)

    async def start() -> str:
        s = await manager.aload(header(None))
        s["n"] = 0
        return (await manager.asave(s)).header_token or ""

    token = asyncio.run(start())

    async def contend() -> None:
        rs = [await manager.aload(header(token)) for _ in range(4)]
        await asyncio.gather(*(r.amodify("n", lambda v: v + 1) for r in rs))

    asyncio.run(contend())  # loop 1: contention binds the gate's asyncio.Lock to loop 1
    # loop 2 (another asyncio.run, another thread's loop, the next anyio test...):
    # the gate of loop 1 is still among the recent ones; loop 2 must not reuse its lock
    asyncio.run(contend())
    got = asyncio.run(manager.aload(header(token)))["n"]
    assert got == 8


def test_a_loop_stopped_mid_modify_does_not_wedge_later_modifies() -> None:
    """Same root cause: the gate (and its held lock) belongs to a loop that died mid-modify."""

    class Hang(CountingCommits):
        def __init__(self, inner: Any) -> None:
            super().__init__(inner)
            self.hang = True
            self.entered = threading.Event()

        async def acommit(self, key: str, commit: Any) -> Any:
            if self.hang:
                self.hang = False
                self.entered.set()
                await asyncio.Event().wait()  # a request stuck when its loop is stopped
            return await self.inner.acommit(key, commit)

    store = Hang(MemoryStore())
    manager = AsyncSessionManager(store)
    s = asyncio.run(manager.aload(header(None)))
    s["n"] = 0
    token = asyncio.run(manager.asave(s)).header_token
    store.hang = True

    loop = asyncio.new_event_loop()
    abandoned: list[asyncio.Task[Any]] = []

    def worker() -> None:
        asyncio.set_event_loop(loop)
        r = loop.run_until_complete(manager.aload(header(token)))
        abandoned.append(loop.create_task(r.amodify("n", lambda v: v + 1)))
        loop.run_forever()  # stopped below, task abandoned (not closed)

    t = threading.Thread(target=worker)
    t.start()
    assert store.entered.wait(2)
    loop.call_soon_threadsafe(loop.stop)
    t.join()

    async def later() -> Any:
        r = await manager.aload(header(token))
        return await asyncio.wait_for(r.amodify("n", lambda v: v + 1), 1.0)

    assert asyncio.run(later()) == 1  # not stuck behind the dead loop's lock
    abandoned[0].cancel()
    loop.run_until_complete(asyncio.sleep(0))  # let the abandoned task see its cancellation
    loop.close()


# ---------------------------------------------------------------------------
# Found by review: gate.latest is preferred even when the request's own load is fresher
# ---------------------------------------------------------------------------


def test_a_load_fresher_than_the_memo_starts_from_its_own_value(any_store: Any) -> None:
    cfg = SessionConfig(modify_attempts=1)
    here, there = SessionManager(any_store, cfg), SessionManager(any_store, cfg)
    first = here.load(header(None))
    first["n"] = 0
    token = here.save(first).header_token
    here.load(header(token)).modify("n", lambda v: v + 1)  # here's gate: latest["n"] = "1"
    there.load(header(token)).modify("n", lambda v: v + 10)  # another process: any_store = 11
    fresh = here.load(header(token))  # loaded AFTER both writes
    assert fresh["n"] == 11
    # Nothing wrote since `fresh` loaded, yet the modify starts from the gate's "1" and conflicts.
    assert fresh.modify("n", lambda v: v + 100) == 111  # one attempt is enough


def test_a_plain_save_after_a_modify_costs_the_next_modify_no_retry(any_store: Any) -> None:
    counted = CountingCommits(any_store)
    m = SessionManager(counted)
    first = m.load(header(None))
    first["n"] = 0
    token = m.save(first).header_token
    m.load(header(token)).modify("n", lambda v: v + 1)  # latest["n"] = "1"
    plain = m.load(header(token))
    plain["n"] = 5  # a plain (unqueued) write of the same key, same process
    m.save(plain)
    fresh = m.load(header(token))
    assert fresh["n"] == 5
    counted.commits = 0
    assert fresh.modify("n", lambda v: v + 1) == 6
    assert counted.commits == 1  # no retry from an out-of-date memo


# ---------------------------------------------------------------------------
# Found by review: modify bypasses max_size
# ---------------------------------------------------------------------------


def test_modify_keeps_to_max_size(any_store: Any) -> None:
    m = SessionManager(any_store, SessionConfig(max_size=300))
    s = m.load(header(None))
    s["pad"] = "x" * 50
    token = m.save(s).header_token
    r = m.load(header(token))
    with pytest.raises(SessionTooLargeError):
        r["big"] = "y" * 600  # a plain write is refused...
    r2 = m.load(header(token))
    with pytest.raises(SessionTooLargeError):  # ...and so is the same value through modify
        r2.modify("big", lambda _: "y" * 600)
    later = m.load(header(token))
    later["theme"] = "dark"  # ...and every later plain write to the session fails
    m.save(later)


# ---------------------------------------------------------------------------
# Found by review: a rotation that loses the race forwards a stale `user` to the new key
# ---------------------------------------------------------------------------


def test_a_rotation_that_loses_the_race_does_not_sign_the_user_back_in(any_store: Any) -> None:
    m = SessionManager(any_store)
    s = m.load(header(None))
    s.user = "alice"
    s["cart"] = ["tea"]
    token = m.save(s).header_token
    signout = m.load(header(token))
    other = m.load(header(token))  # in flight, loaded while alice was signed in
    signout.user = None  # sign out but keep the anonymous cart
    signout.rotate("signed out")
    new_token = m.save(signout).header_token
    other.rotate("privilege change")  # does not touch .user
    m.save(other)  # MOVED: its changes are forwarded to the new key, its stale user is not
    after = m.load(header(new_token))
    assert after.user is None  # the sign-out stands
    assert m.list_sessions("alice") == []


def test_a_rotation_that_loses_the_race_does_not_undo_a_sign_in(any_store: Any) -> None:
    m = SessionManager(any_store)
    s = m.load(header(None))
    s["cart"] = ["tea"]
    token = m.save(s).header_token
    signin = m.load(header(token))
    other = m.load(header(token))  # anonymous, in flight
    signin.user = "alice"
    signin.rotate("signed in")
    new_token = m.save(signin).header_token
    other.rotate("accepted terms")
    m.save(other)  # MOVED: forwarded without its stale (anonymous) user
    assert m.load(header(new_token)).user == "alice"  # the sign-in stands


# ---------------------------------------------------------------------------
# BUG 5 (perf, low): _recent_gates keeps the most recently *created* gates
# ---------------------------------------------------------------------------


def test_a_gate_in_constant_use_is_kept() -> None:
    counted = CountingCommits(MemoryStore())
    m = SessionManager(counted)

    def fresh_session() -> str:
        s = m.load(header(None))
        s["n"] = 0
        return m.save(s).header_token or ""

    token = fresh_session()
    stale = m.load(header(token))
    m.load(header(token)).modify("n", lambda v: v + 1)  # the hot gate is created (first in the deque)
    others = [fresh_session() for _ in range(1024)]
    for other in others:  # each step: one other session's first modify, then the hot one's
        m.load(header(other)).modify("n", lambda v: v + 1)
        if other is not others[-1]:
            m.load(header(token)).modify("n", lambda v: v + 1)
    # The hot session was used 1 step ago (LRU rank 2 of 1025) but its gate was
    # evicted as the "oldest": latest lost, the stale request retries.
    counted.commits = 0
    stale.modify("n", lambda v: v + 1)
    assert counted.commits == 1
