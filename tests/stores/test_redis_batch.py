"""Concurrent loads share one pipeline; each still gets its own answer or its own error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from servers import RedisServer, free_port
from serversession.core.codec import SessionMeta, encode_meta
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit
from serversession.exceptions import StoreError, StoreUnavailableError
from serversession.stores._redis_batch import LoadBatcher
from serversession.stores.redis import RedisStore


class Spy:
    """Counts the pipelines and single commands a batcher sends."""

    def __init__(self, client: Any) -> None:
        self.client, self.pipelines, self.singles = client, 0, 0

    def pipeline(self, **kwargs: Any) -> Any:
        self.pipelines += 1
        return self.client.pipeline(**kwargs)

    async def hgetall(self, key: str) -> Any:
        self.singles += 1
        return await self.client.hgetall(key)


@pytest.fixture
async def client(fresh_redis: RedisServer) -> AsyncIterator[Any]:
    """A decoding async client on the flushed shared server, closed after the test."""
    async with redis.asyncio.Redis.from_url(fresh_redis.url, decode_responses=True) as opened:
        yield opened


@pytest.mark.anyio
async def test_concurrent_loads_go_out_as_one_pipeline(client: Any) -> None:
    for i in range(20):
        await client.hset(f"k{i}", mapping={"v": str(i)})
    await client.set("not-a-hash", "x")
    spy = Spy(client)
    batcher = LoadBatcher(spy)
    replies = await asyncio.gather(
        *(batcher.hgetall(f"k{i}") for i in range(20)), batcher.hgetall("not-a-hash"), return_exceptions=True
    )
    assert replies[:20] == [{"v": str(i)} for i in range(20)]
    assert isinstance(replies[20], redis.ResponseError)  # WRONGTYPE: only that request fails
    assert spy.pipelines == 1 and spy.singles == 0
    assert await batcher.hgetall("k3") == {"v": "3"} and spy.singles == 1  # alone: no pipeline


@pytest.mark.anyio
async def test_a_cancelled_request_does_not_disturb_the_others(client: Any) -> None:
    await client.hset("k", mapping={"v": "1"})
    batcher = LoadBatcher(client)
    first, second = batcher.hgetall("k"), batcher.hgetall("k")
    first.cancel()
    assert await second == {"v": "1"}


@pytest.mark.anyio
async def test_every_load_of_a_failed_batch_is_a_store_error_and_the_store_recovers() -> None:
    port = free_port()
    store = RedisStore(f"redis://127.0.0.1:{port}/0?socket_timeout=0.5&socket_connect_timeout=0.5")
    try:
        keys = [storage_key(new_session_id()) for _ in range(8)]
        results = await asyncio.gather(*(store.aload(k) for k in keys), return_exceptions=True)
        assert all(isinstance(r, StoreUnavailableError) for r in results), results
        with RedisServer(port=port):
            meta = SessionMeta(created_at=1.0, last_seen_at=1.0)
            assert await store.acreate(keys[0], Commit(set_data={"a": "1"}, meta=encode_meta(meta), expires_at=9e9))
            loaded = await asyncio.gather(*(store.aload(k) for k in keys))
            assert loaded[0] is not None and loaded[0].data == {"a": "1"} and loaded[1:] == [None] * 7
    finally:
        await store.aclose()


# -- found by review: each failed before the batcher's guards ---------------------------


@pytest.mark.anyio
async def test_one_undecodable_session_fails_only_its_own_load(fresh_redis: RedisServer) -> None:
    """Bytes that are not UTF-8 (written by another client) raise out of the whole
    pipeline, not per command; the batch then loads one key at a time."""
    store = RedisStore(fresh_redis.url)
    meta = encode_meta(SessionMeta(created_at=1.0, last_seen_at=1.0))
    try:
        good = [storage_key(new_session_id()) for _ in range(5)]
        for i, key in enumerate(good):
            assert await store.acreate(key, Commit(set_data={"i": str(i)}, meta=meta, expires_at=9e9))
        bad = storage_key(new_session_id())
        async with redis.asyncio.Redis.from_url(fresh_redis.url) as raw:  # a bytes client
            await raw.hset(f"ss:s:{bad}", mapping={b"d:x": b"\xff\xfe not utf-8"})
        results = await asyncio.gather(*(store.aload(k) for k in [*good, bad]), return_exceptions=True)
        assert [r.data for r in results[:5]] == [{"i": str(i)} for i in range(5)]  # type: ignore[union-attr]
        assert isinstance(results[5], StoreError)
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_a_tick_with_many_loads_sends_bounded_pipelines(client: Any) -> None:
    spy = Spy(client)
    batcher = LoadBatcher(spy)
    batcher.max_batch = 4
    replies = await asyncio.gather(*(batcher.hgetall(f"k{i}") for i in range(10)))
    assert replies == [{}] * 10 and spy.pipelines == 3 and spy.singles == 0  # 4 + 4 + 2


def test_a_loop_that_stopped_with_a_load_queued_does_not_block_later_loads(fresh_redis: RedisServer) -> None:
    store = RedisStore(fresh_redis.url)
    stopped = asyncio.new_event_loop()

    left: list[asyncio.Task[object]] = []

    async def queue_and_stop() -> None:
        left.append(asyncio.ensure_future(store.aload("queued on a loop that never runs again")))

    stopped.run_until_complete(queue_and_stop())
    stopped.close()

    async def later() -> object:
        try:
            return await asyncio.wait_for(store.aload(storage_key(new_session_id())), 5)
        finally:
            await store.aclose()

    assert asyncio.run(later()) is None  # a fresh key: not found, and above all not stuck
