"""The plain values that travel between the lifecycle core and a store.

A store is told *what* to do with these frozen records and answers with a
:class:`CommitResult`; it never decides policy. Data fields are JSON text per key
(see :mod:`.codec`), metadata fields are the short strings of
:func:`.codec.encode_meta`. Keys are storage keys (hashes), never session IDs.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from .codec import SessionMeta


@dataclass(frozen=True, slots=True)
class StoredSession:
    """One session as read from a store: encoded data fields and decoded metadata."""

    key: str
    data: Mapping[str, str]
    meta: SessionMeta


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
    """

    set_data: Mapping[str, str] = field(default_factory=dict)
    unset_data: frozenset[str] = frozenset()
    meta: Mapping[str, str] = field(default_factory=dict)
    expires_at: float | None = None
    index_user: str | None = None
    absolute_at: float | None = None
    expect: Mapping[str, str | None] | None = None


class Outcome(enum.Enum):
    """How a store answered a commit or a rotation."""

    OK = "ok"
    #: No such session: it expired, was destroyed or revoked. Nothing was written.
    MISSING = "missing"
    #: The session was rotated; ``CommitResult.moved_to`` is its new storage key.
    MOVED = "moved"
    #: An ``expect`` guard failed; ``CommitResult.current`` holds the stored text.
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class CommitResult:
    """A store's answer to :class:`Commit` (see :class:`Outcome`)."""

    outcome: Outcome
    moved_to: str | None = None
    current: Mapping[str, str | None] | None = None


COMMITTED = CommitResult(Outcome.OK)
MISSING = CommitResult(Outcome.MISSING)


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
