"""The near cache's memory: a bounded LRU of session records, and the rules that keep it honest.

This module does no I/O. It holds what a process has read, and it is told by
:mod:`._near_listener` what changed elsewhere. Its rules:

1. **Nothing is served unless tracking is on.** :meth:`NearEntries.activate` is
   called only once every invalidation connection has tracking enabled; until
   then, and from the moment one of them is lost, every lookup misses and every
   fill is dropped (:meth:`NearEntries.deactivate` empties the cache).
2. **A read in flight cannot cache a value an invalidation has overtaken.** A
   read takes a :class:`Ticket` *before* its command is sent. An invalidation of
   that key (or a flush, or the loss of tracking) that arrives before the reply
   marks the ticket stale, and :meth:`NearEntries.fill` then drops the reply
   instead of caching it. Without this, the reply of a read the server answered
   just before another process's write could land after that write's
   invalidation had found nothing to evict, and stay stale forever.
3. **Epochs end everything at once.** A flush or a loss of tracking bumps the
   epoch; a ticket from an older epoch never fills.
4. **Silence is loss.** The listener renews a lease each time a connection
   hears from its server (invalidations, or the answer to its heartbeat PING);
   a lookup past the lease deactivates the cache itself, so a connection that
   died without closing (or a listener thread starved of the GIL) stops hits
   within ``silence_limit`` seconds even before the listener notices.
5. **Bounded.** At most ``max_entries`` records and ``max_bytes`` (estimated with
   ``sys.getsizeof``); the least recently used goes first. A record larger than
   ``max_bytes / 8`` is not cached at all, so one huge session cannot empty it.

All methods take one lock and return at once: the sync face, every event loop
and the listener thread share one instance.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

#: A cached record: the fields of one HGETALL reply, read-only.
Record = Mapping[str, str]

#: The bookkeeping one entry costs beyond its strings (OrderedDict node, tuple, proxy), bytes.
_ENTRY_OVERHEAD = 200


@dataclass(slots=True, eq=False)
class Ticket:
    """One read in flight, from :meth:`NearEntries.begin` to its fill or release."""

    key: str
    epoch: int
    stale: bool = False


@dataclass(frozen=True, slots=True)
class NearCacheStats:
    """Counters since the cache was made, and its size now.

    ``hits``/``misses``: lookups answered from memory / sent to the server (a
    miss while tracking is off counts too, and also in ``bypassed``).
    ``fills``: replies cached; ``dropped_fills``: replies not cached because an
    invalidation, flush or loss overtook their read (rule 2).
    ``invalidations``: keys the server said changed (one per key, cached or not);
    ``local_evictions``: keys this process wrote; ``lru_evictions``: entries
    dropped to stay within the bounds. ``flushes``: the whole cache emptied
    (a loss of tracking, a FLUSHALL, a topology change). ``entries`` and
    ``bytes`` (estimated) now; ``active``: whether hits are being served.
    """

    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    fills: int = 0
    dropped_fills: int = 0
    invalidations: int = 0
    local_evictions: int = 0
    lru_evictions: int = 0
    flushes: int = 0
    entries: int = 0
    bytes: int = 0
    active: bool = False

    def as_dict(self) -> dict[str, float]:
        """The figures as a flat mapping (for a metrics exporter or a log line)."""
        return {name: float(getattr(self, name)) for name in self.__slots__}


def record_size(key: str, record: Record) -> int:
    """Estimated bytes one cached record holds: its strings, its dict, the bookkeeping."""
    size = _ENTRY_OVERHEAD + sys.getsizeof(key) + sys.getsizeof(record)
    for name, value in record.items():
        size += sys.getsizeof(name) + sys.getsizeof(value)
    return size


@dataclass(slots=True)
class _Counters:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    fills: int = 0
    dropped_fills: int = 0
    invalidations: int = 0
    local_evictions: int = 0
    lru_evictions: int = 0
    flushes: int = 0


@dataclass(slots=True)
class _Lease:
    heard: dict[int, float] = field(default_factory=dict)
    deadline: float = 0.0


class NearEntries:
    """The cache itself; see the module docs for its rules.

    ``max_entries`` (at least 1) and ``max_bytes`` (at least 1 KiB) bound it;
    ``silence_limit`` (seconds) is the lease of rule 4; ``clock`` is
    ``time.monotonic`` unless a test injects one.
    """

    def __init__(
        self, max_entries: int, max_bytes: int, silence_limit: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.silence_limit = silence_limit
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Record, int]] = OrderedDict()
        self._bytes = 0
        self._pending: dict[str, list[Ticket]] = {}
        self._epoch = 0
        self._active = False
        self._lease = _Lease()
        self._count = _Counters()

    # -- the read path ------------------------------------------------------------------
    def get(self, key: str) -> Record | None:
        """The cached record of ``key`` (a Redis key), or None: then read it from the server."""
        with self._lock:
            if self._active and self._clock() > self._lease.deadline:
                self._deactivate_locked()
            if not self._active:
                self._count.misses += 1
                self._count.bypassed += 1
                return None
            entry = self._entries.get(key)
            if entry is None:
                self._count.misses += 1
                return None
            self._entries.move_to_end(key)
            self._count.hits += 1
            return entry[0]

    def begin(self, key: str) -> Ticket:
        """Call before sending the read of ``key``; hand the ticket to :meth:`fill` or :meth:`release`."""
        with self._lock:
            ticket = Ticket(key, self._epoch, stale=not self._active)
            if self._active:
                self._pending.setdefault(key, []).append(ticket)
            return ticket

    def fill(self, ticket: Ticket, record: Record) -> bool:
        """Cache the reply of the read ``ticket`` began, unless something overtook it.

        An empty reply (no such key) is never cached: unknown IDs are what an
        attacker sends, and caching them would push real sessions out. Returns
        whether the record was cached.
        """
        with self._lock:
            self._forget(ticket)
            if ticket.stale or ticket.epoch != self._epoch or not self._active:
                self._count.dropped_fills += 1
                return False
            if not record:
                return False
            size = record_size(ticket.key, record)
            if size > self.max_bytes // 8:
                return False
            self._drop(ticket.key)
            self._entries[ticket.key] = (MappingProxyType(dict(record)), size)
            self._bytes += size
            self._count.fills += 1
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped
                self._count.lru_evictions += 1
            return True

    def release(self, ticket: Ticket) -> None:
        """Forget a read that failed or was cancelled (idempotent; a no-op after :meth:`fill`)."""
        with self._lock:
            self._forget(ticket)

    # -- what changed -------------------------------------------------------------------
    def invalidate(self, keys: Iterable[str]) -> None:
        """The server says ``keys`` changed: drop them and spoil their reads in flight."""
        with self._lock:
            for key in keys:
                self._count.invalidations += 1
                self._spoil(key)

    def evict(self, *keys: str) -> None:
        """This process wrote ``keys`` (or tried to): drop them and spoil their reads in flight.

        Call it once the write is answered or has failed (a timed-out write may
        have been applied): a read that began before the write and is answered
        after this call is then dropped, not cached.
        """
        with self._lock:
            for key in keys:
                self._count.local_evictions += 1
                self._spoil(key)

    def flush(self) -> None:
        """Empty the cache and spoil every read in flight; tracking stays as it is."""
        with self._lock:
            self._flush_locked()

    # -- driven by the listener ---------------------------------------------------------
    def activate(self, links: Iterable[int]) -> None:
        """Every connection in ``links`` has tracking on: serve hits from now on."""
        with self._lock:
            now = self._clock()
            self._lease.heard = dict.fromkeys(links, now)
            self._lease.deadline = now + self.silence_limit
            self._flush_locked()
            self._active = True

    def heard(self, link: int) -> None:
        """Connection ``link`` heard from its server just now: renew the lease."""
        with self._lock:
            lease = self._lease
            if link in lease.heard:
                lease.heard[link] = self._clock()
                lease.deadline = min(lease.heard.values()) + self.silence_limit

    def deactivate(self) -> None:
        """Tracking is lost or not yet on: empty the cache and bypass it until :meth:`activate`."""
        with self._lock:
            self._deactivate_locked()

    @property
    def active(self) -> bool:
        """Whether hits are being served."""
        return self._active

    def stats(self) -> NearCacheStats:
        """A snapshot of the counters and the size."""
        with self._lock:
            c = self._count
            return NearCacheStats(
                c.hits, c.misses, c.bypassed, c.fills, c.dropped_fills, c.invalidations,
                c.local_evictions, c.lru_evictions, c.flushes, len(self._entries), self._bytes, self._active,
            )  # fmt: skip

    # -- under the lock -----------------------------------------------------------------
    def _deactivate_locked(self) -> None:
        if self._active or self._entries:
            self._flush_locked()
        self._active = False
        self._lease.heard.clear()

    def _flush_locked(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._epoch += 1  # every ticket out there is now from an older epoch
        self._pending.clear()
        self._count.flushes += 1

    def _spoil(self, key: str) -> None:
        self._drop(key)
        for ticket in self._pending.get(key, ()):
            ticket.stale = True

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]

    def _forget(self, ticket: Ticket) -> None:
        waiting = self._pending.get(ticket.key)
        if waiting is None:
            return
        try:
            waiting.remove(ticket)
        except ValueError:
            return
        if not waiting:
            del self._pending[ticket.key]
