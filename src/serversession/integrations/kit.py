"""What every HTTP integration shares, public so a framework outside this repo can use it too.

An integration translates; it decides nothing. The request cycle is three calls:

``begin`` / ``abegin``
    before the view: reads the token and the client address, asks
    ``manager.guard`` to ``throttle`` and ``screen`` the request, loads the
    session (a store failure is the 503 refusal, never a fresh session), hands
    the guard's guessing event to the listeners and checks CSRF (reading a form
    field through the integration's ``form_token`` callback only when the guard
    says a form may carry it). Returns :class:`Opened` or a :class:`Refusal`
    that is already logged and emitted: the integration answers it with
    ``refusal.status``, ``refusal.headers(body)`` and ``body = refusal.body()``.
``finish`` / ``afinish``
    as the response starts: saves and returns the headers to add
    (``Set-Cookie``, ``Session-Id``, ``Cache-Control``, ``Vary``,
    ``Clear-Site-Data``), or a :class:`Refusal` (503 store down, 409 refused
    sign-in or lost race) that replaces the response.
``answer_for``
    an exception escaping the view: the answer for session errors (503, 409,
    401 with ``"reauth_required": true``), None for the app's own errors.

The pieces they are made of (:func:`facts_from_headers`, :func:`refuse`,
:func:`response_headers`, :func:`token_from_form`, ...) stay public for an
integration whose framework splits the request differently (the Django
middleware checks CSRF in ``process_view``). ``docs/integrations.md`` is the
checklist every integration meets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qs

from ..core import csrf
from ..core.csrf import SAFE_METHODS
from ..core.guard import (
    CONFLICT_MESSAGE,
    FORM_TYPES,
    STORE_DOWN_MESSAGE,
    STORE_UNAVAILABLE,
    Refusal,
    RequestFacts,
    body_too_large,
    refusal_for_error,
)
from ..core.lifecycle import SaveResult
from ..core.session import Session, SessionNotLoadedError, read_failed
from ..core.transport import RESPONSE_HEADER, IncomingToken, client_ip
from ..exceptions import SessionError, StoreError
from ..manager import AsyncSessionManager, SessionManager
from ._loading import alazy_session, lazy_session

V = TypeVar("V")

__all__ = [
    "CONFLICT_MESSAGE",
    "CSRF_EXEMPT_ATTR",
    "FACT_HEADERS",
    "FORM_TYPES",
    "HANDSHAKE",
    "MAX_FORM_BODY",
    "SESSION_HEADERS",
    "STORE_DOWN_MESSAGE",
    "AsyncFormToken",
    "FormToken",
    "Opened",
    "Refusal",
    "RequestFacts",
    "SessionNotLoadedError",
    "aadmit",
    "abegin",
    "admit",
    "afinish",
    "alazy_session",
    "answer_for",
    "arefuse",
    "begin",
    "body_too_large",
    "clear_site_data",
    "csrf_exempt",
    "facts_from_headers",
    "finish",
    "is_csrf_exempt",
    "lazy_session",
    "log_refusal",
    "pick_headers",
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
#: The method of a WebSocket handshake's facts (the guard screens it like an unsafe request).
HANDSHAKE = "WEBSOCKET"
#: Every request header the cycle reads (:func:`pick_headers` keeps these), lower-case.
SESSION_HEADERS = frozenset(("cookie", "authorization", "user-agent", "x-forwarded-for", *FACT_HEADERS))
#: The attribute :func:`csrf_exempt` sets on a view.
CSRF_EXEMPT_ATTR = "_serversession_csrf_exempt"
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


#: Reads the ``csrf_token`` field of the request's form: the token, None when
#: there is none, or a Refusal to answer instead (such as :func:`body_too_large`).
FormToken = Callable[[], "str | Refusal | None"]
#: The async twin of :data:`FormToken`.
AsyncFormToken = Callable[[], Awaitable["str | Refusal | None"]]


@dataclass(slots=True)
class Opened:
    """A request the guard let through, with its loaded session.

    ``facts`` is None for a safe method (nothing was screened); ``ip`` is the
    client address the session's metadata and the guessing counters use.
    """

    session: Session
    ip: str
    facts: RequestFacts | None


def pick_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The request headers the cycle reads (:data:`SESSION_HEADERS`), by lower-case name.

    Repeated ``Cookie`` fields are joined with ``"; "`` (HTTP/2 splits them), so
    a session cookie sent twice is seen twice and refused as ambiguous; for any
    other header the first field wins.
    """
    found: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        if name not in SESSION_HEADERS:
            continue
        if name == "cookie" and name in found:
            found[name] += "; " + value
        elif name not in found:
            found[name] = value
    return found


def csrf_exempt(view: V) -> V:
    """Mark a view (a function or handler) exempt from the CSRF check: a webhook signed another way.

    The marker Flask, Quart and aiohttp read (:func:`is_csrf_exempt`); Litestar
    exempts by the handler's ``opt`` instead. Cross-site screening still applies
    to WebSocket handshakes.
    """
    setattr(view, CSRF_EXEMPT_ATTR, True)
    return view


def is_csrf_exempt(view: object) -> bool:
    """Whether :func:`csrf_exempt` marked ``view`` (None and unmarked views are not exempt)."""
    return bool(getattr(view, CSRF_EXEMPT_ATTR, False))


def _parse(manager: SessionManager | AsyncSessionManager, method: str, path: str, scheme: str,
           headers: Mapping[str, str], peer: str | None, exempt: bool, websocket: bool,
           ) -> tuple[IncomingToken, str, RequestFacts | None]:  # fmt: skip
    ip = client_ip(manager.config, peer, headers.get("x-forwarded-for"))
    token = manager.read_token(headers.get("cookie"), headers.get("authorization"))
    if websocket:  # screened like an unsafe request: cross-site WebSocket hijacking rides on the cookie
        method = HANDSHAKE
    elif method in SAFE_METHODS:
        return token, ip, None  # safe methods pass screen() and the CSRF check: no facts to gather
    return token, ip, facts_from_headers(method, path, scheme, headers, exempt=exempt)


def begin(manager: SessionManager, method: str, path: str, scheme: str, headers: Mapping[str, str],
          peer: str | None, *, exempt: bool = False, form_token: FormToken | None = None,
          multipart: bool = False, websocket: bool = False, lazy: bool = False) -> Opened | Refusal:  # fmt: skip
    """Admit a request before its view runs: :class:`Opened`, or the :class:`Refusal` to answer.

    ``headers`` maps lower-case names to values (:func:`pick_headers`); ``path``
    is the full path (mount prefix included); ``peer`` the socket's client
    address; ``exempt`` the framework's own per-route CSRF exemption;
    ``form_token`` reads the form's ``csrf_token`` field (called only when the
    request has no ``X-CSRF-Token`` header and a form body); ``multipart`` says
    it parses multipart forms too. ``websocket=True`` for a WebSocket handshake:
    screened like an unsafe request (cross-site WebSocket hijacking), no CSRF
    token asked (``method`` is then ignored). Only the integration can tell a
    handshake: an HTTP request is never one, whatever its method is called.

    ``lazy=True`` defers the store read to the session's first use (see
    :func:`lazy_session`): a request that never touches it costs no store
    command, and a store failure then raises ``StoreError`` at that first use
    (answer it with :func:`answer_for`). An unsafe request that needs a CSRF check
    is read before the view all the same; so is one without a token (reading it
    costs nothing). Off by default, since on an async manager the app must then
    ``await session.aload()`` before its synchronous use.
    """
    token, ip, facts = _parse(manager, method, path, scheme, headers, peer, exempt, websocket)
    return admit(manager, token, ip, facts, headers.get("user-agent", ""), form_token=form_token,
                 multipart=multipart, websocket=websocket, lazy=lazy)  # fmt: skip


async def abegin(manager: AsyncSessionManager, method: str, path: str, scheme: str, headers: Mapping[str, str],
                 peer: str | None, *, exempt: bool = False, form_token: AsyncFormToken | None = None,
                 multipart: bool = False, websocket: bool = False, lazy: bool = False) -> Opened | Refusal:  # fmt: skip
    """Async twin of :func:`begin` (the load does not block the event loop).

    With ``lazy=True`` a synchronous first use of the session on the event loop
    raises :class:`~serversession.core.session.SessionNotLoadedError`: the app
    calls ``await session.aload()`` first.
    """
    token, ip, facts = _parse(manager, method, path, scheme, headers, peer, exempt, websocket)
    return await aadmit(manager, token, ip, facts, headers.get("user-agent", ""), form_token=form_token,
                        multipart=multipart, websocket=websocket, lazy=lazy)  # fmt: skip


def admit(manager: SessionManager, token: IncomingToken, ip: str, facts: RequestFacts | None, user_agent: str = "",
          *, form_token: FormToken | None = None, multipart: bool = False, websocket: bool = False,
          lazy: bool = False) -> Opened | Refusal:  # fmt: skip
    """:func:`begin` for an integration that reads the token, address and facts itself
    (the WSGI middleware builds its facts from ``environ``; a handshake's method is
    :data:`HANDSHAKE`)."""
    guard = manager.guard
    now = manager.clock()
    refusal = guard.throttle(token, ip, now)
    if refusal is None and facts is not None:
        refusal = guard.screen(facts, via_header=token.via_header, now=now)
    if refusal is not None:
        refuse(refusal, facts, manager)
        return refusal
    checked = facts is not None and not websocket and guard.csrf_needed(facts)
    session = lazy_session(manager, token, user_agent, ip, now)
    if not lazy or checked:  # CSRF needs the session's secret before the view
        try:
            session.load()
        except StoreError as exc:
            log.warning("session store failed on load: %s", exc)
            return STORE_UNAVAILABLE
    if facts is not None and checked:
        presented = facts.csrf_header
        searched = False
        if presented is None and form_token is not None and guard.form_may_carry_token(facts, multipart=multipart):
            found = form_token()
            if isinstance(found, Refusal):
                log_refusal(found, facts)
                return found
            presented, searched = found, True
        # The facts tell check_csrf a multipart form went unsearched: not when it was searched.
        refusal = guard.check_csrf(session, presented, now, None if searched else facts)
        if refusal is not None:
            refuse(refusal, facts, manager)
            return refusal
    return Opened(session, ip, facts)


async def aadmit(manager: AsyncSessionManager, token: IncomingToken, ip: str, facts: RequestFacts | None,
                 user_agent: str = "", *, form_token: AsyncFormToken | None = None,
                 multipart: bool = False, websocket: bool = False, lazy: bool = False) -> Opened | Refusal:  # fmt: skip
    """Async twin of :func:`admit`."""
    guard = manager.guard
    now = manager.clock()
    refusal = guard.throttle(token, ip, now)
    if refusal is None and facts is not None:
        refusal = guard.screen(facts, via_header=token.via_header, now=now)
    if refusal is not None:
        await arefuse(refusal, facts, manager)
        return refusal
    checked = facts is not None and not websocket and guard.csrf_needed(facts)
    session = await alazy_session(manager, token, user_agent, ip, now)
    if not lazy or checked:
        try:
            await session.aload()
        except StoreError as exc:
            log.warning("session store failed on load: %s", exc)
            return STORE_UNAVAILABLE
    if facts is not None and checked:
        presented = facts.csrf_header
        searched = False
        if presented is None and form_token is not None and guard.form_may_carry_token(facts, multipart=multipart):
            found = await form_token()
            if isinstance(found, Refusal):
                log_refusal(found, facts)
                return found
            presented, searched = found, True
        # The facts tell check_csrf a multipart form went unsearched: not when it was searched.
        refusal = guard.check_csrf(session, presented, now, None if searched else facts)
        if refusal is not None:
            await arefuse(refusal, facts, manager)
            return refusal
    return Opened(session, ip, facts)


def finish(manager: SessionManager, opened: Opened, existing: Iterable[str] = (),
           status: int | None = None) -> list[tuple[str, str]] | Refusal:  # fmt: skip
    """Save as the response starts: the headers to add, or the :class:`Refusal` that replaces
    the response (503 when the store fails, 409 for a refused sign-in or a lost race).

    ``existing`` are the response's header names (an app's own ``Cache-Control`` is kept),
    ``status`` its status code. A deferred session the request never used adds
    nothing: it was not read, so there is nothing to save, renew or vary on. One
    whose read failed at its first use, answered 500 (a framework between us and
    the app turned the ``StoreError`` into its generic error), gets the 503 instead.
    """
    if not opened.session.loaded:
        return _unread(opened.session, status)
    try:
        result = manager.save(opened.session, ip=opened.ip)
    except SessionError as exc:
        return _save_refused(exc)
    return _added(result, existing, opened.session)


async def afinish(manager: AsyncSessionManager, opened: Opened, existing: Iterable[str] = (),
                  status: int | None = None) -> list[tuple[str, str]] | Refusal:  # fmt: skip
    """Async twin of :func:`finish`."""
    if not opened.session.loaded:
        return _unread(opened.session, status)
    try:
        result = await manager.asave(opened.session, ip=opened.ip)
    except SessionError as exc:
        return _save_refused(exc)
    return _added(result, existing, opened.session)


def _unread(session: Session, status: int | None) -> list[tuple[str, str]] | Refusal:
    if read_failed(session) and status in (None, 500):
        return STORE_UNAVAILABLE
    return []


def _save_refused(exc: SessionError) -> Refusal:
    if isinstance(exc, StoreError):
        log.warning("session store failed on save: %s", exc)
        return STORE_UNAVAILABLE
    refusal = refusal_for_error(exc)
    if refusal is None:
        raise exc
    # A refused sign-in (cap) or a lost race: answered here, since a framework
    # between us and the app would make it a 500.
    log.warning("session save refused: %s: %s", type(exc).__name__, exc)
    return refusal


def _added(result: SaveResult, existing: Iterable[str], session: Session) -> list[tuple[str, str]]:
    if result.set_cookies or result.header_token is not None or session.accessed or result.ended:
        return response_headers(result, existing, session)
    return []


def answer_for(exc: BaseException) -> Refusal | None:
    """The answer to a session error that escaped the view (logged), None for any other error.

    Store down: 503 with ``Retry-After``; a lost race, an ended session or a
    refused sign-in: 409; a failed ``require_recent_auth``: 401 with
    ``"reauth_required": true``. Anything else is the app's to handle.
    """
    if not isinstance(exc, Exception):
        return None
    refusal = refusal_for_error(exc)
    if refusal is not None:
        log.warning("session error escaped the app: %s: %s", type(exc).__name__, exc)
    return refusal
