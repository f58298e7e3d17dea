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

Three guards keep one request's trouble its own. A reply the pipeline cannot
capture per command (undecodable bytes written by another client) makes the
batch fall back to one load at a time, so only that key's request fails; a
connection failure or timeout still fails the batch at once, as it would each
load. A pipeline carries at most :attr:`LoadBatcher.max_batch` keys, so one
huge batch does not meet a server's output-buffer limit on its own (a key
count cannot bound bytes: very large sessions can still reach such a limit).
Pending loads are kept per event loop, so a loop that stopped before its next
tick cannot leave a batch behind that blocks the loads of another loop.
"""


from __future__ import annotations

import asyncio
import weakref
from typing import Any

import redis

#: Failures that hit the connection, hence every load in its pipeline alike.
_WHOLE_BATCH = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

_Batch = list[tuple[str, "asyncio.Future[Any]"]]


class LoadBatcher:
    """Per async client: ``await batcher.hgetall(key)`` behaves like ``client.hgetall(key)``."""

    #: Keys per pipeline at most; a tick with more sends several pipelines.
    max_batch = 128

    def __init__(self, client: Any) -> None:
        self._client = client
        self._pending: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batch] = weakref.WeakKeyDictionary()
        self._flushes: set[asyncio.Task[None]] = set()  # strong references until done

    def hgetall(self, key: str) -> asyncio.Future[Any]:
        """Queue one HGETALL; the batch leaves on the loop's next tick."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush_soon, loop)
        pending.append((key, future))
        return future

    def _flush_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        for start in range(0, len(batch), self.max_batch):
            task = loop.create_task(self._flush(batch[start : start + self.max_batch]))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self, batch: _Batch) -> None:
        try:
            if len(batch) == 1:
                replies: list[Any] = [await self._client.hgetall(batch[0][0])]
            else:
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, _ in batch:
                        pipe.hgetall(key)
                    replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            if len(batch) > 1 and isinstance(exc, Exception) and not isinstance(exc, _WHOLE_BATCH):
                await self._one_at_a_time(batch)  # loads are idempotent: find the one that fails
                return
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

    async def _one_at_a_time(self, batch: _Batch) -> None:
        for key, future in batch:
            if future.done():
                continue
            try:
                reply = await self._client.hgetall(key)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(reply)
