"""Scanning an incumbent's sessions on a Redis server, resumable at a SCAN cursor.

SCAN returns every key present for the whole scan at least once, so a cursor
kept between runs resumes where a run stopped (a key may come twice: the
runner's writes are create-only). Each key's value and remaining time to live
come in one pipelined round trip per batch. One server (``redis://`` or
``rediss://``); a Redis Cluster would need one scan per master and is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..exceptions import ConfigurationError, StoreUnavailableError


def split_options(url: str, scheme_prefix: str, known: set[str]) -> tuple[str, dict[str, str]]:
    """The plain Redis URL inside ``<prefix>+redis://...`` and our own query options.

    Options not ours are left for redis-py (``socket_timeout``...).
    """
    parts = urlsplit(url)
    inner = parts.scheme.removeprefix(scheme_prefix + "+")
    if inner not in ("redis", "rediss") or not parts.netloc:
        raise ConfigurationError(f"a {scheme_prefix} URL is {scheme_prefix}+redis://HOST:PORT/DB "
                                 f"(or +rediss://), got {parts.scheme}://{parts.netloc}...")  # fmt: skip
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        (ours.__setitem__(name, value) if name in known else theirs.append((name, value)))
    return urlunsplit((inner, parts.netloc, parts.path, urlencode(theirs), "")), ours


def glob_escape(text: str) -> str:
    """``text`` matched literally by a SCAN pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisScan:
    """Keys matching a pattern, with their values and remaining lifetimes."""

    def __init__(self, url: str, kind: str, pattern: str, batch: int = 500) -> None:
        try:
            import redis
        except ImportError as exc:  # pragma: no cover - redis is a dependency of the redis store
            raise ConfigurationError("reading sessions from Redis needs redis-py (pip install redis)") from exc
        try:
            self.client: Any = redis.Redis.from_url(url, socket_timeout=30, socket_connect_timeout=10)
            self.client.ping()
        except (ValueError, redis.RedisError) as exc:
            raise StoreUnavailableError(f"cannot reach the {kind} Redis server: {exc}", store=kind,
                                        operation="open") from exc  # fmt: skip
        self._errors = redis.RedisError
        self.kind, self.pattern, self.batch = kind, pattern, batch

    def total(self) -> int | None:
        """The server's key count: an upper bound (other keys count too)."""
        return int(self.client.dbsize())

    def scan(self, cursor: str | None) -> Iterator[tuple[list[tuple[bytes, bytes | None, int]], str | None]]:
        """(key, value, milliseconds to live) batches from ``cursor``; the last one's cursor is None.

        A value None or a negative time -2 is a key gone since the scan saw it;
        -1 is a key with no expiry.
        """
        position = int(cursor or 0)
        try:
            while True:
                position, keys = self.client.scan(position, match=self.pattern, count=self.batch)
                pipe = self.client.pipeline(transaction=False)
                for key in keys:
                    pipe.get(key)
                    pipe.pttl(key)
                answers = pipe.execute() if keys else []
                found = [(k, answers[2 * i], int(answers[2 * i + 1])) for i, k in enumerate(keys)]
                yield found, (str(position) if position else None)
                if not position:
                    return
        except self._errors as exc:
            raise StoreUnavailableError(f"the {self.kind} Redis server failed during the scan: {exc}",
                                        store=self.kind, operation="scan") from exc  # fmt: skip

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
