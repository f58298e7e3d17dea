"""What every HTTP integration shares, public so a framework outside this repo can use it too.

An integration translates; it decides nothing. Per request it:

1. reads the token (:meth:`~serversession.SessionManager.read_token`) and the
   client address (:func:`~serversession.core.transport.client_ip`);
2. builds :class:`~serversession.core.guard.RequestFacts` (:func:`facts_from_headers`);
3. asks ``manager.guard`` to ``throttle`` (before loading) and ``screen``, and
   carries out a :class:`~serversession.core.guard.Refusal` with
   :func:`refuse` (log line, event, then the framework's response built from
   ``refusal.status``, ``refusal.headers()`` and ``refusal.body()``);
4. loads the session, hands ``guard.observe``'s event to the listeners, checks
   CSRF with ``guard.csrf_needed`` / ``guard.check_csrf`` (reading a form body
   with :func:`token_from_form` only if ``guard.form_may_carry_token``);
5. saves as the response starts and adds :func:`response_headers`;
6. turns session errors escaping the app into answers with
   :func:`~serversession.core.guard.refusal_for_error` (503, 409, and 401 with
   ``"reauth_required": true`` for a failed ``require_recent_auth``: a
   refusal's ``body()`` carries its ``extra`` fields).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs

from ..core import csrf
from ..core.guard import (
    CONFLICT_MESSAGE,
    FORM_TYPES,
    STORE_DOWN_MESSAGE,
    Refusal,
    RequestFacts,
    body_too_large,
    refusal_for_error,
)
from ..core.lifecycle import SaveResult
from ..core.session import Session
from ..core.transport import RESPONSE_HEADER
from ..manager import AsyncSessionManager, SessionManager

__all__ = [
    "CONFLICT_MESSAGE",
    "FORM_TYPES",
    "MAX_FORM_BODY",
    "STORE_DOWN_MESSAGE",
    "Refusal",
    "RequestFacts",
    "arefuse",
    "body_too_large",
    "clear_site_data",
    "facts_from_headers",
    "log_refusal",
    "refusal_for_error",
    "refuse",
    "response_headers",
    "token_from_form",
    "vary_for",
]

#: Largest form body read to find a ``csrf_token`` field (bytes); larger gets 413.
MAX_FORM_BODY = 1024 * 1024
#: The request headers :func:`facts_from_headers` reads, lower-case.
FACT_HEADERS = ("host", "origin", "sec-fetch-site", "content-type", "content-length", "transfer-encoding",
                "x-csrf-token")  # fmt: skip
#: A refusal's log line is written at most once per (reason, method, path) in this many seconds.
LOG_EVERY = 60.0

log = logging.getLogger("serversession")
_logged: dict[tuple[str, str, str], list[float]] = {}


def facts_from_headers(method: str, path: str, scheme: str, headers: Mapping[str, str], *,
                       exempt: bool = False) -> RequestFacts:  # fmt: skip
    """:class:`RequestFacts` from a request's method, full path, scheme and headers.

    ``headers`` maps lower-case names (at least those of :data:`FACT_HEADERS`
    that are present) to values.
    """
    length = headers.get("content-length")
    has_body = "transfer-encoding" in headers or (length is not None and length.strip() not in ("", "0"))
    return RequestFacts(
        method=method,
        path=path,
        scheme=scheme,
        host=headers.get("host"),
        origin=headers.get("origin"),
        fetch_site=headers.get("sec-fetch-site"),
        content_type=headers.get("content-type"),
        has_body=has_body,
        csrf_header=headers.get(csrf.HEADER_NAME),
        exempt=exempt,
    )


def log_refusal(refusal: Refusal, facts: RequestFacts | None = None) -> None:
    """Log a refusal at WARNING with the route and the reason (never a token or ID).

    The same reason on the same route is logged once per :data:`LOG_EVERY`
    seconds, with how many were left out, so an attack cannot flood the log.
    """
    method, path = (facts.method, facts.path[:200]) if facts is not None else ("", "")
    key = (refusal.reason, method, path)
    now = time.monotonic()
    entry = _logged.get(key)
    if entry is not None and now - entry[0] < LOG_EVERY:
        entry[1] += 1
        return
    skipped = int(entry[1]) if entry is not None else 0
    if len(_logged) > 10_000:
        _logged.clear()
    _logged[key] = [now, 0]
    more = f" ({skipped} more like it since the last line)" if skipped else ""
    route = f" {method} {path}" if facts is not None else ""
    log.warning("refused%s: %d %s%s", route, refusal.status, refusal.message, more)


def refuse(refusal: Refusal, facts: RequestFacts | None, manager: SessionManager) -> None:
    """Log ``refusal`` and hand its event to ``manager``'s listeners."""
    log_refusal(refusal, facts)
    if refusal.event is not None:
        manager.emit(refusal.event)


async def arefuse(refusal: Refusal, facts: RequestFacts | None, manager: AsyncSessionManager) -> None:
    """Async twin of :func:`refuse`: async listeners are awaited."""
    log_refusal(refusal, facts)
    if refusal.event is not None:
        await manager.aemit(refusal.event)


def token_from_form(body: bytes) -> str | None:
    """Return the ``csrf_token`` field of a urlencoded form body, if any."""
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        return None
    values = fields.get(csrf.FORM_FIELD)
    return values[0] if values else None


def vary_for(session: Session) -> str | None:
    """The request header a response varies on when the request read its session."""
    if not session.accessed:
        return None
    return "Authorization" if session.via_header else "Cookie"


def clear_site_data(session: Session, result: SaveResult) -> str | None:
    """The ``Clear-Site-Data`` value for a response that ended its session by ``destroy()``."""
    directives = session.config.clear_site_data
    if not (directives and result.ended and session.destroy_requested and session.presented):
        return None
    return ", ".join(f'"{d}"' for d in directives)


def response_headers(
    result: SaveResult, existing: Iterable[str] = (), session: Session | None = None
) -> list[tuple[str, str]]:
    """The headers a save adds: ``Set-Cookie``, ``Session-Id``, ``Cache-Control``, and with
    ``session``: ``Vary`` and, at logout, ``Clear-Site-Data``.

    A response that hands out a session ID is marked ``no-store`` so no shared
    cache replays it, unless the app already chose a ``Cache-Control``
    (``existing`` header names). ``Vary`` is a field of its own (HTTP joins
    repeated ones), so an app's ``Vary`` is kept.
    """
    headers: list[tuple[str, str]] = []
    if result.set_cookies or result.header_token is not None:
        headers.extend(("Set-Cookie", cookie) for cookie in result.set_cookies)
        if result.header_token is not None:
            headers.append((RESPONSE_HEADER, result.header_token))
        if not any(name.lower() == "cache-control" for name in existing):
            headers.append(("Cache-Control", "no-store"))
    if session is not None:
        vary = vary_for(session)
        if vary is not None:
            headers.append(("Vary", vary))
        if result.ended:
            cleared = clear_site_data(session, result)
            if cleared is not None:
                headers.append(("Clear-Site-Data", cleared))
    return headers
