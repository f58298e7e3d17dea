"""``memory://``: sessions in this process's memory.

For development, tests and single-process apps. Thread-safe (one lock, held only
for dictionary work). Both faces live on one class: nothing here blocks, so the
async methods call the sync ones directly, with no thread hop.

Expiry uses one-second buckets (a timing wheel): each session sits in the bucket
of its expiry second, and a sweep empties only the buckets whose second has
passed. Its cost follows the number of sessions expiring, not the number alive.
Sweeps run opportunistically on writes, so an idle store simply keeps its memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from ..core.codec import SessionMeta, decode_meta
from ..core.records import COMMITTED, MISSING, Commit, CommitResult, Outcome, StoredSession, apply_commit


class _Entry:
    """One stored session. ``data`` and ``meta`` are replaced, never mutated in
    place (copy-on-write), so a loaded session can share them without a copy."""

    __slots__ = ("data", "decoded", "expires_at", "meta", "moved_to")

    def __init__(self, data: dict[str, str], meta: dict[str, str], expires_at: float) -> None:
        self.data = data
        self.meta = meta
        self.expires_at = expires_at
        self.moved_to: str | None = None
        self.decoded: SessionMeta | None = None

    def stored(self, key: str) -> StoredSession:
        if self.decoded is None:
            self.decoded = decode_meta(self.meta)
        return StoredSession(key, self.data, self.decoded)


class MemoryStore:
    """In-process store implementing both :class:`Store` and :class:`AsyncStore`.

    ``clock`` (``time.time``) is injectable for tests.
    """

    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._users: dict[str, set[str]] = {}
        self._buckets: dict[int, set[str]] = {}
        self._swept_to = int(clock())

    # -- internals (called with the lock held) --------------------------------
    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires_at <= now:
            return None
        return entry

    def _schedule(self, key: str, entry: _Entry, expires_at: float) -> None:
        old = self._buckets.get(int(entry.expires_at))
        if old is not None:
            old.discard(key)
        entry.expires_at = expires_at
        self._buckets.setdefault(int(expires_at), set()).add(key)

    def _remove(self, key: str) -> _Entry | None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            bucket = self._buckets.get(int(entry.expires_at))
            if bucket is not None:
                bucket.discard(key)
            user = entry.meta.get("u")
            if user and user in self._users:
                self._users[user].discard(key)
                if not self._users[user]:
                    del self._users[user]
        return entry

    def _index(self, key: str, user: str | None) -> None:
        if user:
            self._users.setdefault(user, set()).add(key)

    def _sweep(self, now: float, limit: int) -> int:
        removed = 0
        second = int(now)
        while self._swept_to < second and removed < limit:
            bucket = self._buckets.pop(self._swept_to, None)
            self._swept_to += 1
            for key in bucket or ():
                self._remove(key)
                removed += 1
        return removed

    # -- sync face ------------------------------------------------------------
    def load(self, key: str) -> StoredSession | None:
        """See :meth:`Store.load`."""
        with self._lock:
            entry = self._live(key, self._clock())
            if entry is None or entry.moved_to is not None:
                return None
            return entry.stored(key)

    def create(self, key: str, commit: Commit) -> bool:
        """See :meth:`Store.create`."""
        now = self._clock()
        with self._lock:
            self._sweep(now, 100)
            if self._live(key, now) is not None:
                return False
            entry = _Entry(dict(commit.set_data), dict(commit.meta), 0.0)
            self._entries[key] = entry
            self._schedule(key, entry, commit.expires_at or now)
            self._index(key, commit.index_user)
            return True

    def commit(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`Store.commit`."""
        with self._lock:
            entry = self._live(key, self._clock())
            if entry is None:
                return MISSING
            if entry.moved_to is not None:
                return CommitResult(Outcome.MOVED, moved_to=entry.moved_to)
            data, meta = dict(entry.data), dict(entry.meta)
            conflict = apply_commit(data, meta, commit)
            if conflict is not None:
                return conflict
            entry.data, entry.meta, entry.decoded = data, meta, None
            if commit.expires_at is not None:
                self._schedule(key, entry, commit.expires_at)
            self._index(key, commit.index_user)
            return COMMITTED

    def rotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """See :meth:`Store.rotate`."""
        now = self._clock()
        with self._lock:
            old = self._live(old_key, now)
            if old is None:
                return MISSING
            if old.moved_to is not None:
                return CommitResult(Outcome.MOVED, moved_to=old.moved_to)
            data, meta = dict(old.data), dict(old.meta)
            apply_commit(data, meta, Commit(commit.set_data, commit.unset_data, commit.meta))
            self._remove(old_key)
            entry = _Entry(data, meta, 0.0)
            self._entries[new_key] = entry
            self._schedule(new_key, entry, commit.expires_at or now)
            self._index(new_key, meta.get("u"))
            marker = _Entry({}, {}, 0.0)
            marker.moved_to = new_key
            self._entries[old_key] = marker
            self._schedule(old_key, marker, now + grace)
            return COMMITTED

    def delete(self, key: str) -> bool:
        """See :meth:`Store.delete`."""
        with self._lock:
            entry = self._live(key, self._clock())
            if entry is None or entry.moved_to is not None:
                return False  # a rotation marker stays: in-flight writes must still follow it
            self._remove(key)
            return True

    def list_user(self, user: str) -> list[StoredSession]:
        """See :meth:`Store.list_user`."""
        now = self._clock()
        with self._lock:
            found = []
            for key in list(self._users.get(user, ())):
                entry = self._live(key, now)
                if entry is None or entry.meta.get("u") != user:
                    self._users[user].discard(key)
                    continue
                found.append(entry.stored(key))
            return found

    def scan(self) -> Iterator[StoredSession]:
        """See :meth:`Store.scan`."""
        now = self._clock()
        with self._lock:
            items = [(k, e) for k, e in self._entries.items() if e.moved_to is None and e.expires_at > now]
        for key, entry in items:
            yield entry.stored(key)

    def purge_expired(self, limit: int = 1000) -> int:
        """See :meth:`Store.purge_expired`."""
        with self._lock:
            return self._sweep(self._clock(), limit)

    def ping(self) -> None:
        """Always answers: memory is never down."""

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._entries)

    # -- async face: the same work, nothing blocks ----------------------------------
    async def aload(self, key: str) -> StoredSession | None:
        """See :meth:`AsyncStore.aload`."""
        return self.load(key)

    async def acreate(self, key: str, commit: Commit) -> bool:
        """See :meth:`AsyncStore.acreate`."""
        return self.create(key, commit)

    async def acommit(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`AsyncStore.acommit`."""
        return self.commit(key, commit)

    async def arotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """See :meth:`AsyncStore.arotate`."""
        return self.rotate(old_key, new_key, commit, grace)

    async def adelete(self, key: str) -> bool:
        """See :meth:`AsyncStore.adelete`."""
        return self.delete(key)

    async def alist_user(self, user: str) -> list[StoredSession]:
        """See :meth:`AsyncStore.alist_user`."""
        return self.list_user(user)

    async def apurge_expired(self, limit: int = 1000) -> int:
        """See :meth:`AsyncStore.apurge_expired`."""
        return self.purge_expired(limit)

    async def aping(self) -> None:
        """See :meth:`AsyncStore.aping`."""

    async def aclose(self) -> None:
        """See :meth:`AsyncStore.aclose`."""


__all__ = ["MemoryStore"]
