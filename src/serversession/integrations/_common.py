"""Pieces every HTTP integration shares: CSRF enforcement and JSON error bodies.

Kept framework-free so the ASGI and WSGI middleware (and through them Flask)
make the same decisions with the same words.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus
from urllib.parse import parse_qs

from ..core import csrf
from ..core.config import SessionConfig
from ..core.events import EventKind, SessionEvent
from ..core.lifecycle import SaveResult
from ..core.session import Session
from ..core.transport import RESPONSE_HEADER
from ..exceptions import ConcurrentUpdateError, SessionEndedError, StoreError

#: Largest form body read to find a ``csrf_token`` field (bytes); larger gets 413.
MAX_FORM_BODY = 1024 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
STORE_DOWN_MESSAGE = "session store unavailable, please retry"
CONFLICT_MESSAGE = "the session changed meanwhile, please retry"


def session_error_status(exc: BaseException) -> tuple[int, str] | None:
    """The answer to a session-layer error that escaped the app, or None for others.

    A store failure is 503 (nothing was lost, retry); a ``modify`` that lost
    every race or a session ended by another request meanwhile is 409 (retry
    after reloading). Neither is the app's bug, so neither may become a 500.
    """
    if isinstance(exc, StoreError):
        return 503, STORE_DOWN_MESSAGE
    if isinstance(exc, (ConcurrentUpdateError, SessionEndedError)):
        return 409, CONFLICT_MESSAGE
    return None


def csrf_required(config: SessionConfig, method: str, path: str) -> bool:
    """Whether a request needs a CSRF token: unsafe method, not under an exempt path.

    Exempt paths match whole segments: ``/webhook`` exempts ``/webhook`` and
    ``/webhook/github``, not ``/webhook-admin``.
    """
    if not config.csrf or method.upper() in csrf.SAFE_METHODS:
        return False
    for prefix in config.csrf_exempt_paths:
        base = prefix.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return False
    return True


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


def vary_for(session: Session) -> str | None:
    """The request header a response varies on when the request read its session."""
    if not session.accessed:
        return None
    return "Authorization" if session.via_header else "Cookie"


def response_headers(result: SaveResult, existing: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The headers a save adds to a response: ``Set-Cookie``, ``Session-Id``, ``Cache-Control``.

    Empty when the save changed nothing the client holds. A response that hands
    out a session ID is marked ``no-store`` so no shared cache replays it, unless
    the app already chose a ``Cache-Control`` (``existing`` header names).
    """
    if not result.set_cookies and result.header_token is None:
        return []
    headers = [("Set-Cookie", cookie) for cookie in result.set_cookies]
    if result.header_token is not None:
        headers.append((RESPONSE_HEADER, result.header_token))
    if not any(name.lower() == "cache-control" for name in existing):
        headers.append(("Cache-Control", "no-store"))
    return headers


def error_headers(status: int, body: bytes) -> list[tuple[str, str]]:
    """Headers of a JSON error response from :func:`error_body` (503 gets ``Retry-After: 1``)."""
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers.append(("Retry-After", "1"))
    return headers
