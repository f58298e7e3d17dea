"""CSRF tokens bound to the session: an HMAC of a per-session secret.

Each stored session holds a random *CSRF secret* in its metadata (field ``x``,
32 bytes from :mod:`secrets`); the token is ``HMAC-SHA256(key=secret,
"serversession csrf")``. The secret never leaves the server, so only a page the
server rendered for this session carries a valid token; it is replaced at every
rotation (sign-in, privilege change), so a token seen before sign-in is useless
after it; a token reveals nothing about the session ID; checking one costs no
extra store round trip (the secret comes with the session's metadata).

A visitor with no stored session yet (a sign-in form served to a first-time
visitor) gets a *pre-session secret* in a small cookie (``<cookie name>-csrf``)
instead, and the token is derived from it the same way. Such pages create no
store entry, yet the sign-in POST is still protected (login CSRF). When the
visitor's session is first stored, that secret becomes the session's, so forms
already open keep working; sign-in then rotates it. Only a well-formed secret
(43 URL-safe characters, what the server issues) is ever adopted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

#: Methods that never need a token: they must not change state.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Request header that carries the token for JSON clients.
HEADER_NAME = "x-csrf-token"
#: Form field that carries the token for HTML forms.
FORM_FIELD = "csrf_token"


#: The shape of a secret the server issues: ``secrets.token_urlsafe(32)``.
SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")


def well_formed_secret(value: str | None) -> str | None:
    """``value`` if it looks like a secret the server issued, else None (never adopted)."""
    return value if value is not None and SECRET_PATTERN.fullmatch(value) else None


def token_for(secret: str) -> str:
    """Return the CSRF token bound to ``secret`` (a session's CSRF secret or a pre-session one)."""
    mac = hmac.new(secret.encode("utf-8"), b"serversession csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def token_matches(secret: str | None, presented: str | None) -> bool:
    """Tell, in constant time, whether ``presented`` is the token for ``secret``."""
    if not secret or not presented:
        return False
    return hmac.compare_digest(token_for(secret).encode(), presented.encode("utf-8", "replace"))
