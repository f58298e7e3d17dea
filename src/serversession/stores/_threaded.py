"""The async face of a store whose driver blocks: each call runs in a worker thread.

This is the one place serversession hops threads, and only for blocking drivers
(SQLite). The event loop never waits on disk or locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from ..core.records import Commit, CommitResult, StoredSession


class ThreadedAsyncFace:
    """Mixin: ``a``-prefixed coroutines that run the sync methods in a thread."""

    def load(self, key: str) -> StoredSession | None:
        raise NotImplementedError

    def create(self, key: str, commit: Commit) -> CommitResult:
        raise NotImplementedError

    def commit(self, key: str, commit: Commit) -> CommitResult:
        raise NotImplementedError

    def rotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        raise NotImplementedError

    def delete(self, key: str) -> bool:
        raise NotImplementedError

    def list_user(self, user: str) -> list[StoredSession]:
        raise NotImplementedError

    def scan(self) -> Iterator[StoredSession]:
        raise NotImplementedError

    def purge_expired(self, limit: int = 1000) -> int:
        raise NotImplementedError

    def ping(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def aload(self, key: str) -> StoredSession | None:
        """Async :meth:`load`, in a worker thread."""
        return await asyncio.to_thread(self.load, key)

    async def acreate(self, key: str, commit: Commit) -> CommitResult:
        """Async :meth:`create`, in a worker thread."""
        return await asyncio.to_thread(self.create, key, commit)

    async def acommit(self, key: str, commit: Commit) -> CommitResult:
        """Async :meth:`commit`, in a worker thread."""
        return await asyncio.to_thread(self.commit, key, commit)

    async def arotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """Async :meth:`rotate`, in a worker thread."""
        return await asyncio.to_thread(self.rotate, old_key, new_key, commit, grace)

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`, in a worker thread."""
        return await asyncio.to_thread(self.delete, key)

    async def alist_user(self, user: str) -> list[StoredSession]:
        """Async :meth:`list_user`, in a worker thread."""
        return await asyncio.to_thread(self.list_user, user)

    async def apurge_expired(self, limit: int = 1000) -> int:
        """Async :meth:`purge_expired`, in a worker thread."""
        return await asyncio.to_thread(self.purge_expired, limit)

    async def aping(self) -> None:
        """Async :meth:`ping`, in a worker thread."""
        await asyncio.to_thread(self.ping)

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()
