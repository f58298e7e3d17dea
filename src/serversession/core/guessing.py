"""Guessing detection: count unknown session IDs per client address, throttle past a limit.

A session ID has 256 bits, so guessing one is hopeless; what an address that
presents many unknown IDs *is* doing (enumerating leaked or stolen tokens,
replaying a dump, or hammering the store with lookups that always miss) is
worth stopping early and telling an operator about. ASVS 5.0 V2/V7 and the
OWASP Session Management Cheat Sheet ask for exactly this: detect and slow
session ID brute force.

How it counts: a sliding window of ``window`` seconds per address, estimated
from two fixed buckets (this window's count plus the previous one's, weighted
by how much of it still overlaps), so memory is three numbers per address.
IPv6 addresses count per /64 (one host gets a whole /64).

Past ``limit`` misses in the window the address is *blocked* for up to
``window`` seconds. While blocked, a request presenting a session ID this
process served as valid within the window goes through as usual (remembered by
storage key, one dict update per request); one presenting an ID it does not
know is looked up at most once per ``window / limit`` seconds (so a valid
session first seen after a restart or on another worker still gets in, and
guessing stays at the limit's pace), and refused with 429 otherwise, before any
store round trip. Requests with no session ID, or a token that is not even
well formed (it never reaches the store), are never refused.

State is per process (each worker counts on its own) and deliberately
lock-free: every update is a few dict operations that the GIL keeps whole; a
race costs at most one miss miscounted. Memory is bounded (``max_addresses``,
``max_known``); when an attacker rotates through more addresses than that, the
oldest entries are forgotten first.
"""

from __future__ import annotations

import ipaddress
import math

#: Addresses (or /64s) tracked at once; past it the oldest are forgotten.
MAX_ADDRESSES = 10_000
#: Storage keys remembered as recently valid, so a block never refuses them (~100 B each).
MAX_KNOWN = 50_000


def address_bucket(ip: str) -> str:
    """What an address counts under: itself for IPv4 (IPv4-mapped IPv6 too), its /64 for IPv6."""
    if ":" not in ip:
        return ip
    try:
        address = ipaddress.IPv6Address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    mapped = address.ipv4_mapped  # a dual-stack server sees every IPv4 peer as ::ffff:a.b.c.d
    if mapped is not None:
        return str(mapped)
    return str(ipaddress.IPv6Network(f"{address}/64", strict=False))


class GuessingMonitor:
    """Counts misses (unknown, expired or forged IDs) per address; see the module docs.

    ``limit`` misses within ``window`` seconds block an address; ``limit`` 0
    turns the monitor off. Every method takes ``now`` (Unix seconds): the core
    keeps no clock of its own.
    """

    __slots__ = ("_blocked", "_counts", "_known", "_paced", "limit", "max_addresses", "max_known", "window")

    def __init__(
        self, limit: int, window: float, *, max_addresses: int = MAX_ADDRESSES, max_known: int = MAX_KNOWN
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self.max_known = max_known
        # bucket -> [window number, misses in the previous window, misses in this one]
        self._counts: dict[str, list[float]] = {}
        # bucket -> Unix time the block ends
        self._blocked: dict[str, float] = {}
        # storage key -> Unix time this process last served it as valid
        self._known: dict[str, float] = {}
        # bucket -> Unix time a blocked address may next have an unknown ID looked up
        self._paced: dict[str, float] = {}

    def blocked_for(self, ip: str, now: float) -> float | None:
        """Seconds left on ``ip``'s block, or None when it is not blocked."""
        if not self._blocked:
            return None
        bucket = address_bucket(ip)
        until = self._blocked.get(bucket)
        if until is None:
            return None
        if now >= until:
            self._blocked.pop(bucket, None)
            return None
        return until - now

    def known_valid(self, key: str, now: float) -> bool:
        """Whether this process served ``key`` as a valid session within the window."""
        seen = self._known.get(key)
        return seen is not None and now - seen < self.window

    def lookup_allowed(self, ip: str, now: float) -> bool:
        """Whether a blocked address may have one more unknown session ID looked up now.

        One lookup per ``window / limit`` seconds (0.6 s at the defaults): the pace
        the limit allows anyway, so a block caps guessing at the limit's rate, while
        a valid session this process has not seen yet (after a restart, on another
        worker) still gets through within about a second instead of waiting out
        the block.
        """
        bucket = address_bucket(ip)
        if now < self._paced.get(bucket, 0.0):
            return False
        self._paced[bucket] = now + self.window / max(self.limit, 1)
        return True

    def record_valid(self, key: str, now: float) -> None:
        """A request had a valid session: remember it, so a block never refuses it.

        One dict store per request. When full, the oldest-remembered half is
        forgotten; an active session among them is remembered again at its next
        request.
        """
        known = self._known
        if len(known) >= self.max_known and key not in known:
            for stale in list(known)[: len(known) // 2]:
                known.pop(stale, None)
        known[key] = now

    def record_miss(self, ip: str, now: float) -> int | None:
        """Count a miss from ``ip``; return the window's count when it just crossed the limit.

        The caller emits the GUESSING event and metric on that return, once per
        block, not once per request.
        """
        if self.limit <= 0:
            return None
        bucket = address_bucket(ip)
        number = math.floor(now / self.window)
        counts = self._counts
        entry = counts.get(bucket)
        if entry is None:
            if len(counts) >= self.max_addresses:
                self._forget(now)
            entry = counts[bucket] = [number, 0.0, 0.0]
        elif entry[0] != number:
            entry[1] = entry[2] if entry[0] == number - 1 else 0.0
            entry[0], entry[2] = number, 0.0
        entry[2] += 1
        overlap = 1.0 - (now / self.window - number)
        estimate = entry[2] + entry[1] * overlap
        if estimate >= self.limit and bucket not in self._blocked:
            if len(self._blocked) >= self.max_addresses:
                self._forget_blocks(now)
            self._blocked[bucket] = now + self.window
            return math.ceil(estimate)
        return None

    def _forget_blocks(self, now: float) -> None:
        """Bound the blocks as the counts are bounded: lapsed ones first, else the oldest half."""
        blocked = self._blocked
        lapsed = [bucket for bucket, until in blocked.items() if until <= now]
        if len(lapsed) < len(blocked) // 2:
            lapsed = list(blocked)[: len(blocked) // 2 + 1]
        for bucket in lapsed:
            blocked.pop(bucket, None)
            self._paced.pop(bucket, None)

    def _forget(self, now: float) -> None:
        """Make room: drop addresses idle for two windows, else the oldest half."""
        current = math.floor(now / self.window)
        counts = self._counts
        stale = [bucket for bucket, entry in counts.items() if entry[0] < current - 1]
        if len(stale) < len(counts) // 2:
            stale = list(counts)[: len(counts) // 2 + 1]
        for bucket in stale:
            counts.pop(bucket, None)
