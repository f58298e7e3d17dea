"""``redis+sentinel://``: the Redis store's master found through Sentinel (issue 14).

The URL form is ``redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]``
(``rediss+sentinel`` for TLS; ``valkey+sentinel`` and ``valkeys+sentinel`` spell
the same): the hosts are sentinels (port 26379 if left out), ``service`` the
name they monitor, ``db`` the database (0). The user and password are the data
nodes' (as in ``redis://``). Sentinels with a password of their own take it from
the query options ``sentinel_username`` and ``sentinel_password``; without them
the sentinels are asked with no AUTH. On a TLS URL the sentinels are reached
over TLS too, with the same ``ssl_*`` options as the data nodes.

Every other query option is the one a ``redis://`` URL takes, checked by
:func:`._redis_url.parse_url` on an equivalent standalone URL, so the two forms
cannot drift apart.

Failover: redis-py's sentinel pools ask a sentinel for the master's address on
every new connection, and drop a connection that meets ``READONLY`` (a master
demoted to replica) or any connection error. The store never retries, so the
call that meets the change answers :class:`~serversession.exceptions.StoreUnavailableError`
and the next one connects to the new master: no restart. This module imports
redis-py's sentinel modules only when a sentinel URL is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.connection
import redis.sentinel

from ..exceptions import ConfigurationError
from ._redis_url import parse_url
from .url import REDIS_SENTINEL_SCHEMES

#: Query options read here, for the sentinels themselves (never sent to the data nodes).
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
DEFAULT_PORT = 26379


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names a master through Sentinel."""
    return url.partition("://")[0].lower() in REDIS_SENTINEL_SCHEMES


def _address(text: str, url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(f"//{text}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigurationError(f"bad sentinel address {text!r} in {url!r}: {exc}") from None
    if not host or parts.username is not None or parts.path:
        raise ConfigurationError(f"bad sentinel address {text!r} in {url!r}: expected host[:port]")
    return host, port or DEFAULT_PORT


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """A parsed sentinel URL: where to ask (``sentinels``), for what (``service``),
    and the checked standalone URL (``data_url``) whose options the data nodes get."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    data_url: str
    tls: bool
    sentinel_auth: dict[str, str]

    def _kwargs(self, parse: Any, options: dict[str, Any], ssl_class: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the data nodes' connection options, the sentinels' own), from redis-py's ``parse``.

        The URL's options win over the store's keywords (its default timeouts
        among them), as they do in redis-py's ``from_url`` for ``redis://``.
        """
        data = {**options, **parse(self.data_url)}
        for name in ("host", "port", "connection_class"):
            data.pop(name, None)
        timeouts = {k: v for k, v in data.items() if k in ("socket_timeout", "socket_connect_timeout")}
        sentinel = {**timeouts, **self.sentinel_auth, "retry": data.get("retry")}
        if self.tls:
            data["connection_class"] = ssl_class
            sentinel.update({k: v for k, v in data.items() if k.startswith("ssl_")}, ssl=True)
        if sentinel["retry"] is None:
            del sentinel["retry"]
        return data, sentinel

    def sync_client(self, options: dict[str, Any]) -> tuple[Any, Any]:
        """(a :class:`redis.Redis` for the master, the :class:`redis.sentinel.Sentinel` to close with it)."""
        data, sentinel = self._kwargs(redis.connection.parse_url, options, redis.sentinel.SentinelManagedSSLConnection)
        finder = redis.sentinel.Sentinel(self.sentinels, sentinel_kwargs=sentinel)
        return finder.master_for(self.service, **data), finder

    def async_client(self, options: dict[str, Any]) -> tuple[Any, Any]:
        """The async twin of :meth:`sync_client` (``redis.asyncio.sentinel``)."""
        ssl_class = redis.asyncio.sentinel.SentinelManagedSSLConnection
        data, sentinel = self._kwargs(redis.asyncio.connection.parse_url, options, ssl_class)
        finder = redis.asyncio.sentinel.Sentinel(self.sentinels, sentinel_kwargs=sentinel)
        return finder.master_for(self.service, **data), finder


def parse_sentinel_url(url: str) -> tuple[SentinelTarget, dict[str, str]]:
    """(the target, the store's own query options) of a sentinel URL.

    Raises :class:`ConfigurationError` for no sentinel address, a bad address or
    port, no service name, a database that is not a number, more path than
    ``/service/db``, or any option a ``redis://`` URL would refuse.
    """
    scheme, _, rest = url.partition("://")
    standalone = REDIS_SENTINEL_SCHEMES[scheme.lower()]
    base, _, query = rest.partition("?")
    netloc, _, path = base.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    sentinels = tuple(_address(h, url) for h in hosts.split(",") if h) if hosts else ()
    if not sentinels or any(not h for h in hosts.split(",")):
        raise ConfigurationError(f"a sentinel URL needs host:port[,host:port...] of its sentinels, got {url!r}")
    segments = path.strip("/").split("/") if path.strip("/") else []
    if not segments or len(segments) > 2:
        raise ConfigurationError(f"a sentinel URL's path is /service_name[/db], got {url!r}")
    service, db = unquote(segments[0]), (segments[1] if len(segments) == 2 else "")
    pairs = parse_qsl(query, keep_blank_values=True)
    auth: dict[str, str] = {}
    kept: list[tuple[str, str]] = []
    for name, value in pairs:
        if name in SENTINEL_OPTIONS:
            if name[len("sentinel_"):] in auth or not value:
                raise ConfigurationError(f"sentinel URL option {name} needs one value, given once")
            auth[name[len("sentinel_"):]] = value
        else:
            kept.append((name, value))
    # The same URL as one standalone server: parse_url checks every option and the db.
    host, port = sentinels[0]
    shown = f"[{host}]" if ":" in host else host
    equivalent = f"{standalone}://{userinfo}{at}{shown}:{port}/{db}" + (f"?{urlencode(kept)}" if kept else "")
    data_url, _, own = parse_url(equivalent)
    return SentinelTarget(sentinels, service, data_url, standalone in ("rediss", "valkeys"), auth), own


__all__ = ["SENTINEL_OPTIONS", "SentinelTarget", "is_sentinel_url", "parse_sentinel_url"]
