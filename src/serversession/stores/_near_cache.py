"""An opt-in near cache for the Redis store: repeated loads cost no round trip (issue 13).

The promise (written out in ``docs/concurrency.md``, "Near cache"): a change any
other process makes to a session (sign-out, revocation, rotation, a data write,
expiry) evicts this process's copy as soon as Redis's invalidation message for
it arrives, measured at well under a millisecond on loopback; never "eventually,
at a TTL". While the invalidation connection is lost the cache is empty and
bypassed, so no read is answered from memory that the server could not have
told us about.

How the store uses it (both faces call the same non-blocking methods)::

    fields = cache.get(skey)                 # a hit: decode it, no round trip
    if fields is None:
        ticket = cache.begin(skey)           # before sending the HGETALL
        try:
            fields = <HGETALL skey>
            cache.fill(ticket, fields)       # dropped if an invalidation overtook it
        finally:
            cache.release(ticket)
    ...
    <a write to skey>                        # create, commit, rotate, delete
    cache.evict(skey, ...)                   # once answered or failed (in a finally)

The pieces: :mod:`._near_entries` (the bounded LRU and its race rules, no I/O)
and :mod:`._near_listener` (the invalidation connections and their thread).
The listener starts on the first lookup, not when the store is made, so a
server that forks its workers after import (gunicorn ``--preload``) starts one
in each worker. A forked child drops what it inherited at the fork (an
``os.register_at_fork`` hook: new locks, an empty cache), so a lock the
parent's listener held then cannot hang it, and its first lookup starts its
own listener.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ..exceptions import ConfigurationError
from ._near_entries import NearCacheStats, NearEntries, Record, Ticket
from ._near_listener import InvalidationListener

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class NearCacheConfig:
    """How big the near cache may grow and how fast it notices trouble.

    ``max_entries`` (10,000 records) and ``max_bytes`` (32 MiB, estimated) bound
    it, least recently used first out. ``heartbeat`` (0.5 s) paces the PING on
    each invalidation connection; ``silence_limit`` (2.0 s) is how long a
    connection may stay silent before the cache turns itself off: the bound on
    stale reads when a connection dies without closing. ``topology_interval``
    (1.0 s) paces a cluster's ``CLUSTER NODES`` check. ``connect_timeout``
    (2.0 s) bounds each connect of the listener.
    Raises :class:`ConfigurationError` for values out of range.
    """

    max_entries: int = 10_000
    max_bytes: int = 32 * 1024 * 1024
    heartbeat: float = 0.5
    silence_limit: float = 2.0
    topology_interval: float = 1.0
    connect_timeout: float = 2.0

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_bytes < 1024:
            raise ConfigurationError("near cache: max_entries must be >= 1 and max_bytes >= 1024")
        if not 0 < self.heartbeat < self.silence_limit <= 60:
            raise ConfigurationError("near cache: need 0 < heartbeat < silence_limit <= 60 seconds")
        if not 0 < self.topology_interval <= 60 or not 0 < self.connect_timeout <= 60:
            raise ConfigurationError("near cache: topology_interval and connect_timeout must be in (0, 60] seconds")


def near_cache_config(value: bool | str | Mapping[str, Any] | NearCacheConfig | None) -> NearCacheConfig | None:
    """The store's ``near_cache`` argument or URL option as a config, or None for off.

    Takes True/False, the URL texts ``1``/``0`` (also true/false, yes/no,
    on/off), a mapping of :class:`NearCacheConfig` fields, or a config. Raises
    :class:`ConfigurationError` for anything else.
    """
    if value is None or value is False:
        return None
    if value is True:
        return NearCacheConfig()
    if isinstance(value, NearCacheConfig):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return NearCacheConfig()
        if text in _FALSE:
            return None
        raise ConfigurationError(f"near_cache must be 1 or 0 (also true/false, yes/no, on/off), got {value!r}")
    if isinstance(value, Mapping):
        try:
            return NearCacheConfig(**value)
        except TypeError as exc:
            raise ConfigurationError(f"bad near_cache options: {exc}") from None
    raise ConfigurationError(f"near_cache must be a bool, '1'/'0', a mapping or a NearCacheConfig, got {value!r}")


#: Query options of a Redis store URL read here -> the NearCacheConfig field (None: the switch).
URL_OPTIONS: dict[str, str | None] = {
    "near_cache": None, "near_cache_max_entries": "max_entries", "near_cache_max_bytes": "max_bytes",
}  # fmt: skip


def split_url_options(url: str) -> tuple[str, dict[str, str]]:
    """(``url`` without the near-cache query options, those options).

    Taken out before the URL is checked as a Redis URL, so its checks (and
    redis-py) never see them. Raises :class:`ConfigurationError` for one given
    twice.
    """
    base, qmark, query = url.partition("?")
    if not qmark:
        return url, {}
    kept, found = [], {}
    for pair in query.split("&"):
        name = unquote(pair.partition("=")[0])
        if name not in URL_OPTIONS:
            kept.append(pair)
        elif name in found:
            raise ConfigurationError(f"Redis store URL option {name} is given more than once")
        else:
            found[name] = unquote(pair.partition("=")[2])
    return (f"{base}?{'&'.join(kept)}" if kept else base), found


def store_config(argument: Any, url_options: Mapping[str, str]) -> NearCacheConfig | None:
    """The near cache a store gets: its ``near_cache`` argument if given (not None), else
    the URL's ``near_cache``; the URL's sizes apply on top.

    Raises :class:`ConfigurationError` for a value :func:`near_cache_config`
    refuses, a size that is not a whole number, or sizes with the cache off.
    """
    config = near_cache_config(url_options.get("near_cache") if argument is None else argument)
    sizes: dict[str, int] = {}
    for name, field_name in URL_OPTIONS.items():
        if field_name is not None and name in url_options:
            try:
                sizes[field_name] = int(url_options[name])
            except ValueError:
                raise ConfigurationError(f"{name} must be a whole number, got {url_options[name]!r}") from None
    if sizes and config is None:
        raise ConfigurationError(f"{', '.join(n for n in url_options if n != 'near_cache')} need near_cache=1")
    return dataclasses.replace(config, **sizes) if config is not None and sizes else config


class NearCache:
    """The near cache of one store in one process; see the module docs for its use.

    ``url`` is the store's driver URL (``redis://``/``rediss://`` with its
    options); ``cluster`` whether it names a cluster seed; ``prefix`` the key
    prefix of session hashes (``"ss:s:"``); ``options`` extra redis-py
    connection options (``username``, ``password``, TLS settings). Lookups are
    thread-safe and never block on I/O.
    """

    def __init__(
        self, url: str, prefix: str, *, cluster: bool, config: NearCacheConfig | None = None, **options: Any,
    ) -> None:  # fmt: skip
        self.config = config or NearCacheConfig()
        self._url, self._prefix, self._cluster, self._options = url, prefix, cluster, options
        self._start_lock = threading.Lock()
        self._pid = -1
        self._closed = False
        self.entries = self._new_entries()
        self.listener = self._listener()
        os.register_at_fork(after_in_child=functools.partial(_forked, weakref.ref(self)))

    def _new_entries(self) -> NearEntries:
        return NearEntries(self.config.max_entries, self.config.max_bytes, self.config.silence_limit)

    def _after_fork(self) -> None:
        """In a forked child, at once: new locks and an empty cache of its own.

        The parent's listener thread takes the entries' lock for every
        invalidation and PONG; a fork at that moment copies the lock held by a
        thread the child does not have, and touching it would hang the child's
        first load or write. So the child never touches the parent's objects.
        """
        self._start_lock = threading.Lock()
        self.entries = self._new_entries()

    def _listener(self) -> InvalidationListener:
        c = self.config
        return InvalidationListener(
            self.entries, self._url, self._prefix, cluster=self._cluster, heartbeat=c.heartbeat,
            silence_limit=c.silence_limit, connect_timeout=c.connect_timeout, topology_interval=c.topology_interval,
            **self._options,
        )  # fmt: skip

    def _ensure_listening(self) -> None:
        """Start the listener in this process (again after a fork); cheap when already running."""
        if self._pid == os.getpid() or self._closed:
            return
        with self._start_lock:
            if self._pid == os.getpid() or self._closed:
                return
            if self._pid != -1:  # a forked child: the parent's thread and sockets are not ours
                self.entries.deactivate()  # (the fresh entries _after_fork made)
                self.listener = self._listener()
            self._pid = os.getpid()
            self.listener.start()

    def get(self, skey: str) -> Record | None:
        """The cached fields of ``skey`` (read-only), or None: read the server, with :meth:`begin`."""
        self._ensure_listening()
        return self.entries.get(skey)

    def begin(self, skey: str) -> Ticket:
        """A ticket for the read of ``skey`` about to be sent."""
        return self.entries.begin(skey)

    def fill(self, ticket: Ticket, fields: Record) -> bool:
        """Cache a read's reply, unless an invalidation overtook it; whether it was cached."""
        return self.entries.fill(ticket, fields)

    def release(self, ticket: Ticket) -> None:
        """Forget a read (after a failure; harmless after :meth:`fill`)."""
        self.entries.release(ticket)

    def evict(self, *skeys: str) -> None:
        """This process wrote ``skeys`` (or a write of them failed): drop them now."""
        self.entries.evict(*skeys)

    @property
    def active(self) -> bool:
        """Whether tracking is on and hits are served."""
        return self.entries.active

    def stats(self) -> NearCacheStats:
        """Hits, misses, invalidations, flushes, size: see :class:`NearCacheStats`."""
        return self.entries.stats()

    def close(self) -> None:
        """Stop listening and empty the cache; later lookups all miss."""
        self._closed = True
        if self._pid == os.getpid():
            self.listener.stop()
        self.entries.deactivate()


def _forked(ref: weakref.ref[NearCache]) -> None:
    cache = ref()
    if cache is not None:
        cache._after_fork()


__all__ = ["NearCache", "NearCacheConfig", "NearCacheStats", "near_cache_config", "split_url_options", "store_config"]
