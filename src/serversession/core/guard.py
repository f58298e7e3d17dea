"""Theory of operation: the request boundary, decided once for every integration.

What a request must carry, what it may not, and what the answer looks like when
it is refused are decided here, from plain facts an integration reads off its
framework's request (:class:`RequestFacts`). The guard returns either nothing
(go on) or a :class:`Refusal`: a status, a readable message, the reason, and
the headers and JSON body of the answer. ASGI, WSGI, Flask and Django carry out
that answer; none of them repeats a check or builds its own error body.

A request meets the guard in this order (each step configurable in
:class:`~serversession.SessionConfig`; ``docs/security.md`` maps each to the
requirement it answers):

1. :meth:`RequestGuard.throttle`, before the session is loaded: an address
   that presented too many unknown session IDs gets 429 with no store round
   trip (:mod:`.guessing`).
2. :meth:`RequestGuard.screen`, before the view: an unsafe request from another
   site (``Sec-Fetch-Site: cross-site``, or an ``Origin`` that is not the
   request's own nor trusted) is 403 even with a valid CSRF token; an unsafe
   request to a JSON-only path without a JSON ``Content-Type`` is 415.
3. :meth:`RequestGuard.observe`, after the load: misses are counted for step 1.
4. :meth:`RequestGuard.check_csrf`, after the load, on unsafe methods: the
   token from ``X-CSRF-Token`` or the ``csrf_token`` form field must belong to
   the session (403 otherwise).

Ambiguous cookies (the session cookie sent twice) are refused where the token is
read (:func:`~serversession.core.transport.read_token`): no session is loaded.

Rules: every refusal says what to send or how to opt out; no message ever holds
a token or a session ID; unsafe means any method but GET, HEAD, OPTIONS and TRACE.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import (
    ConcurrentUpdateError,
    ReauthenticationRequired,
    SessionEndedError,
    SessionLimitError,
    StoreError,
)
from . import csrf
from .config import SessionConfig, normal_origin
from .events import EventKind, SessionEvent
from .guessing import GuessingMonitor
from .ids import storage_key
from .session import Session
from .transport import IncomingToken, printable, session_id_from_token

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
#: A WebSocket handshake's scheme and the page origin it belongs to.
_HTTP_SCHEMES = {"ws": "http", "wss": "https"}
STORE_DOWN_MESSAGE = "session store unavailable, please retry"
CONFLICT_MESSAGE = "the session changed meanwhile, please retry"
REAUTH_MESSAGE = (
    "re-authentication required: this action needs a recent sign-in; prove who you are again "
    "(e.g. POST your password again) and retry"
)
_EXEMPT_HINT = (
    "exempt a route with SessionConfig(csrf_exempt_paths=[...]) or your framework's own marker (Flask, Quart, aiohttp: "
    "@csrf_exempt; Litestar: opt={\"csrf_exempt\": True}; Django: @csrf_exempt); see docs/integrations.md"
)


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the guard needs to know about a request, read off any framework's request.

    ``path`` is the full path (a mount's prefix included); ``scheme`` and
    ``host`` (the ``Host`` header, port included) give the request's own origin
    as the server sees it; ``origin``, ``fetch_site`` (``Sec-Fetch-Site``),
    ``content_type`` and ``csrf_header`` (``X-CSRF-Token``) are those headers
    or None; ``has_body`` says whether a body follows (``Content-Length`` above
    0 or ``Transfer-Encoding``); ``exempt`` is the framework's own per-route
    exemption from the CSRF and cross-site checks (Flask's ``@csrf_exempt``).
    """

    method: str
    path: str
    scheme: str = "http"
    host: str | None = None
    origin: str | None = None
    fetch_site: str | None = None
    content_type: str | None = None
    has_body: bool = False
    csrf_header: str | None = None
    exempt: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """The answer to a refused request: ``{"error": message}`` with ``status``.

    ``reason`` is a short code for logs and metrics ("csrf_missing",
    "cross_site", "json_only", "guessing", "store_unavailable", ...);
    ``retry_after`` (seconds) becomes a ``Retry-After`` header; ``event`` is the
    lifecycle event the integration hands to the manager's listeners, if any;
    ``extra`` holds more JSON fields for the body, for a client to act on
    without parsing the message (``{"reauth_required": True}``).
    """

    status: int
    message: str
    reason: str
    retry_after: int | None = None
    event: SessionEvent | None = None
    extra: Mapping[str, Any] | None = None

    def content(self) -> dict[str, Any]:
        """The body as a mapping: ``{"error": message}`` and the ``extra`` fields."""
        return {"error": self.message, **(self.extra or {})}

    def body(self) -> bytes:
        """The JSON body: ``{"error": message}`` and the ``extra`` fields."""
        return json.dumps(self.content()).encode()

    def headers(self, body: bytes | None = None) -> list[tuple[str, str]]:
        """``Content-Type``, ``Content-Length`` (of ``body``, default :meth:`body`),
        ``Cache-Control: no-store`` and ``Retry-After`` where it applies."""
        length = len(self.body() if body is None else body)
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(length)),
            ("Cache-Control", "no-store"),
        ]
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
        return headers


#: The answer when the store fails: nothing was written, retry in a second.
STORE_UNAVAILABLE = Refusal(503, STORE_DOWN_MESSAGE, "store_unavailable", retry_after=1)
#: The answer to :class:`~serversession.exceptions.ReauthenticationRequired` escaping the app.
REAUTH_REQUIRED = Refusal(401, REAUTH_MESSAGE, "reauth_required", extra={"reauth_required": True})


def refusal_for_error(exc: BaseException) -> Refusal | None:
    """The answer to a session-layer error that escaped the app, or None for others.

    A store failure is 503 (nothing was lost, retry in a second); a ``modify``
    that lost every race, or a session ended by another request meanwhile, is
    409 (retry after reloading). Neither is the app's bug, so neither may
    become a 500. A sign-in refused by the per-user cap is 409 too, saying why.
    An action that needs a recent authentication the session lacks
    (``require_recent_auth``) is 401 with ``"reauth_required": true``.
    """
    if isinstance(exc, StoreError):
        return STORE_UNAVAILABLE
    if isinstance(exc, ReauthenticationRequired):
        return REAUTH_REQUIRED
    if isinstance(exc, SessionLimitError):
        return Refusal(409, f"this account is signed in on the most devices allowed ({exc.limit}): "
                            "sign out on one of them, then sign in again", "session_limit")  # fmt: skip
    if isinstance(exc, (ConcurrentUpdateError, SessionEndedError)):
        return Refusal(409, CONFLICT_MESSAGE, "conflict")
    return None


def body_too_large(limit: int) -> Refusal:
    """413 for a form body too large to look for a ``csrf_token`` field in."""
    return Refusal(413, f"request body too large to check its csrf_token field (limit {limit} bytes)", "too_large")


def _under(path: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    """Whether ``path`` is one of ``prefixes`` or below one, by whole segments."""
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if path == base or path.startswith(base + "/"):
            return True
    return False


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _shown(text: str) -> str:
    """Client-sent text made safe for a message and a log line."""
    return printable(text)[:100]


class RequestGuard:
    """The request boundary's decisions for one :class:`SessionConfig`; see the module docs.

    A manager builds one (``manager.guard``) and every integration asks it. It
    is pure apart from the guessing counters it keeps (:mod:`.guessing`).
    """

    __slots__ = ("_exempt_paths", "_json_paths", "_trusted", "config", "monitor")

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.monitor = GuessingMonitor(config.guess_limit, config.guess_window)
        self._exempt_paths = tuple(config.csrf_exempt_paths)
        self._json_paths = tuple(config.json_only_paths)
        self._trusted = frozenset(config.trusted_origins)

    # -- before the load -----------------------------------------------------------
    def throttle(self, token: IncomingToken, ip: str, now: float) -> Refusal | None:
        """429 for an unknown session ID from a blocked address, unless its paced lookup is due.

        Costs nothing while no address is blocked. Tokens that are not well
        formed (or not validly signed) never reach the store, so they are not
        refused; sessions this process served as valid go through; others are
        looked up at the limit's pace (:meth:`GuessingMonitor.lookup_allowed`)
        and refused in between, with no store round trip.
        """
        if token.value is None or not self.monitor._blocked:  # the read path's one check
            return None
        wait = self.monitor.blocked_for(ip, now)
        if wait is None:
            return None
        session_id = session_id_from_token(self.config, token.value)
        if session_id is None:
            return None
        if self.monitor.known_valid(storage_key(session_id), now) or self.monitor.lookup_allowed(ip, now):
            return None
        seconds = max(1, math.ceil(wait))
        return Refusal(
            429,
            f"too many requests with unknown or expired session IDs from your address; retry in a moment, "
            f"or sign in again (the block ends within {seconds} s)",
            "guessing",
            retry_after=1,
        )

    # -- before the view -----------------------------------------------------------
    def unsafe(self, facts: RequestFacts) -> bool:
        """Whether the method may change state (anything but GET, HEAD, OPTIONS, TRACE)."""
        return facts.method.upper() not in csrf.SAFE_METHODS

    def exempt(self, facts: RequestFacts) -> bool:
        """Whether the route skips the CSRF and cross-site checks (webhooks signed another way)."""
        return facts.exempt or _under(facts.path, self._exempt_paths)

    def screen(self, facts: RequestFacts, *, via_header: bool, now: float = 0.0) -> Refusal | None:
        """Cross-site refusal (403) and JSON-only paths (415); None to go on."""
        if not self.unsafe(facts):
            return None
        refusal = None if via_header else self._cross_site(facts)
        if refusal is None and self._json_paths and _under(facts.path, self._json_paths):
            refusal = self._json_only(facts)
        if refusal is not None:
            event = SessionEvent(EventKind.REFUSED, now, reason=f"{refusal.reason}: {facts.method} {facts.path[:200]}")
            return Refusal(refusal.status, refusal.message, refusal.reason, event=event)
        return None

    def _cross_site(self, facts: RequestFacts) -> Refusal | None:
        if not self.config.refuse_cross_site or self.exempt(facts):
            return None
        site = facts.fetch_site.strip().lower() if facts.fetch_site is not None else None
        if site == "same-origin":
            return None  # the browser's own verdict, which no page can forge (right behind a Host-rewriting proxy)
        if site == "cross-site":
            return Refusal(
                403,
                "cross-site request refused: the browser says it came from another site (Sec-Fetch-Site: "
                "cross-site); a page of yours on another origin must be listed in SessionConfig(trusted_origins=...)",
                "cross_site",
            )
        if facts.origin is None:
            return None  # API clients and old browsers: the CSRF token decides
        origin = normal_origin(facts.origin)
        if origin is not None and (origin in self._trusted or self._same_origin(origin, facts)):
            return None
        return Refusal(
            403,
            f"cross-site request refused: Origin {_shown(facts.origin)!r} is not this site's origin; "
            "list it in SessionConfig(trusted_origins=[...]) if it is yours",
            "cross_site",
        )

    @staticmethod
    def _same_origin(origin: str, facts: RequestFacts) -> bool:
        """``origin`` is the request's own, as the server saw it.

        A TLS-terminating proxy makes an ``https://`` page's request reach us as
        ``http``: an ``https`` origin for the same host is accepted then (no
        attacker can forge a secure origin), never the other way round.
        """
        if not facts.host:
            return False
        scheme = _HTTP_SCHEMES.get(facts.scheme.lower(), facts.scheme.lower())
        own = normal_origin(f"{scheme}://{facts.host.strip()}")
        if own is None:
            return False
        if origin == own:
            return True
        if scheme == "http" and origin.startswith("https://"):
            host = own[len("http://") :]
            bare = host.rsplit(":", 1)[0] if host.rsplit(":", 1)[-1] in ("80", "443") else host
            return origin[len("https://") :] in (host, bare)
        return False

    def _json_only(self, facts: RequestFacts) -> Refusal | None:
        if facts.content_type is not None and facts.content_type.strip():
            if _is_json(facts.content_type):
                return None
            got = _shown(facts.content_type.split(";", 1)[0].strip())
            return Refusal(415, f"this endpoint accepts JSON only: send Content-Type: application/json (got {got})",
                           "json_only")  # fmt: skip
        if not facts.has_body:
            return None  # nothing to smuggle
        return Refusal(415, "this endpoint accepts JSON only: send Content-Type: application/json with the body",
                       "json_only")  # fmt: skip

    # -- after the load ------------------------------------------------------------
    def observe(self, token: IncomingToken, session: Session, ip: str, now: float) -> SessionEvent | None:
        """Count a presented session ID that did not load; return the GUESSING event
        the moment an address crosses the limit (once per block)."""
        if not session.is_new or token.value is None:
            return None
        if self.config.signer is None and session_id_from_token(self.config, token.value) is None:
            return None  # not even shaped like an ID: no store was asked, nothing was guessed
        crossed = self.monitor.record_miss(ip, now)
        if crossed is None:
            return None
        window = self.config.guess_window
        return SessionEvent(
            EventKind.GUESSING, now, reason=f"{crossed} unknown session IDs from {ip or '?'} within {window:g} s"
        )

    def saw_valid(self, session: Session, now: float) -> None:
        """Remember a session this process loaded or stored as valid: a block never refuses it.

        The managers call it after every load and save (one dict update).
        """
        if session.key is not None and self.config.guess_limit > 0:
            self.monitor.record_valid(session.key, now)

    def csrf_needed(self, facts: RequestFacts) -> bool:
        """Whether this request must carry a CSRF token (unsafe method, check on, route not exempt)."""
        return self.config.csrf and self.unsafe(facts) and not self.exempt(facts)

    @staticmethod
    def form_may_carry_token(facts: RequestFacts, *, multipart: bool = True) -> bool:
        """Whether to look in the body: no ``X-CSRF-Token`` header and a form body.

        ``multipart=False`` for an integration that reads urlencoded forms only
        (the ASGI and WSGI middleware): a multipart form then needs the header,
        and :meth:`check_csrf` says so.
        """
        if facts.csrf_header is not None or not facts.content_type:
            return False
        media = facts.content_type.split(";", 1)[0].strip().lower()
        return media in FORM_TYPES and (multipart or media != "multipart/form-data")

    def check_csrf(
        self, session: Session, presented: str | None, now: float = 0.0, facts: RequestFacts | None = None
    ) -> Refusal | None:
        """403 unless ``presented`` is this session's CSRF token (constant-time compare).

        With ``facts`` of a multipart body that was not searched (see
        :meth:`form_may_carry_token`), a missing token's message says to use the header.
        """
        if presented and session.csrf_valid(presented):
            return None
        multipart = facts is not None and (facts.content_type or "").lower().startswith("multipart/form-data")
        if not presented and multipart:
            reason, message = "csrf_missing", (
                "CSRF token missing: a multipart form's fields are not searched here; send the token in the "
                f"X-CSRF-Token header (or post the form urlencoded with a csrf_token field); {_EXEMPT_HINT}"
            )
        elif not presented:
            reason, message = "csrf_missing", (
                "CSRF token missing: send it in the X-CSRF-Token header or a csrf_token form field "
                f"(csrf_token() in templates); {_EXEMPT_HINT}"
            )
        else:
            reason, message = "csrf_invalid", (
                "CSRF token invalid: it does not belong to this session (it changes at sign-in: read it again "
                "after rotate()); send the current one in the X-CSRF-Token header or the csrf_token form field"
            )
        event = SessionEvent(EventKind.CSRF_FAILED, now, session.handle, session.user, reason.replace("_", " "))
        return Refusal(403, message, reason, event=event)
