"""Optional HMAC signatures on session IDs sent to the client.

With signing on, the cookie carries ``<id>.<tag>`` where ``tag`` is a truncated
HMAC-SHA256 of the ID under the newest key. A forged or garbage value is rejected
here, before any store round trip. Keys are a list, newest first: the newest signs,
every key verifies, so a key can be rotated without signing everybody out.
Signing adds defence in depth; the store lookup by hash remains the real check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from ..exceptions import ConfigurationError

_TAG_BYTES = 16
_MIN_KEY_BYTES = 16


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


class Signer:
    """Signs and verifies session IDs with a list of keys (newest first).

    Raises :class:`ConfigurationError` for an empty list or a key shorter than
    16 bytes.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ConfigurationError("signing needs at least one secret key")
        raw = [_as_bytes(k) for k in keys]
        if any(len(k) < _MIN_KEY_BYTES for k in raw):
            raise ConfigurationError(f"secret keys must be at least {_MIN_KEY_BYTES} bytes long")
        self._keys = [hashlib.sha256(b"serversession signing\x00" + k).digest() for k in raw]

    def _tag(self, key: bytes, session_id: str) -> str:
        mac = hmac.new(key, session_id.encode("ascii"), hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def sign(self, session_id: str) -> str:
        """Return ``session_id`` with its tag under the newest key."""
        return f"{session_id}.{self._tag(self._keys[0], session_id)}"

    def unsign(self, value: str) -> str | None:
        """Return the ID inside a signed ``value``, or None if no key verifies it.

        Every key is tried and compared in constant time.
        """
        session_id, dot, tag = value.rpartition(".")
        if not dot or not session_id.isascii() or not tag.isascii():
            return None
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(self._tag(key, session_id), tag)
        return session_id if ok else None
