"""Flask-Session's Redis sessions (``SESSION_TYPE = "redis"``, Flask-Session 0.7 and 0.8).

Source URL: ``flask-session+redis://HOST:PORT/DB`` (``+rediss://`` for TLS),
with options ``key_prefix`` (``SESSION_KEY_PREFIX``, default ``session:``),
``signed`` (``1`` when the app sets ``SESSION_USE_SIGNER``; then the app's
``SECRET_KEY`` is needed, as the cookie holds the ID signed with it) and
``user_key`` (the session key holding the signed-in user, default
``_user_id``, where Flask-Login keeps it; empty for none).

Flask-Session files a session under ``<key_prefix><sid>`` as msgpack (or
JSON with ``SESSION_SERIALIZATION_FORMAT = "json"``), decoded here with
msgspec, with no types beyond plain data: a value msgpack carries as a
timestamp, bytes or an extension type is refused and reported by key, and so is
a pickle (left by Flask-Session before 0.7), which is never loaded. The cookie
value is the sid, or with ``signed=1`` the sid signed as Flask-Session signs it
(itsdangerous, salt ``flask-session``): that is the value the new session is
filed under. ``_permanent`` becomes a persistent cookie; the remaining time to
live the expiry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..exceptions import ConfigurationError
from ._redis import RedisScan, glob_escape, split_options
from .base import Expired, Item, LegacySession, Refused, label

_PICKLE_PROTOCOL_2_PLUS = 0x80


class FlaskSessionSource:
    """Reads Flask-Session's sessions from one Redis server (see the module docs).

    Raises :class:`ConfigurationError` for a bad URL, a missing secret key or a
    missing msgspec, and :class:`~serversession.exceptions.StoreUnavailableError`
    when Redis fails.
    """

    kind = "flask-session"

    def __init__(self, url: str, secret_key: str | None, no_expiry_lifetime: float, batch: int = 500) -> None:
        redis_url, options = split_options(url, self.kind, {"key_prefix", "signed", "user_key"})
        self.prefix = options.get("key_prefix", "session:")
        self.user_key = options.get("user_key", "_user_id")
        signed = options.get("signed", "0")
        if signed not in ("0", "1"):
            raise ConfigurationError(f"flask-session signed is 0 or 1, got {signed!r}")
        self._signer: Any = None
        if signed == "1":
            if not secret_key:
                raise ConfigurationError("signed=1 needs the Flask app's SECRET_KEY "
                                         "(--secret-key-env, default SERVERSESSION_IMPORT_SECRET_KEY)")  # fmt: skip
            from itsdangerous import Signer

            self._signer = Signer(secret_key, salt="flask-session", key_derivation="hmac")
        try:
            import msgspec
        except ImportError as exc:
            raise ConfigurationError("reading Flask-Session's sessions needs msgspec (pip install msgspec)") from exc
        self._msgpack = msgspec.msgpack.Decoder()
        self._json = msgspec.json.Decoder()
        self._decode_error = msgspec.DecodeError
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
        """One stored session decoded as plain data, or why it is refused."""
        sid = key.decode("utf-8", "replace").removeprefix(self.prefix)
        name = label(sid)
        if value is None or ttl_ms == -2:
            return Expired(name)
        if value[:1] == bytes([_PICKLE_PROTOCOL_2_PLUS]):
            return Refused(name, "it is pickled (written before Flask-Session 0.7): not unpickled")
        data: Any
        try:
            data = self._msgpack.decode(value)
        except self._decode_error:
            try:
                data = self._json.decode(value)
            except self._decode_error:
                return Refused(name, "it is neither msgpack nor JSON")
        if not isinstance(data, dict):
            return Refused(name, f"it holds a {type(data).__name__}, not a session mapping")
        token = self._signer.sign(sid.encode()).decode() if self._signer is not None else sid
        user = data.get(self.user_key) if self.user_key else None
        expires_at = now + (ttl_ms / 1000 if ttl_ms >= 0 else self.lifetime)
        persistent = data.get("_permanent") is True
        return LegacySession(token, name, data, expires_at, None if user is None else str(user), persistent)

    def close(self) -> None:
        """Close the Redis connection."""
        self._scan.close()
