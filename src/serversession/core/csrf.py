"""CSRF tokens bound to the session, derived rather than stored.

The token is ``HMAC-SHA256(key=session ID, "csrf")``. Only the holder of the
session ID (the browser's HttpOnly cookie, never page script) and the server
during that request can compute it, so a cross-site page cannot forge it; it
reveals nothing about the ID; it changes by itself when the ID is rotated; and it
costs no store space and no store round trip.

A visitor who has no stored session yet (a sign-in form served to a first-time
visitor) gets a *pre-session secret* in a small cookie instead, and the token is
derived from that secret the same way. This keeps such pages from creating store
entries while still protecting the sign-in POST (login CSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

#: Methods that never need a token: they must not change state.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: Request header that carries the token for JSON clients.
HEADER_NAME = "x-csrf-token"
#: Form field that carries the token for HTML forms.
FORM_FIELD = "csrf_token"


def token_for(secret: str) -> str:
    """Return the CSRF token bound to ``secret`` (a session ID or pre-session secret)."""
    mac = hmac.new(secret.encode("utf-8"), b"serversession csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def token_matches(secret: str | None, presented: str | None) -> bool:
    """Tell, in constant time, whether ``presented`` is the token for ``secret``."""
    if not secret or not presented:
        return False
    return hmac.compare_digest(token_for(secret).encode(), presented.encode("utf-8", "replace"))
