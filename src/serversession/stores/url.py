"""Open a store from a URL: ``memory://``, ``sqlite:///path``, the Redis family
(``redis://``, ``redis+cluster://``, ``redis+sentinel://``, their TLS and Valkey spellings) and ``postgresql://``.

Schemes map to small factories that import their driver only when used, so the
core installs with no dependencies and each backend comes with its own extra.
This module holds the one table of schemes: the Redis store reads
:data:`REDIS_SCHEMES` and :data:`REDIS_SENTINEL_SCHEMES` from here rather than keeping a list of its own.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..exceptions import ConfigurationError

#: The Redis family: store URL scheme -> (the scheme redis-py is given, cluster?).
#: ``rediss`` is TLS; ``valkey`` spells ``redis``; ``+cluster`` takes any seed node.
REDIS_SCHEMES: dict[str, tuple[str, bool]] = {
    "redis": ("redis", False), "rediss": ("rediss", False),
    "valkey": ("redis", False), "valkeys": ("rediss", False),
    "redis+cluster": ("redis", True), "rediss+cluster": ("rediss", True),
    "valkey+cluster": ("redis", True), "valkeys+cluster": ("rediss", True),
}  # fmt: skip
#: Redis through Sentinel: store URL scheme -> the standalone scheme whose options it takes.
#: ``redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]`` (see :mod:`._redis_sentinel`).
REDIS_SENTINEL_SCHEMES: dict[str, str] = {
    "redis+sentinel": "redis", "rediss+sentinel": "rediss",
    "valkey+sentinel": "valkey", "valkeys+sentinel": "valkeys",
}  # fmt: skip

_REDIS = ("serversession.stores.redis", "RedisStore", "redis")
_POSTGRES = ("serversession.stores.postgres", "PostgresStore", "postgres")
#: Every scheme open_store() knows -> (module, class name, pip extra).
SCHEMES: dict[str, tuple[str, str, str]] = {
    "memory": ("serversession.stores.memory", "MemoryStore", ""),
    "sqlite": ("serversession.stores.sqlite", "SQLiteStore", ""),
    **dict.fromkeys(REDIS_SCHEMES, _REDIS),
    **dict.fromkeys(REDIS_SENTINEL_SCHEMES, _REDIS),
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
}

DEFAULT_STORE_URL = "sqlite:///serversession.sqlite3"


def refuse_unknown_options(store: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raise :class:`ConfigurationError` if a store URL names an option the store does not know.

    Why: a typo (``socket_timeot=1``) accepted at start-up would fail inside the
    driver at the first request, which the middleware can only report as "store
    unavailable", forever. Refused here, it names the option and the ones that exist.
    """
    allowed = sorted(set(known))
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise ConfigurationError(
            f"unknown {store} store URL option{'s' if len(unknown) > 1 else ''} {names}; "
            f"the options are: {', '.join(allowed) or '(none)'}"
        )


def _query_names(query: str) -> list[str]:
    return [name for name, _ in parse_qsl(query, keep_blank_values=True)]


def sqlite_path(url: str) -> str:
    """Return the file path of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL.

    Raises :class:`ConfigurationError` for a missing path, or any query or fragment:
    the SQLite store takes no URL options (``busy_timeout`` is a keyword argument).
    """
    _, sep, path = url.partition("://")
    if not sep or not path.startswith("/") or path == "/":
        raise ConfigurationError(f"SQLite store URL needs a path: sqlite:///FILE, got {url!r}")
    path, qmark, query = path.partition("?")
    refuse_unknown_options("SQLite", _query_names(query), ())
    if qmark or "#" in path:  # it would become part of the file name: another database
        raise ConfigurationError(f"SQLite store URLs take no query or fragment, got {url!r}")
    return unquote(path[1:])


def _check_memory_url(url: str) -> None:
    """``memory://`` and nothing more: a host, path or option would mean nothing."""
    _, sep, rest = url.partition("://")
    query = rest.partition("?")[2]
    refuse_unknown_options("memory", _query_names(query), ())
    if not sep or rest:
        raise ConfigurationError(f"the memory store URL is just memory://, got {url!r}")


def open_store(url: str, **options: Any) -> Any:
    """Return the store a URL names; ``options`` go to its constructor.

    Raises :class:`ConfigurationError` for an unknown scheme, a malformed URL, a
    URL option or keyword argument the store does not take, or a missing optional
    dependency (with the ``pip install`` line that fixes it).
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigurationError(f"unknown store URL {url!r}; expected one of {known}")
    module_name, class_name, extra = SCHEMES[scheme]
    if scheme == "memory":
        _check_memory_url(url)
    args = () if scheme == "memory" else (sqlite_path(url),) if scheme == "sqlite" else (url,)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"the {scheme}:// store needs an optional dependency: pip install 'serversession[{extra}]'"
        ) from exc
    cls = getattr(module, class_name)
    try:  # a misspelt keyword would otherwise reach the caller as a bare TypeError
        inspect.signature(cls).bind(*args, **options)
    except TypeError as exc:
        raise ConfigurationError(f"bad option for the {scheme}:// store: {exc}") from None
    return cls(*args, **options)
