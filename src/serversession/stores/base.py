"""The store contract: the smallest set of operations the lifecycle needs.

A store files sessions under storage keys (hashes of IDs, never IDs) and applies
:class:`~serversession.core.records.Commit` deltas atomically. It decides no
policy: a missing session is ``None`` or ``Outcome.MISSING``, not an error.
Errors are for failures of the store itself and are always
:class:`~serversession.exceptions.StoreError` (or its subclass
:class:`~serversession.exceptions.StoreUnavailableError`) with the driver's
exception as ``__cause__``.

Every store has a sync face (:class:`Store`) and an async face
(:class:`AsyncStore`, the same names with an ``a`` prefix). Stores whose work
never blocks (memory) implement both on one class; stores with a blocking driver
(SQLite) run it in a worker thread for the async face; stores with an async driver
(Redis) use it natively.

The per-user cap
----------------
A ``create``, ``commit`` or ``rotate`` whose commit indexes a user
(``Commit.index_user``, which the cap is about) may carry a
:class:`~serversession.core.records.UserCap` (``Commit.user_cap``). The store
then counts the user's *other* live sessions (not the key written, nor a
rotation's old key) and, if there are ``limit`` or more, in the same atomic step
as the write, either

* ends the least recently used of them (oldest ``last_seen_at``, the ``s``
  metadata field; ties by key) until the new one makes ``limit``, and answers
  OK with their keys in ``CommitResult.evicted``; or
* writes nothing and answers ``Outcome.REFUSED`` (``evict`` False).

"Atomic" means against every other write of any process sharing the store:
two concurrent writes indexing one user must not both count the same room.
Each store's module says how it makes it so, and ``docs/concurrency.md`` what
each guarantees (on a Redis Cluster the check follows the write by one round
trip: the cap holds once both finished).

An ended session is not deleted but replaced by an *ended marker* holding
``UserCap.reason`` and the session's expiry: ``load`` answers it as a
:class:`~serversession.core.records.StoredSession` whose ``ended`` is the reason
(no data), so the lifecycle can tell that browser why, in the one command a
load costs. A marker is no session: ``commit`` and ``rotate`` answer MISSING,
``delete`` False (it stays), ``list_user`` and ``scan`` skip it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from ..core.records import Commit, CommitResult, StoredSession


@runtime_checkable
class Store(Protocol):
    """Sync face of a session store."""

    #: Short name used in errors and metrics ("memory", "sqlite", "redis", ...).
    kind: str

    def load(self, key: str) -> StoredSession | None:
        """Return the live session under ``key``, or None (missing, expired, rotated away).

        An ended marker (see the module docs) loads as a ``StoredSession`` whose
        ``ended`` holds its reason.
        """

    def create(self, key: str, commit: Commit) -> CommitResult:
        """Store a new session from ``commit``: OK (truthy), TAKEN if a live record holds
        ``key``, REFUSED by its ``user_cap``; nothing is written unless OK.

        (Stores written when this answered True / False still work with the lifecycle.)
        """

    def commit(self, key: str, commit: Commit) -> CommitResult:
        """Apply ``commit`` atomically to the session under ``key`` if it still exists.

        MISSING, MOVED, CONFLICT (an ``expect`` failed) and REFUSED (its ``user_cap``)
        write nothing.
        """

    def rotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """Move the session to ``new_key`` with ``commit`` applied; leave a MOVED marker.

        The marker at ``old_key`` lives ``grace`` seconds and never loads. REFUSED
        (its ``user_cap``) leaves the session where it was.
        """

    def delete(self, key: str) -> bool:
        """Delete the session under ``key``; True if there was one."""

    def list_user(self, user: str) -> list[StoredSession]:
        """Return the sessions indexed under ``user`` (callers re-check user and expiry)."""

    def scan(self) -> Iterator[StoredSession]:
        """Iterate over every live session. Administrative use only, never per request."""

    def purge_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired sessions; return how many (0 with native TTLs)."""

    def ping(self) -> None:
        """Raise :class:`~serversession.exceptions.StoreUnavailableError` unless the store answers."""

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""


@runtime_checkable
class AsyncStore(Protocol):
    """Async face of a session store: :class:`Store` with ``a``-prefixed coroutines."""

    kind: str

    async def aload(self, key: str) -> StoredSession | None: ...
    async def acreate(self, key: str, commit: Commit) -> CommitResult: ...
    async def acommit(self, key: str, commit: Commit) -> CommitResult: ...
    async def arotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult: ...
    async def adelete(self, key: str) -> bool: ...
    async def alist_user(self, user: str) -> list[StoredSession]: ...
    async def apurge_expired(self, limit: int = 1000) -> int: ...
    async def aping(self) -> None: ...
    async def aclose(self) -> None: ...
