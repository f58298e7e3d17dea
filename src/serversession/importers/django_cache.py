"""Django's cache sessions (``django.contrib.sessions.backends.cache``) on Django's Redis cache.

Source URL: ``django-cache+redis://HOST:PORT/DB`` (the cache's ``LOCATION``;
``+rediss://`` for TLS), with options ``key_prefix`` (the cache's
``KEY_PREFIX``, default empty) and ``version`` (its ``VERSION``, default 1).
Django files a session under ``<KEY_PREFIX>:<VERSION>:django.contrib.sessions.cache<session_key>``
(the default ``KEY_FUNCTION``; a custom one is not supported).

Django's Redis cache pickles every value. A pickle can run code when loaded,
so values are read by :func:`._pickle.plain_loads`, whose unpickler refuses every
global: a session of plain data (dicts, lists, text, numbers, booleans, None)
reads, one holding a ``datetime``, a model or any other object is refused and
reported by key, and nothing is executed either way. The session's remaining
time to live is its expiry; ``_auth_user_id`` its user binding.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..exceptions import ConfigurationError
from ._pickle import UnsafePickleError, plain_loads
from ._redis import RedisScan, glob_escape, split_options
from .base import Expired, Item, LegacySession, Refused, label
from .django_db import AUTH_USER_KEY

SESSION_PREFIX = "django.contrib.sessions.cache"


class DjangoCacheSource:
    """Reads Django cache sessions from one Redis server (see the module docs).

    ``no_expiry_lifetime`` (seconds) is the lifetime given to a session stored
    without a time to live. Raises :class:`ConfigurationError` for a bad URL and
    :class:`~serversession.exceptions.StoreUnavailableError` when Redis fails.
    """

    kind = "django-cache"

    def __init__(self, url: str, no_expiry_lifetime: float, batch: int = 500) -> None:
        redis_url, options = split_options(url, self.kind, {"key_prefix", "version"})
        version = options.get("version", "1")
        if not version.lstrip("-").isdigit():
            raise ConfigurationError(f"django-cache version is a whole number, got {version!r}")
        self.prefix = f"{options.get('key_prefix', '')}:{int(version)}:{SESSION_PREFIX}"
        self.lifetime = no_expiry_lifetime
        self._scan = RedisScan(redis_url, self.kind, glob_escape(self.prefix) + "*", batch)

    def total(self) -> int | None:
        """An upper bound: the keys of the whole Redis database."""
        return self._scan.total()

    def batches(self, cursor: str | None, now: float) -> Iterator[tuple[list[Item], str | None]]:
        """The sessions from ``cursor`` (a SCAN cursor), one SCAN batch at a time."""
        for found, next_cursor in self._scan.scan(cursor):
            yield [self.read(key, value, ttl, now) for key, value, ttl in found], next_cursor

    def read(self, key: bytes, value: bytes | None, ttl_ms: int, now: float) -> Item:
        """One cache entry: plain data unpickled, or why it is refused."""
        session_key = key.decode("utf-8", "replace").removeprefix(self.prefix)
        name = label(session_key)
        if value is None or ttl_ms == -2:
            return Expired(name)
        try:
            data = plain_loads(value)
        except UnsafePickleError as exc:
            return Refused(name, f"not unpickled: {exc}")
        if not isinstance(data, dict):
            return Refused(name, f"it holds a {type(data).__name__}, not a session mapping")
        expires_at = now + (ttl_ms / 1000 if ttl_ms >= 0 else self.lifetime)
        user = data.get(AUTH_USER_KEY)
        return LegacySession(session_key, name, data, expires_at, None if user is None else str(user))

    def close(self) -> None:
        """Close the Redis connection."""
        self._scan.close()
