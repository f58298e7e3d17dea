"""Django's sessions found through the project's own settings module.

Source URL: ``django-settings:mysite.settings`` (``?database=ALIAS`` for a
database other than ``default``). The command imports that module, as
``manage.py`` would (the current directory is on the path, so run it from the
project's directory or set ``PYTHONPATH``), sets Django up and reads what the
settings say:

* ``SESSION_ENGINE`` ``db`` or ``cached_db``: the session table through Django's
  own database connection, so any database backend Django supports works, and
  the signature salt from the engine's ``SessionStore`` class;
* ``cache``: the cache ``SESSION_CACHE_ALIAS`` names, which must be Django's
  ``RedisCache``, read as :mod:`.django_cache` reads it (its ``LOCATION``,
  ``KEY_PREFIX`` and ``VERSION``).

``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` come from the settings, unless the
secret key environment variable is set. Rows are decoded exactly as
:mod:`.django_db` decodes them (signing checked, JSON only, never the
project's serializer).
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import Any
from urllib.parse import parse_qsl, quote

from ..exceptions import ConfigurationError, StoreUnavailableError
from .django_cache import DjangoCacheSource
from .django_db import DjangoDbSource

_DB_ENGINES = ("django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db")


def open_settings_source(url: str, secret_key: str | None, no_expiry_lifetime: float, batch: int) -> Any:
    """The source the settings module describes. Raises :class:`ConfigurationError` when the
    module cannot be imported or names an engine or cache this command cannot read."""
    name, _, query = url.removeprefix("django-settings:").lstrip("/").partition("?")
    options = dict(parse_qsl(query))
    if set(options) - {"database"} or not name or not all(p.isidentifier() for p in name.split(".")):
        raise ConfigurationError(f"a django-settings URL is django-settings:package.settings[?database=ALIAS], "
                                 f"got {url!r}")  # fmt: skip
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as manage.py has it
    os.environ["DJANGO_SETTINGS_MODULE"] = name
    try:
        import django
        from django.conf import settings

        django.setup()
    except ImportError as exc:
        raise ConfigurationError(f"cannot import the Django settings {name!r}: {exc}") from exc
    except Exception as exc:  # the project's own settings failing to load
        raise ConfigurationError(f"the Django settings {name!r} fail to load: {type(exc).__name__}: {exc}") from exc
    engine = settings.SESSION_ENGINE
    if engine == "django.contrib.sessions.backends.cache":
        return _cache_source(settings, no_expiry_lifetime, batch)
    if engine not in _DB_ENGINES:
        raise ConfigurationError(f"SESSION_ENGINE {engine!r} is not Django's db, cached_db or cache engine")
    return SettingsDbSource(settings, engine, options.get("database", "default"), secret_key, batch)


def _cache_source(settings: Any, no_expiry_lifetime: float, batch: int) -> DjangoCacheSource:
    cache = settings.CACHES.get(settings.SESSION_CACHE_ALIAS, {})
    if cache.get("BACKEND") != "django.core.cache.backends.redis.RedisCache":
        raise ConfigurationError("cache sessions are read from Django's RedisCache only, "
                                 f"not {cache.get('BACKEND')!r}")  # fmt: skip
    location = cache.get("LOCATION")
    location = location[0] if isinstance(location, (list, tuple)) else str(location).split(",")[0]
    prefix = quote(str(cache.get("KEY_PREFIX", "")), safe="")
    query = f"key_prefix={prefix}&version={int(cache.get('VERSION', 1))}"
    url = f"django-cache+{location}{'&' if '?' in location else '?'}{query}"
    return DjangoCacheSource(url, no_expiry_lifetime, batch)


class SettingsDbSource(DjangoDbSource):
    """Django's session table read through the project's own database connection."""

    kind = "django-db"

    def __init__(self, settings: Any, engine: str, alias: str, secret_key: str | None, batch: int) -> None:
        from django.db import connections

        store_class = import_module(engine).SessionStore
        self.salt = "django.contrib.sessions." + store_class.__qualname__
        self.secret_key = secret_key or settings.SECRET_KEY
        self.fallback_keys = [] if secret_key else list(getattr(settings, "SECRET_KEY_FALLBACKS", []))
        self.table = store_class.get_model_class()._meta.db_table
        self.batch = batch
        try:
            self._connection = connections[alias]
            self._conn = self._connection.cursor()
            self._conn.execute(f"SELECT 1 FROM {self.table}")  # noqa: S608 (the model's own table)
            self._conn.fetchall()
        except Exception as exc:
            raise StoreUnavailableError(f"cannot read the Django session table {self.table!r} of database "
                                        f"{alias!r}: {exc}", store=self.kind, operation="open") from exc  # fmt: skip
        self._mark = "%s"

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        self._conn.execute(sql, params)
        return list(self._conn.fetchall())

    def close(self) -> None:
        """Close the cursor and Django's connection."""
        self._conn.close()
        self._connection.close()
