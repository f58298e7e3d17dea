"""``memory://``: sessions in this process's memory.

For development, tests and single-process apps. Thread-safe (one lock, held for
dictionary work and for packing the one record a write changes; a load unpacks
outside it). Both faces live on one class: nothing here blocks, so the async
methods call the sync ones directly, with no thread hop.

Layout, and why
---------------
A session should cost little more than its data. Kept as an object holding two
dicts of strings, it cost 1,327 B beyond its 40 B of data (1,000,000 sessions,
CPython 3.11, ``python -m benchmarks.scale memory 1000000 100``): every small
Python object carries 40-60 B of header, and a session was a dozen of them. Now
it is two objects and a dictionary slot, 268 B beyond the data:

* the **key**: the storage key encoded to ``bytes``, 76 B, which the allocator
  rounds up to 80 (the ``str`` took 96). Decoding its base64 to the 32 raw bytes
  would save nothing: 65 B rounds up to 80 as well;
* the **record**: one ``bytes``, 176 B with the benchmark's data. It opens with
  the expiry (8 B, read without unpacking the rest), then :mod:`marshal` of a
  flat tuple: the seven metadata fields (nine when the app set an expiry on the
  session, ten with the authentication time of a signed-in session: leaving the
  optional ones out keeps the common, anonymous record in its 176 B allocator
  size class, where two more bytes cost 16), then the data dict. Timestamps are
  floats (9 B, not 16 of text); empty fields are None (1 B); the User-Agent,
  100-150 B and the same for many sessions, is an index into a bounded
  :class:`_StringTable` (5 B);
* the **dictionary slot** (~42 B at a million entries) and one reference in a
  timing-wheel bucket (~9 B).

The price is paid on load, which unpacks the record and builds the
:class:`SessionMeta` (~1.9 µs more than handing out kept objects: 360,000 loads
a second instead of 1,125,000 in ``benchmarks/stores.py``; building the frozen
SessionMeta is 0.8 µs of it), and on writes, which repack it (150,000 saves a
second instead of 262,000). :mod:`marshal` rather than JSON: for this record it is 131 B where
JSON is 170, and unpacks in 0.7 µs where :func:`json.loads` takes 2.4. It is
safe here because a record never leaves the process: nothing reads one but this
module, in the interpreter that wrote it.

Expiry
------
One-second buckets (a timing wheel): each key is filed under a second no later
than its expiry, and a sweep visits only the buckets whose second has passed, so
its cost follows the sessions expiring, not the sessions alive. Nothing is taken
out of a bucket early, so buckets are lists (~9 B a key; a set entry cost ~66).
A sweep removes the sessions it finds expired, files again those renewed since
(under their new second) and skips the keys already deleted. So a renewal never
touches the wheel, and a session has one reference in it, to the same key object
as the dictionary's. A commit that moves an expiry earlier leaves the key where
it is: the session is dead to loads from its new expiry and purged by its old
one at the latest. Nothing is ever filed under a second already swept: that
bucket is never visited again, and its sessions would never be purged.
Sweeps run opportunistically on writes, so an idle store simply keeps its memory.

Per-user cap
------------
A write carrying a :class:`~serversession.core.records.UserCap` counts the user's
other live sessions through the user index and ends the least recently used
under the same lock as the write itself, so it is atomic for every thread of
the process (a memory store is never shared between processes). An ended
session's record becomes an *ended marker*: its expiry stays (the wheel already
has it), its body becomes ``[reason]``.
"""

from __future__ import annotations

import marshal
import math
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ..core.codec import SessionMeta
from ..core.records import (
    MISSING,
    REFUSED,
    TAKEN,
    Commit,
    CommitResult,
    Outcome,
    StoredSession,
    UserCap,
    apply_commit,
    checked_expiry,
    committed,
    ended_marker,
    least_recently_used,
)
from ..exceptions import CorruptRecordError

#: A record opens with its expiry (Unix seconds), readable without unmarshalling the rest.
_HEAD = struct.Struct("<d")
#: The metadata fields a record keeps, in the order of :class:`SessionMeta` (the codec's short names):
#: seven always, the expiry an app set (``l``, ``e``) when set or when the authentication time (``t``,
#: a signed-in session) follows.
_META = ("c", "s", "u", "a", "i", "p", "x", "l", "e", "t")
_ALWAYS = 7
#: How many distinct User-Agents a store keeps in its table, and the longest it keeps
#: (the core's default ``max_user_agent``): ~1.5 MB at most.
_USER_AGENTS_KEPT = 4096
_USER_AGENT_LONGEST = 256


class _StringTable:
    """Repeated strings (User-Agents) stored once, referred to by index.

    A record then holds a small int (5 B marshalled) instead of the string, and
    every session with that User-Agent shares one ``str``. The table only grows
    (records hold its indexes) and stops at ``limit`` strings of at most
    ``longest`` characters; other strings stay inline in their records: correct,
    only bigger. Its writer holds the store's lock; readers only index a list
    that never shrinks.
    """

    def __init__(self, limit: int, longest: int) -> None:
        self.limit = limit
        self.longest = longest
        self._strings: list[str] = []
        self._indexes: dict[str, int] = {}

    def ref(self, value: Any) -> int | str | None:
        """What a record keeps for ``value`` (text, or what this returned before): an
        index, the string itself (not kept in the table) or None (empty)."""
        if value is None or isinstance(value, int):
            return value
        text: str = value
        if not text:
            return None
        index = self._indexes.get(text)
        if index is None:
            if len(self._strings) >= self.limit or len(text) > self.longest:
                return text
            index = self._indexes[text] = len(self._strings)
            self._strings.append(text)
        return index

    def get(self, ref: int | str | None) -> str:
        """The string a record's ``ref`` stands for."""
        if ref is None:
            return ""
        return self._strings[ref] if isinstance(ref, int) else ref

    def __len__(self) -> int:
        return len(self._strings)


def _expiry(record: bytes) -> float:
    expires_at: float = _HEAD.unpack_from(record)[0]
    return expires_at


def _unpack(record: bytes) -> Any:
    """A record's body: a tuple (a session), a str (a rotation marker: the new key) or
    a list (an ended marker: ``[reason]``)."""
    return marshal.loads(record[_HEAD.size :])  # noqa: S302 - only ever bytes this module wrote


def _editable(body: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, str]]:
    """A session body as fresh (meta, data) dicts for :func:`apply_commit`."""
    return dict(zip(_META, body[:-1], strict=False)), body[-1]


def _dumps(body: Any) -> bytes:
    try:
        return marshal.dumps(body)
    except ValueError:  # marshal takes exact types only: a str subclass (a StrEnum key) becomes a str
        return marshal.dumps(_plain(body))


def _plain(value: Any) -> Any:
    """``value`` with every str subclass in it turned into a plain str."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, tuple):
        return tuple(map(_plain, value))
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def _timestamp(value: Any) -> Any:
    """A timestamp field as a float; left as it is when it is not a finite number,
    so that loading the record reports it corrupt (as :func:`decode_meta` does)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return number if math.isfinite(number) else value


def _optional(value: Any) -> Any:
    """An optional number field (the expiry an app set, the authentication time) as a float,
    or None when empty."""
    return None if value is None or value == "" else _timestamp(value)


def _key(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")  # any str round-trips


class MemoryStore:
    """In-process store implementing both :class:`Store` and :class:`AsyncStore`.

    Each session is one packed ``bytes`` record (176 B for a small session) under
    its key as ``bytes`` (80 B): 268 B a session beyond its data at a million,
    where objects and dicts of strings took 1,327 (see the module docstring). A
    rotation marker is a record whose body is the new key (96 B). ``clock``
    (``time.time``) is injectable for tests.
    """

    kind = "memory"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[bytes, bytes] = {}
        self._users: dict[str, set[bytes]] = {}
        self._buckets: dict[int, list[bytes]] = {}
        self._swept_to = int(clock())  # every bucket before this second has been swept
        self._user_agents = _StringTable(_USER_AGENTS_KEPT, _USER_AGENT_LONGEST)

    # -- records ------------------------------------------------------------------
    def _pack(self, expires_at: float, meta: Mapping[str, Any], data: Mapping[str, str]) -> bytes:
        """One session's record (lock held: the User-Agent table may grow). ``meta`` holds
        the codec's text, or an earlier record's packed values with a commit's text over them."""
        c, s, u, a, i, p, x, limit, end, t = map(meta.get, _META)
        fields: tuple[Any, ...] = (_timestamp(c), _timestamp(s), u or None, self._user_agents.ref(a), i or None,
                                   bool(p), x or None)  # fmt: skip
        limits, auth = (_optional(limit), _optional(end)), _optional(t)
        if auth is not None:  # anonymous sessions have none
            fields += (*limits, auth)
        elif limits != (None, None):  # most sessions have none (see the module docstring)
            fields += limits
        return _HEAD.pack(expires_at) + _dumps((*fields, dict(data)))

    def _session(self, key: str, body: tuple[Any, ...]) -> StoredSession:
        """A session from its record's body, by :func:`decode_meta`'s rules: applied
        to the packed fields they take ~1 µs, where decode_meta on text takes 2.2."""
        size = len(body)
        if size == _ALWAYS + 1:
            c, s, u, a, i, p, x, data = body
            t = limit = end = None
        elif size == _ALWAYS + 3:
            c, s, u, a, i, p, x, limit, end, data = body
            t = None
        else:
            c, s, u, a, i, p, x, limit, end, t, data = body
        if type(c) is not float or type(s) is not float:
            raise CorruptRecordError("a stored session has no valid timestamps", operation="load")
        if not ((t is None or type(t) is float) and (limit is None or type(limit) is float)
                and (end is None or type(end) is float)):  # fmt: skip
            raise CorruptRecordError("a stored session's expiry or authentication time is not a finite number",
                                     operation="load")  # fmt: skip
        meta = SessionMeta(c, s, u, self._user_agents.get(a), i or "", p, x or "", limit, end, t)
        return StoredSession(key, data, meta)

    # -- internals (called with the lock held) --------------------------------------
    def _live(self, k: bytes, now: float) -> bytes | None:
        record = self._records.get(k)
        if record is None or _expiry(record) <= now:
            return None
        return record

    def _file(self, k: bytes, expires_at: float) -> None:
        if expires_at == math.inf:
            return  # never expires (infinite timeouts): nothing to purge
        # A second already swept is never visited again: file no earlier than the next one.
        second = self._swept_to if expires_at == -math.inf else max(int(expires_at), self._swept_to)
        self._buckets.setdefault(second, []).append(k)

    def _remove(self, k: bytes) -> None:
        record = self._records.pop(k, None)
        if record is None or not self._users:
            return
        body = _unpack(record)  # the user's index is found through the record
        if isinstance(body, tuple):
            self._unindex(k, body[2])

    def _unindex(self, k: bytes, user: str | None) -> None:
        keys = self._users.get(user) if user else None
        if keys is not None:
            keys.discard(k)
            if not keys:
                del self._users[user]  # type: ignore[arg-type]

    def _index(self, k: bytes, user: str | None) -> None:
        if user:
            self._users.setdefault(user, set()).add(k)

    def _make_room(self, user: str | None, cap: UserCap | None, now: float, *keep: bytes) -> list[str] | None:
        """Enforce ``cap`` for one more session of ``user`` (``keep`` aside): end the least
        recently used others and return their keys, or None to refuse (nothing changed)."""
        if cap is None or not user:
            return []
        others = []
        for k in self._users.get(user, ()):
            record = None if k in keep else self._live(k, now)
            body = None if record is None else _unpack(record)
            if isinstance(body, tuple) and body[2] == user:
                others.append((body[1], k.decode("utf-8", "surrogatepass")))
        chosen = least_recently_used(others, cap)
        for key in chosen or ():
            k = _key(key)
            self._records[k] = self._records[k][: _HEAD.size] + _dumps([cap.reason])  # same expiry, already filed
            self._unindex(k, user)
        return chosen

    def _sweep(self, now: float, limit: int) -> int:
        """Purge at most ``limit`` sessions that expired before ``now``.

        Visits the buckets of the seconds passed since the last sweep, one second
        after another; after a long idle spell or a clock jump (a machine booting
        at 1970 then set by NTP) only the seconds that have a bucket, so the lock
        is never held for a walk over millions of empty seconds.
        """
        end = int(now)
        if end <= self._swept_to:
            return 0
        seconds: Iterable[int]
        if end - self._swept_to > len(self._buckets):
            seconds = sorted(b for b in self._buckets if b < end)
        else:
            seconds = range(self._swept_to, end)
        removed = 0
        for second in seconds:
            keys = self._buckets.pop(second, None) or []
            for i, k in enumerate(keys):
                if removed >= limit:
                    self._buckets[second] = keys[i:]  # the rest waits for the next sweep
                    self._swept_to = second
                    return removed
                record = self._records.get(k)
                if record is None:
                    continue  # deleted (or filed twice and already purged)
                expires_at = _expiry(record)
                if expires_at <= now:
                    self._remove(k)
                    removed += 1
                else:
                    self._file(k, expires_at)  # renewed since it was filed: lands at int(expiry) >= end
        self._swept_to = end
        return removed

    # -- sync face ------------------------------------------------------------------
    def load(self, key: str) -> StoredSession | None:
        """See :meth:`Store.load`."""
        k = _key(key)
        with self._lock:
            record = self._live(k, self._clock())
        if record is None:
            return None
        body = _unpack(record)
        if isinstance(body, list):
            return ended_marker(key, body[0])
        return None if isinstance(body, str) else self._session(key, body)

    def create(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`Store.create`."""
        k, now = _key(key), self._clock()
        expires_at = checked_expiry(commit.expires_at or now)
        with self._lock:
            self._sweep(now, 100)
            if self._live(k, now) is not None:
                return TAKEN
            evicted = self._make_room(commit.index_user, commit.user_cap, now, k)
            if evicted is None:
                return REFUSED
            self._remove(k)  # an expired record not yet purged
            self._records[k] = self._pack(expires_at, commit.meta, commit.set_data)
            self._file(k, expires_at)
            self._index(k, commit.index_user)
            return committed(evicted)

    def commit(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`Store.commit`."""
        k, now = _key(key), self._clock()
        with self._lock:
            record = self._live(k, now)
            if record is None:
                return MISSING
            body = _unpack(record)
            if isinstance(body, str):
                return CommitResult(Outcome.MOVED, moved_to=body)
            if not isinstance(body, tuple):
                return MISSING  # an ended marker
            meta, data = _editable(body)
            conflict = apply_commit(data, meta, commit)
            if conflict is not None:
                return conflict
            evicted = self._make_room(commit.index_user, commit.user_cap, now, k)
            if evicted is None:
                return REFUSED
            expires_at = _expiry(record) if commit.expires_at is None else checked_expiry(commit.expires_at)
            self._records[k] = self._pack(expires_at, meta, data)  # the wheel finds a later expiry itself
            if body[2] and body[2] != (meta.get("u") or None):
                self._unindex(k, body[2])  # signed out, or bound to someone else, without a rotation
            self._index(k, commit.index_user)
            return committed(evicted)

    def rotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """See :meth:`Store.rotate`."""
        old, new, now = _key(old_key), _key(new_key), self._clock()
        expires_at = checked_expiry(commit.expires_at or now)
        with self._lock:
            record = self._live(old, now)
            if record is None:
                return MISSING
            body = _unpack(record)
            if isinstance(body, str):
                return CommitResult(Outcome.MOVED, moved_to=body)
            if not isinstance(body, tuple):
                return MISSING  # an ended marker
            meta, data = _editable(body)
            apply_commit(data, meta, Commit(commit.set_data, commit.unset_data, commit.meta))
            evicted = self._make_room(commit.index_user, commit.user_cap, now, old, new)
            if evicted is None:
                return REFUSED
            self._remove(old)
            self._records[new] = self._pack(expires_at, meta, data)
            self._file(new, expires_at)
            self._index(new, meta.get("u"))
            self._records[old] = _HEAD.pack(now + grace) + _dumps(new_key)
            self._file(old, now + grace)
            return committed(evicted)

    def delete(self, key: str) -> bool:
        """See :meth:`Store.delete`."""
        k = _key(key)
        with self._lock:
            record = self._live(k, self._clock())
            if record is None or not isinstance(_unpack(record), tuple):
                return False  # a rotation marker stays (in-flight writes must still follow it), an ended one too
            self._remove(k)
            return True

    def list_user(self, user: str) -> list[StoredSession]:
        """See :meth:`Store.list_user`."""
        now = self._clock()
        with self._lock:
            keys = self._users.get(user, set())
            found = []
            for k in list(keys):
                record = self._records.get(k)
                body = None if record is None else _unpack(record)
                if not isinstance(body, tuple) or body[2] != user:
                    keys.discard(k)  # gone, rotated away or someone else's now
                    continue
                if _expiry(record) > now:  # type: ignore[arg-type]
                    found.append((k, body))  # an expired one stays indexed until it is purged
            if not keys:
                self._users.pop(user, None)
        return [self._session(k.decode("utf-8", "surrogatepass"), body) for k, body in found]

    def scan(self) -> Iterator[StoredSession]:
        """See :meth:`Store.scan`."""
        now = self._clock()
        with self._lock:
            items = [(k, r) for k, r in self._records.items() if _expiry(r) > now]
        for k, record in items:
            body = _unpack(record)
            if isinstance(body, tuple):
                yield self._session(k.decode("utf-8", "surrogatepass"), body)

    def purge_expired(self, limit: int = 1000) -> int:
        """See :meth:`Store.purge_expired`."""
        with self._lock:
            return self._sweep(self._clock(), limit)

    def ping(self) -> None:
        """Always answers: memory is never down."""

    def close(self) -> None:
        """Nothing to release."""

    def __len__(self) -> int:
        return len(self._records)

    # -- async face: the same work, nothing blocks ----------------------------------
    async def aload(self, key: str) -> StoredSession | None:
        """See :meth:`AsyncStore.aload`."""
        return self.load(key)

    async def acreate(self, key: str, commit: Commit) -> CommitResult:
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
