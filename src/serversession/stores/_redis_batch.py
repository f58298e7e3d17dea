"""Coalesce the session loads of concurrent requests into one Redis pipeline.

Why: an async worker under load has many requests waiting on Redis at once, and
with redis-py the client's own Python (a pool checkout, packing, a socket write
and a reply read per command) costs more than Redis does. Sending the HGETALLs
that arrive within one event-loop tick as one non-transactional pipeline keeps
each request at exactly one command on the server while paying the client's
fixed cost once per batch. Measured on 2 cores with 32 loads in flight
(`python -m benchmarks.run --quick --only stores`, async load): 7,991 loads/s
one command at a time, 25,522/s batched.

Only loads are batched. They are idempotent reads, so a failed batch fails each
of its requests exactly as a failed single load would (503), and nothing is
replayed; writes stay one script call each, their order and atomicity untouched.
A lone load (no concurrency) goes out as a plain command, without pipeline cost.
"""

from __future__ import annotations

import asyncio
from typing import Any


class LoadBatcher:
    """Per async client: ``await batcher.hgetall(key)`` behaves like ``client.hgetall(key)``."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pending: list[tuple[str, asyncio.Future[Any]]] = []
        self._flushes: set[asyncio.Task[None]] = set()  # strong references until done

    def hgetall(self, key: str) -> asyncio.Future[Any]:
        """Queue one HGETALL; the batch leaves on the loop's next tick."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((key, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_soon, loop)
        return future

    def _flush_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        task = loop.create_task(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: list[tuple[str, asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                replies: list[Any] = [await self._client.hgetall(batch[0][0])]
            else:
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, _ in batch:
                        pipe.hgetall(key)
                    replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, future in batch:
                if future.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its request was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
