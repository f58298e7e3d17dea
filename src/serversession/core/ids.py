"""Session IDs, their storage keys and their public handles.

Three different strings describe one session, and only the first one is secret:

* the **session ID** (43 URL-safe characters, 256 bits from :mod:`secrets`) lives
  only in the client's cookie or ``Authorization`` header;
* the **storage key** is the SHA-256 of the ID: the store never sees the ID, so a
  dump, backup or ``MONITOR`` of the store yields nothing that can be replayed;
* the **public handle** is derived one-way from the storage key: it names a session
  in a "your active sessions" list and in logs, and it cannot be turned back into
  the storage key, let alone the ID.

A fast hash suffices (no salt, no slow KDF) because the ID has 256 bits of entropy:
there is no dictionary to attack.

A session imported from another framework (``serversession import``) keeps the
cookie value that framework issued, its *legacy ID*, until its first request: it
is filed under the same SHA-256 of that value, and only a record carrying the
import marker is ever found through a legacy-shaped ID (see the lifecycle).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

#: Bytes of randomness in a session ID (256 bits).
ID_BYTES = 32
#: Length of a session ID as sent to the client.
ID_LENGTH = 43
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
#: The cookie values other frameworks issue: Django's 32 lower-case letters and digits,
#: Flask-Session's URL-safe ID, optionally ``.``-signed with itsdangerous. 20 characters
#: at least, so no short (guessable) value is ever looked up.
_LEGACY_PATTERN = re.compile(r"[A-Za-z0-9_.-]{20,128}")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_session_id() -> str:
    """Return a fresh session ID: 256 bits from the OS CSPRNG, URL-safe base64."""
    return secrets.token_urlsafe(ID_BYTES)


def is_well_formed(session_id: str) -> bool:
    """Tell whether ``session_id`` has the shape of an ID we issue.

    Checked before any store round trip so that garbage costs nothing.
    """
    return _ID_PATTERN.fullmatch(session_id) is not None


def is_legacy_shaped(token: str) -> bool:
    """Tell whether ``token`` has the shape of a session ID another framework issued
    (checked only when ``SessionConfig.accept_imported`` is on)."""
    return _LEGACY_PATTERN.fullmatch(token) is not None


def storage_key(session_id: str) -> str:
    """Return the key the store files this session under: SHA-256 of the ID."""
    return _b64(hashlib.sha256(session_id.encode("ascii")).digest())


def public_handle(key: str) -> str:
    """Return the public handle of the session stored under ``key``.

    128 bits of a domain-separated SHA-256 of the storage key: unique enough to
    name a user's sessions, useless for reaching the session itself.
    """
    return _b64(hashlib.sha256(b"serversession handle\x00" + key.encode("ascii")).digest()[:16])
