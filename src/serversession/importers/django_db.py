"""Django's database sessions (``django.contrib.sessions.backends.db``), read from the table.

Source URLs::

    django-db:///path/to/db.sqlite3                 the project's SQLite file
    django-db+postgresql://user:pw@host:5432/name   its PostgreSQL database

Options (query string): ``table`` (default ``django_session``) and
``store_class`` (default ``SessionStore``: the class name Django salts the
signature with, ``"django.contrib.sessions." + SessionStore.__qualname__``;
change it only for a custom engine subclass). Other options of a PostgreSQL
URL (``sslmode=require``...) go to PostgreSQL.

Each row's ``session_data`` is ``django.core.signing`` output made with the
project's ``SECRET_KEY``: it is checked and decoded here with Django's signing
module and an explicit JSON serializer, never the project's configured one
(which may be pickle). A row that does not verify, or whose payload is not JSON
(a project on ``PickleSerializer``), is refused and reported, never unpickled.
``expire_date`` is read as UTC (``USE_TZ = True``, Django's default).
The user binding is ``_auth_user_id``, where ``django.contrib.auth`` keeps it.
Rows are read in ``session_key`` order, so the cursor is the last key read.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..exceptions import ConfigurationError, StoreUnavailableError
from .base import Expired, Item, LegacySession, Refused, label

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
AUTH_USER_KEY = "_auth_user_id"


class DjangoDbSource:
    """Reads a ``django_session`` table from SQLite or PostgreSQL (see the module docs).

    Raises :class:`ConfigurationError` for a bad URL or option and
    :class:`StoreUnavailableError` when the database cannot be opened.
    """

    kind = "django-db"

    def __init__(self, url: str, secret_key: str | None, batch: int = 500) -> None:
        if not secret_key:
            raise ConfigurationError("reading Django's sessions needs the project's SECRET_KEY "
                                     "(--secret-key-env, default SERVERSESSION_IMPORT_SECRET_KEY)")  # fmt: skip
        parts = urlsplit(url)
        self._postgres = parts.scheme == "django-db+postgresql"
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        options = {k: v for k, v in pairs if k in ("table", "store_class")}
        libpq = [(k, v) for k, v in pairs if k not in options]  # sslmode=... and the like go to PostgreSQL
        if libpq and not self._postgres:
            unknown = sorted(k for k, _ in libpq)
            raise ConfigurationError(f"unknown django-db option(s) {unknown}; the options are: store_class, table")
        self.table = options.get("table", "django_session")
        store_class = options.get("store_class", "SessionStore")
        if not _IDENTIFIER.fullmatch(self.table) or not _IDENTIFIER.fullmatch(store_class):
            raise ConfigurationError("django-db table and store_class must be plain identifiers")
        self.salt = "django.contrib.sessions." + store_class
        self.secret_key = secret_key
        self.fallback_keys: list[str] = []
        self.batch = batch
        try:
            if self._postgres:
                import psycopg

                target = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(libpq), ""))
                self._conn: Any = psycopg.connect(target, connect_timeout=10, autocommit=True)
                self._mark = "%s"
            elif parts.scheme in ("django-db", "django-db+sqlite") and parts.path and not parts.netloc:
                self._conn = sqlite3.connect(f"{Path(parts.path).resolve().as_uri()}?mode=ro", uri=True)
                self._mark = "?"
            else:
                given = f"{parts.scheme}://{parts.netloc}..."
                raise ConfigurationError(f"a django-db URL is django-db:///path/to/db.sqlite3 or "
                                         f"django-db+postgresql://..., got {given}")  # fmt: skip
            self._conn.execute(f"SELECT 1 FROM {self.table} LIMIT 1").fetchall()  # noqa: S608 (checked identifier)
        except ConfigurationError:
            raise
        except Exception as exc:
            raise StoreUnavailableError(f"cannot read the Django session table {self.table!r}: {exc}",
                                        store=self.kind, operation="open") from exc  # fmt: skip

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return list(self._conn.execute(sql, params).fetchall())

    def total(self) -> int | None:
        """How many rows the table holds (live or not)."""
        return int(self._query(f"SELECT COUNT(*) FROM {self.table}")[0][0])  # noqa: S608 (checked identifier)

    def batches(self, cursor: str | None, now: float) -> Iterator[tuple[list[Item], str | None]]:
        """Rows after ``cursor`` (a session key), ``batch`` at a time, in key order."""
        after = cursor or ""
        while True:
            rows = self._query(
                f"SELECT session_key, session_data, expire_date FROM {self.table} "  # noqa: S608
                f"WHERE session_key > {self._mark} ORDER BY session_key LIMIT {int(self.batch)}",
                (after,),
            )
            if not rows:
                return
            after = str(rows[-1][0])
            more = len(rows) == self.batch
            yield [self.read_row(str(k), str(d), e, now) for k, d, e in rows], (after if more else None)
            if not more:
                return

    def read_row(self, session_key: str, session_data: str, expire_date: Any, now: float) -> Item:
        """One row, verified and decoded as JSON, or why it is refused."""
        name = label(session_key)
        try:
            expires_at = _timestamp(expire_date)
        except (TypeError, ValueError):
            return Refused(name, f"its expire_date {expire_date!r} is not a date")
        if expires_at <= now:
            return Expired(name)
        from django.core import signing

        try:
            data = signing.loads(session_data, key=self.secret_key, salt=self.salt,
                                 serializer=signing.JSONSerializer, fallback_keys=self.fallback_keys)  # fmt: skip
        except signing.BadSignature:
            return Refused(name, "its signature does not verify (another SECRET_KEY or store_class?)")
        except (ValueError, UnicodeDecodeError):
            return Refused(name, "its data is not JSON (a pickled session? SESSION_SERIALIZER): not unpickled")
        except Exception as exc:  # a truncated zlib stream and the like
            return Refused(name, f"its data cannot be decoded ({type(exc).__name__})")
        if not isinstance(data, dict):
            return Refused(name, "its data is not a mapping")
        user = data.get(AUTH_USER_KEY)
        return LegacySession(session_key, name, data, expires_at, None if user is None else str(user))

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()


def _timestamp(value: Any) -> float:
    """``expire_date`` as Unix seconds: a datetime (PostgreSQL) or SQLite's text, naive meaning UTC."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()
