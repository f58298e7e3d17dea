"""The managers: per-process queueing of ``modify`` (one round trip per write under contention)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from serversession import AsyncSessionManager, MemoryStore, SessionManager
from serversession.core.transport import IncomingToken

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
