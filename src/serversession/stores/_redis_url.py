"""Checking a Redis store URL before redis-py sees it.

redis-py takes any query option: the ones it knows it parses (``socket_timeout``
becomes a float), anything else it hands on as text to the connection, which
raises TypeError at the first request, or, in the sync cluster client, drops
without a word. A value it parses but cannot use (``socket_timeout=-1``) fails
at the first request too. Either way every request would answer "store
unavailable", so the store refuses them when it is opened, here.

The options below are the ones every client the store builds for that kind of
URL takes (the sync and the async face, so the first async request cannot fail
where start-up passed), found in redis-py 8's ``URL_QUERY_ARGUMENT_PARSERS``, the
sync cluster's ``REDIS_ALLOWED_KEYS`` and the async cluster's constructor.
Left out on purpose: ``retry_on_timeout`` and ``retry_on_error`` (the store never
retries: a retried commit could apply twice), ``timeout`` (for redis-py's
blocking pool, which the store does not use), ``decode_responses`` and
``encoding`` (the store reads UTF-8 text), ``lib_name`` and ``lib_version``
(deprecated in redis-py 8), and PEM text in ``ssl_ca_data``.
This module imports no driver; it only reads the scheme table in :mod:`.url`.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..exceptions import ConfigurationError
from .url import REDIS_SCHEMES, refuse_unknown_options

#: Query options the store reads itself and keeps from redis-py.
OWN_OPTIONS = ("wait_replicas", "wait_timeout")

_Check = Callable[[str], object]
_TRUE = ("1", "T", "TRUE", "Y", "YES")
_FALSE = ("0", "F", "FALSE", "N", "NO")  # redis-py's FALSE_STRINGS; anything else it reads as true


def check_seconds(value: float) -> float:
    """``value`` if it is a finite number of seconds above 0, else ValueError."""
    if not 0 < value < math.inf:  # NaN fails too; the socket would refuse it at every call
        raise ValueError("must be a number of seconds above 0")
    return value


def _seconds(text: str) -> object:
    return check_seconds(float(text))


def _at_least(low: int) -> _Check:
    def check(text: str) -> object:
        if int(text) < low:
            raise ValueError(f"must be a whole number of at least {low}")
        return None

    return check


def _one_of(*choices: str) -> _Check:
    def check(text: str) -> object:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return None

    return check


def _flag(text: str) -> object:
    if text.upper() not in _TRUE + _FALSE:  # redis-py would read "off" as true
        raise ValueError("must be true or false (also yes/no, 1/0)")
    return None


def _text(text: str) -> object:
    return None


def _name(text: str) -> object:
    if any(c.isspace() for c in text):  # CLIENT SETNAME refuses it on every connect
        raise ValueError("must not contain spaces")
    return None


def _file(text: str) -> object:
    if not os.path.isfile(text):  # the TLS handshake would fail on every connect
        raise ValueError("no such file")
    return None


def _directory(text: str) -> object:
    if not os.path.isdir(text):
        raise ValueError("no such directory")
    return None


def _verify_flags(text: str) -> object:
    for flag in text.strip("[]").split(","):
        if not isinstance(getattr(ssl.VerifyFlags, flag.strip(), None), ssl.VerifyFlags):
            raise ValueError(f"{flag.strip()!r} is not an ssl.VerifyFlags name")
    return None


def _tls_version(text: str) -> object:
    return ssl.TLSVersion(int(text))


#: Every kind of URL: option -> the check its text must pass.
_ANY = {
    "db": _at_least(0), "socket_timeout": _seconds, "socket_connect_timeout": _seconds,
    "socket_read_size": _at_least(1), "socket_keepalive": _flag, "max_connections": _at_least(1),
    "protocol": _one_of("2", "3"), "legacy_responses": _flag, "client_name": _name,
    "username": _text, "password": _text,
}  # fmt: skip
#: Standalone only: the sync cluster client drops it.
_STANDALONE = {"health_check_interval": _at_least(0)}
#: TLS URLs (rediss://, valkeys://, and their +cluster forms).
_TLS = {
    "ssl_cert_reqs": _one_of("none", "optional", "required"), "ssl_ca_certs": _file,
    "ssl_certfile": _file, "ssl_keyfile": _file, "ssl_check_hostname": _flag,
    "ssl_include_verify_flags": _verify_flags, "ssl_exclude_verify_flags": _verify_flags,
}  # fmt: skip
#: TLS standalone only: the sync cluster client drops the last two, the async one refuses the first two.
_TLS_STANDALONE = {"ssl_ca_path": _directory, "ssl_password": _text, "ssl_min_version": _tls_version,
                   "ssl_ciphers": _text}  # fmt: skip


def driver_options(cluster: bool, tls: bool) -> dict[str, _Check]:
    """The query options passed on to redis-py for one kind of URL, with their checks."""
    return {
        **_ANY, **({} if cluster else _STANDALONE), **(_TLS if tls else {}),
        **(_TLS_STANDALONE if tls and not cluster else {}),
    }  # fmt: skip


def parse_url(url: str) -> tuple[str, bool, dict[str, str]]:
    """(the URL for redis-py, cluster?, the store's own query options).

    Raises :class:`ConfigurationError` for a scheme not in :data:`.url.REDIS_SCHEMES`,
    an option the store does not take, an option given twice or without a value, a
    value its check refuses, or a database that is not a number (a cluster has only 0).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in REDIS_SCHEMES:
        expected = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
        raise ConfigurationError(f"not a Redis store URL: {url!r} (expected one of {expected})")
    driver_scheme, cluster = REDIS_SCHEMES[scheme.lower()]
    tls = driver_scheme == "rediss"
    base, _, query = rest.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    names = [name for name, _ in pairs]
    misplaced = sorted({repr(n) for n in names if n.startswith("ssl_")} if not tls else set())
    if misplaced:
        raise ConfigurationError(
            f"TLS option {', '.join(misplaced)} needs a TLS URL (rediss://, valkeys:// or their +cluster forms)"
        )
    checks = driver_options(cluster, tls)
    refuse_unknown_options("Redis Cluster" if cluster else "Redis", names, [*checks, *OWN_OPTIONS])
    own: dict[str, str] = {}
    kept: list[tuple[str, str]] = []
    for name, value in pairs:
        if names.count(name) > 1:
            raise ConfigurationError(f"Redis store URL option {name} is given more than once")
        if name in OWN_OPTIONS:
            own[name] = value  # checked by the store, with its keyword arguments
            continue
        try:
            if not value:
                raise ValueError("has no value")
            checks[name](value)
        except ValueError as exc:
            raise ConfigurationError(f"bad Redis store URL option {name}={value!r}: {exc}") from None
        kept.append((name, value))
    try:
        parts = urlsplit(f"{driver_scheme}://{base}")
        path, _ = parts.path.strip("/"), parts.port
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis store URL {url!r}: {exc}") from None
    if path and not (path.isascii() and path.isdigit()):  # redis-py would quietly use database 0
        raise ConfigurationError(f"the path of a Redis store URL is a database number, got {url!r}")
    db = dict(kept).get("db", path or "0")
    if cluster and int(db) != 0:
        raise ConfigurationError(f"a Redis Cluster has only database 0, got {url!r}")
    return f"{driver_scheme}://{base}" + (f"?{urlencode(kept)}" if kept else ""), cluster, own
