"""Pieces every HTTP integration shares: CSRF enforcement and JSON error bodies.

Kept framework-free so the ASGI and WSGI middleware (and through them Flask)
make the same decisions with the same words.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from ..core import csrf
from ..core.config import SessionConfig
from ..core.events import EventKind, SessionEvent
from ..core.session import Session

#: Largest form body read to find a ``csrf_token`` field (bytes); larger gets 413.
MAX_FORM_BODY = 1024 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
STORE_DOWN_MESSAGE = "session store unavailable, please retry"


def csrf_required(config: SessionConfig, method: str, path: str) -> bool:
    """Whether a request needs a CSRF token: unsafe method, not an exempt path."""
    if not config.csrf or method.upper() in csrf.SAFE_METHODS:
        return False
    return not any(path.startswith(prefix) for prefix in config.csrf_exempt_paths)


def token_from_form(body: bytes) -> str | None:
    """Return the ``csrf_token`` field of a urlencoded form body, if any."""
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        return None
    values = fields.get(csrf.FORM_FIELD)
    return values[0] if values else None


def csrf_failure(session: Session, presented: str | None) -> str | None:
    """Return why the CSRF check fails ("missing", "mismatch"), or None if it passes."""
    if not presented:
        return "missing"
    return None if session.csrf_valid(presented) else "mismatch"


def csrf_event(session: Session, reason: str, now: float) -> SessionEvent:
    """The CSRF_FAILED event for a refused request (handle and user, no secrets)."""
    return SessionEvent(EventKind.CSRF_FAILED, now, session.handle, session.user, f"CSRF token {reason}")


def error_body(message: str) -> bytes:
    """The JSON error body used by every integration: ``{"error": message}``."""
    return json.dumps({"error": message}).encode()


def csrf_message(reason: str) -> str:
    """Human text for a CSRF failure reason."""
    return "CSRF token missing" if reason == "missing" else "CSRF token invalid"
