"""The SQLite store's async writes: one writer thread per process, fed in order.

Why: the async face otherwise runs every write through ``asyncio.to_thread``,
whose pool threads then wait in line for the write lock (see
:mod:`._sqlite_lock`) while holding a pool thread each, so loads queue behind
them and every waiting thread competes for the GIL when its turn comes. Handing
the writes to one thread keeps them in arrival order on one connection, frees
the pool for loads, and leaves the write lock uncontended inside the process.
Measured with benchmarks/write_tail.py (one demo process, quiet machine): about
15-25 % more cart adds per second than the pool, with the same or a lower p99.

The thread is started on the first async write, not before (a server that forks
its workers after building the store must not fork a running thread), and
again in a forked child, which never touches the one it inherited. ``drain``
(called by the store's ``close()``) lets every write already handed over
commit, then ends the thread; a later write starts a new one.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..core.records import Commit, CommitResult
from ._threaded import ThreadedAsyncFace

T = TypeVar("T")


class WriterThread:
    """One thread that runs the store's async writes, one after another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._executor: ThreadPoolExecutor | None = None

    def _mine(self) -> None:
        if self._pid != os.getpid():  # a forked child: the parent's thread is not here
            self._executor, self._pid, self._lock = None, os.getpid(), threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the writer thread, after the writes handed over before it."""
        self._mine()
        with self._lock:  # never onto an executor that ``drain`` has begun to shut down
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="serversession-sqlite-writer")
            future = self._executor.submit(fn, *args)
        return await asyncio.wrap_future(future)

    def drain(self, *, wait: bool = True) -> None:
        """Let the writes handed over so far finish (``wait``), then end the thread."""
        self._mine()  # a forked child drains only a thread of its own
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait)


class WriterThreadFace(ThreadedAsyncFace):
    """Mixin: the async face of a store whose writes go to ``self._writer`` (reads and
    the rest stay on :class:`ThreadedAsyncFace`'s worker threads)."""

    _writer: WriterThread

    async def acreate(self, key: str, commit: Commit) -> CommitResult:
        """Async :meth:`create`, on the store's writer thread."""
        return await self._writer.run(self.create, key, commit)

    async def acommit(self, key: str, commit: Commit) -> CommitResult:
        """Async :meth:`commit`, on the store's writer thread."""
        return await self._writer.run(self.commit, key, commit)

    async def arotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """Async :meth:`rotate`, on the store's writer thread."""
        return await self._writer.run(self.rotate, old_key, new_key, commit, grace)

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`, on the store's writer thread."""
        return await self._writer.run(self.delete, key)

    async def apurge_expired(self, limit: int = 1000) -> int:
        """Async :meth:`purge_expired`, on the store's writer thread."""
        return await self._writer.run(self.purge_expired, limit)

    async def aclose(self) -> None:
        """Async :meth:`close`, in a worker thread: it waits for the queued writes."""
        await asyncio.to_thread(self.close)
