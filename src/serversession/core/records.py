"""The plain values that travel between the lifecycle core and a store.

A store is told *what* to do with these frozen records and answers with a
:class:`CommitResult`; it never decides policy. Data fields are JSON text per key
(see :mod:`.codec`), metadata fields are the short strings of
:func:`.codec.encode_meta`. Keys are storage keys (hashes), never session IDs.

The one rule a store carries out rather than the lifecycle is the per-user cap
(:class:`UserCap`): counting a user's live sessions and ending some must happen
in the same atomic step as indexing the new one, or concurrent sign-ins from
several processes would each see room for themselves.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .codec import SessionMeta

#: The data key that marks a session imported from another framework (``serversession
#: import``). Its value is JSON ``{"from": <source kind>, "expires_at": <Unix seconds>}``:
#: where it came from and when the incumbent would have ended it. The lifecycle
#: hides it from the application, accepts a record under a legacy-shaped ID only
#: when it carries it (and ``SessionConfig.accept_imported`` is on), and removes it
#: with the rotation that follows the first load. The leading control character
#: keeps it apart from any key an application writes through the usual API.
IMPORTED_KEY = "\x1fimported"


@dataclass(frozen=True, slots=True)
class StoredSession:
    """One session as read from a store: encoded data fields and decoded metadata.

    ``ended`` is set only on what :meth:`~serversession.stores.base.Store.load`
    returns for an *ended marker*: the record a store leaves in place of a
    session it ended itself to make room under a :class:`UserCap`. It holds the
    reason text (``UserCap.reason``), no data, and an empty ``meta``; it is no
    session (never listed, committed to or deleted) and lives as long as the
    ended session would have.
    """

    key: str
    data: Mapping[str, str]
    meta: SessionMeta
    ended: str | None = None


#: The metadata of an ended marker (it has none of its own).
NO_META = SessionMeta(created_at=0.0, last_seen_at=0.0)


def ended_marker(key: str, reason: str) -> StoredSession:
    """What a store's ``load`` returns for the ended marker under ``key``."""
    return StoredSession(key, {}, NO_META, ended=reason)


@dataclass(frozen=True, slots=True)
class UserCap:
    """The per-user session cap a store enforces as it indexes a user (``Commit.user_cap``).

    In the same atomic step as the commit, the store counts the *other* live
    sessions of ``Commit.index_user`` (the session being written, and for a
    rotation its old key, do not count). If there are ``limit`` or more, it
    either ends the least recently used of them (oldest ``last_seen_at``, ties by
    key) until this one makes ``limit`` (``evict``), leaving an ended marker
    holding ``reason`` in place of each and answering their keys in
    :attr:`CommitResult.evicted`; or writes nothing and answers
    :attr:`Outcome.REFUSED` (not ``evict``).
    """

    limit: int
    evict: bool = True
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Commit:
    """A change to one stored session, applied atomically by the store.

    * ``set_data`` / ``unset_data``: the data keys this request changed (a delta:
      keys changed concurrently by other requests are left alone);
    * ``meta``: metadata fields to overwrite (only those that changed);
    * ``expires_at``: the new store expiry (Unix seconds), or None to keep it;
    * ``index_user``: add the session to this user's index (on sign-in);
    * ``absolute_at``: the session's absolute deadline, sent along with
      ``index_user`` so a store can let index entries expire on their own;
    * ``expect``: compare-and-set guard, data key -> encoded value the request
      read (None: the key must be absent). The store applies the commit only if
      every key still holds exactly that text, else answers CONFLICT.
    * ``user_cap``: the per-user session cap to enforce atomically while
      indexing ``index_user`` (see :class:`UserCap`); ignored without one.
    """

    set_data: Mapping[str, str] = field(default_factory=dict)
    unset_data: frozenset[str] = frozenset()
    meta: Mapping[str, str] = field(default_factory=dict)
    expires_at: float | None = None
    index_user: str | None = None
    absolute_at: float | None = None
    expect: Mapping[str, str | None] | None = None
    user_cap: UserCap | None = None


class Outcome(enum.Enum):
    """How a store answered a commit or a rotation."""

    OK = "ok"
    #: No such session: it expired, was destroyed or revoked. Nothing was written.
    MISSING = "missing"
    #: The session was rotated; ``CommitResult.moved_to`` is its new storage key.
    MOVED = "moved"
    #: An ``expect`` guard failed; ``CommitResult.current`` holds the stored text.
    CONFLICT = "conflict"
    #: ``create`` only: the key is taken by a live record. Nothing was written.
    TAKEN = "taken"
    #: The commit's :class:`UserCap` refuses it: the user has ``limit`` other live
    #: sessions. Nothing was written.
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class CommitResult:
    """A store's answer to :class:`Commit` (see :class:`Outcome`).

    ``evicted``: the storage keys of the sessions the store ended to make room
    under ``Commit.user_cap`` (OK only). Truthy only when OK, so
    ``if store.create(key, commit):`` reads as it did when ``create`` answered a bool.
    """

    outcome: Outcome
    moved_to: str | None = None
    current: Mapping[str, str | None] | None = None
    evicted: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.outcome is Outcome.OK


COMMITTED = CommitResult(Outcome.OK)
MISSING = CommitResult(Outcome.MISSING)
TAKEN = CommitResult(Outcome.TAKEN)
REFUSED = CommitResult(Outcome.REFUSED)


def committed(evicted: Iterable[str] = ()) -> CommitResult:
    """OK, with the keys a :class:`UserCap` evicted (the shared :data:`COMMITTED` when none)."""
    keys = tuple(evicted)
    return CommitResult(Outcome.OK, evicted=keys) if keys else COMMITTED


def least_recently_used(sessions: Iterable[tuple[float, str]], cap: UserCap) -> list[str] | None:
    """Which of a user's other live sessions, as (last_seen_at, key), a cap ends to make
    room for one more: the oldest first; ``[]`` when there is room, None to refuse.

    For the stores that decide in Python inside their own atomic step (memory,
    SQLite, PostgreSQL; the Redis scripts do the same in Lua).
    """
    ordered = sorted(sessions)
    over = len(ordered) + 1 - cap.limit
    if over <= 0:
        return []
    if not cap.evict:
        return None
    return [key for _, key in ordered[:over]]


def checked_expiry(expires_at: float) -> float:
    """``expires_at`` if a store may keep it: NaN compares false with every time, so
    a NaN expiry would never pass (an immortal session) and every store refuses it."""
    if math.isnan(expires_at):
        raise ValueError("a session's expiry cannot be NaN")
    return expires_at


def apply_commit(data: dict[str, str], meta: dict[str, str], commit: Commit) -> CommitResult | None:
    """Apply ``commit`` to in-memory copies of a record, for stores that can.

    Returns a CONFLICT result (and changes nothing) when an ``expect`` guard
    fails, else None after applying. Shared by the stores that merge in Python
    inside their own transaction (memory, SQLite, PostgreSQL).
    """
    if commit.expect:
        current = {k: data.get(k) for k in commit.expect}
        if current != dict(commit.expect):
            return CommitResult(Outcome.CONFLICT, current=current)
    data.update(commit.set_data)
    for k in commit.unset_data:
        data.pop(k, None)
    meta.update(commit.meta)
    return None
