"""aiohttp.web integration: server-side sessions with ``await get_session(request)``.

``setup(app, "redis://localhost/0")`` installs a middleware and an
``on_response_prepare`` hook; handlers call ``await get_session(request)``
(the names aiohttp-session users know; ``docs/frameworks/aiohttp.md`` lists
what differs). Per request the middleware admits the request through the kit
(throttle, cross-site screen, CSRF), runs the handler and saves the session
before the response is prepared, adding ``Set-Cookie`` to it. The store is read
at most once, when the handler first awaits :func:`get_session` (or
:func:`new_session`); a handler that never does costs no store command, and its
response gets no session headers. An unsafe request that needs a CSRF check is
read before the handler, to check the token.

Where the save happens, and why in two places:

* A response the handler *returns* (``web.Response``, ``web.FileResponse``, a
  ``StreamResponse`` not yet prepared) or *raises* (``web.HTTPFound`` after a
  sign-in: aiohttp 3 exceptions are responses) is saved by the middleware,
  before aiohttp prepares it, so a store failure or a refused sign-in can still
  replace it by the 503 or 409.
* A response the handler prepares itself (``await resp.prepare(request)`` to
  stream) is saved by the ``on_response_prepare`` hook, which aiohttp calls
  after the headers are built but before they are written. If that save fails,
  the hook raises from ``prepare()`` (nothing has been sent) and the middleware
  answers the 503 or 409 instead. Changes made after ``prepare()`` are not saved.

A WebSocket handshake (``GET`` with ``Upgrade: websocket``) is screened like an
unsafe request (cross-site WebSocket hijacking rides on the cookie), refused
with a plain HTTP answer before the upgrade, and its session is read-only:
nothing is saved. Session errors escaping a handler become 503 (store down), 409
(lost race, ended session, refused sign-in) or 401 with ``"reauth_required":
true``, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.streams import StreamReader
from aiohttp.typedefs import Handler, Middleware

from ..core import csrf
from ..core.config import SessionConfig
from ..core.session import Session
from ..exceptions import SessionError
from ..manager import AsyncSessionManager
from ..stores.url import DEFAULT_STORE_URL, open_store
from . import kit

__all__ = [
    "MANAGER_KEY",
    "csrf_exempt",
    "get_manager",
    "get_session",
    "new_session",
    "on_response_prepare",
    "session_middleware",
    "setup",
]

H = TypeVar("H")
log = logging.getLogger("serversession")

#: Where :func:`setup` keeps the app's :class:`AsyncSessionManager` (``app[MANAGER_KEY]``).
MANAGER_KEY = web.AppKey("serversession_manager", AsyncSessionManager)
_NOT_SAVED = (
    "session not saved: %s %s prepared its own response and on_response_prepare is not installed "
    "(use serversession.integrations.aiohttp.setup)"
)


@dataclass(slots=True)
class _Cycle:
    """One request's session and how far its save has come."""

    manager: AsyncSessionManager
    opened: kit.Opened
    websocket: bool
    #: Saved, or deliberately not (refused, failed, a handshake): nothing may save again.
    done: bool = False
    #: The handler prepared a response itself: its headers are out, too late to answer.
    prepared: bool = False
    #: A save at ``prepare()`` time failed: the answer the middleware must give instead.
    refused: kit.Refusal | None = None


_CYCLE = web.RequestKey("serversession_cycle", _Cycle)


class _SaveRefused(SessionError):
    """Raised from ``StreamResponse.prepare()`` when the session could not be saved.

    Nothing has been written to the client yet; the middleware answers
    ``refusal`` (503 store down, 409 refused sign-in or lost race) instead.
    """

    def __init__(self, refusal: kit.Refusal) -> None:
        super().__init__(f"the session could not be saved: {refusal.message}")
        self.refusal = refusal


def _manager(store: Any, config: SessionConfig | None, manager: AsyncSessionManager | None) -> AsyncSessionManager:
    if manager is not None:
        return manager
    if store is None or isinstance(store, str):
        store = open_store(store or DEFAULT_STORE_URL)
    return AsyncSessionManager(store, config)


def setup(
    app: web.Application,
    store: Any = None,
    config: SessionConfig | None = None,
    *,
    manager: AsyncSessionManager | None = None,
) -> AsyncSessionManager:
    """Install server-side sessions on ``app``; return its manager (listing, revoking).

    ``store`` is a store object or URL (default ``sqlite:///serversession.sqlite3``),
    ``config`` a :class:`SessionConfig` (default ``SessionConfig()``), or pass a
    ready ``manager``. Appends the middleware to ``app.middlewares`` (call it
    before adding middlewares that use the session) and the
    :func:`on_response_prepare` hook that saves responses a handler prepares
    itself. A store opened here from a URL is closed at ``app.on_cleanup``.
    Raises :class:`~serversession.exceptions.ConfigurationError` for a bad URL.
    """
    owned = manager is None and (store is None or isinstance(store, str))
    manager = _manager(store, config, manager)
    app[MANAGER_KEY] = manager
    app.middlewares.append(session_middleware(manager=manager))
    app.on_response_prepare.append(on_response_prepare)
    if owned:

        async def close_store(app: web.Application) -> None:
            await manager.store.aclose()

        app.on_cleanup.append(close_store)
    return manager


def session_middleware(
    store: Any = None, config: SessionConfig | None = None, *, manager: AsyncSessionManager | None = None
) -> Middleware:
    """The middleware alone, for ``web.Application(middlewares=[...])``.

    Same arguments as :func:`setup`. Without :func:`on_response_prepare` in
    ``app.on_response_prepare`` (``setup`` adds it), a response the handler
    prepares itself is not saved (a warning is logged); the store is not closed
    for you.
    """
    manager = _manager(store, config, manager)

    @web.middleware
    async def serversession_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _CYCLE in request:  # installed twice (app and sub-app): the outer one does the work
            return await handler(request)
        websocket = request.method == "GET" and request.headers.get("Upgrade", "").strip().lower() == "websocket"
        opened = await kit.abegin(
            manager,
            request.method,
            request.path,
            request.scheme,
            kit.pick_headers(request.headers.items()),
            request.remote,
            exempt=kit.is_csrf_exempt(request.match_info.handler),
            form_token=lambda: _form_token(request),
            websocket=websocket,
            multipart=True,
            lazy=True,  # read on the handler's first await get_session(): the API is async already
        )
        if isinstance(opened, kit.Refusal):
            return _answer(opened)
        cycle = request[_CYCLE] = _Cycle(manager, opened, websocket, done=websocket)
        try:
            return await _run(request, handler, cycle)
        finally:
            cycle.done = True  # an error page aiohttp prepares after us saves nothing

    return serversession_middleware


async def _run(request: web.Request, handler: Handler, cycle: _Cycle) -> web.StreamResponse:
    try:
        response = await handler(request)
    except Exception as exc:
        if cycle.refused is not None:  # the hook's save failed in prepare(): whatever the handler made of it
            return await _late_answer(request, cycle.refused)
        if isinstance(exc, web.HTTPException):  # a redirect after sign-in carries the cookie too
            refusal = await _save(cycle, exc)
            if refusal is not None:
                return _answer(refusal)
            raise
        refusal = kit.answer_for(exc)
        if refusal is None or cycle.prepared:  # the app's own error, or too late: headers are out
            raise
        cycle.done = True
        return _answer(refusal)
    if cycle.refused is not None:  # a handler swallowed the failed prepare(): the answer stands
        return await _late_answer(request, cycle.refused)
    if response.prepared:
        if not cycle.done:
            log.warning(_NOT_SAVED, request.method, request.path)
        return response
    refusal = await _save(cycle, response)
    return response if refusal is None else _answer(refusal)


async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """``app.on_response_prepare`` hook: save a response the handler prepares itself.

    :func:`setup` installs it. aiohttp calls it inside ``prepare()`` after the
    headers are built, before they are sent, so ``Set-Cookie`` still makes it.
    When the save fails, ``prepare()`` raises (nothing was sent) and the
    middleware answers 503 or 409 in place of the stream.
    """
    if _CYCLE not in request:
        return
    cycle = request[_CYCLE]
    cycle.prepared = True
    if cycle.done:
        return
    refusal = await _save(cycle, response)
    if refusal is not None:
        cycle.refused = refusal
        raise _SaveRefused(refusal)


async def _save(cycle: _Cycle, response: web.StreamResponse) -> kit.Refusal | None:
    """Save once; add the kit's headers to ``response`` or return the refusal replacing it."""
    if cycle.done:
        return None
    cycle.done = True
    added = await kit.afinish(cycle.manager, cycle.opened, response.headers.keys(), response.status)
    if isinstance(added, kit.Refusal):
        return added
    for name, value in added:
        response.headers.add(name, value)  # added, not set: the app's own Vary stays
    return None


async def _form_token(request: web.Request) -> str | kit.Refusal | None:
    """The ``csrf_token`` field of a urlencoded or multipart form; the handler reads the body again.

    The body is read here (at most ``client_max_size`` bytes, or
    :data:`~serversession.integrations.kit.MAX_FORM_BODY` where that is 0) and
    the request's stream is refilled with it, so every way a handler reads a
    body still works: ``post()``, ``read()``, ``json()``, and the streaming
    ``multipart()`` / ``content`` that a ``request.post()`` here would have left
    empty. A malformed form (an unknown charset, a broken boundary) holds no token.
    """
    limit = request.client_max_size or kit.MAX_FORM_BODY
    received = bytearray()
    # request._payload, not request.content: that one is cached on first use, and the handler's
    # must be the refilled stream.
    while chunk := await request._payload.readany():
        received.extend(chunk)
        if len(received) > limit:
            return kit.body_too_large(limit)
    body = bytes(received)
    request._payload = _refilled(request, body)
    if request.content_type != "multipart/form-data":
        return kit.token_from_form(body)
    try:
        reader = aiohttp.MultipartReader(request.headers, _refilled(request, body))
        while (part := await reader.next()) is not None:
            if isinstance(part, aiohttp.BodyPartReader) and part.name == csrf.FORM_FIELD and part.filename is None:
                return (await part.read(decode=True)).decode("ascii", "replace")
            await part.release()
    except (ValueError, LookupError, AssertionError, RuntimeError):
        return None
    return None


def _refilled(request: web.Request, body: bytes) -> StreamReader:
    """A request stream holding ``body``, at its end; its limit is never reached, so it never
    pauses the connection's reading."""
    stream = StreamReader(request.protocol, limit=len(body) + 1, loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    return stream


def _answer(refusal: kit.Refusal) -> web.Response:
    body = refusal.body()
    return web.Response(status=refusal.status, body=body, headers=refusal.headers(body))


async def _late_answer(request: web.Request, refusal: kit.Refusal) -> web.StreamResponse:
    """Answer ``refusal`` after a handler's ``prepare()`` failed.

    That ``prepare()`` already set up the connection's framing (chunked, or a
    content length) without sending anything; a response of our own that is
    chunked too overrides either, where a plain ``Response`` would go out
    malformed.
    """
    body = refusal.body()
    headers = [(name, value) for name, value in refusal.headers(body) if name != "Content-Length"]
    response = web.StreamResponse(status=refusal.status, headers=headers)
    await response.prepare(request)
    await response.write(body)
    await response.write_eof()
    return response


async def get_session(request: web.Request) -> Session:
    """The request's :class:`~serversession.Session`, read from the store at the first call.

    A coroutine, like aiohttp-session's, so ``session = await get_session(request)``
    ports unchanged; later calls in the request cost nothing. Raises
    ``LookupError`` when the middleware did not run (:func:`setup` missing, or a
    handler outside the app it was set up on) and
    :class:`~serversession.exceptions.StoreError` when the store fails (the
    middleware answers 503).
    """
    return await _cycle(request).opened.session.aload()


async def new_session(request: web.Request) -> Session:
    """Start over at sign-in: the request's session, emptied, signed out and (if stored) given a new ID.

    aiohttp-session's answer to session fixation: the ID a visitor had before
    signing in stops working at the end of this request (the session rotates,
    see :meth:`Session.rotate`), so an ID planted by an attacker is worthless.
    Data and the bound user are dropped, as aiohttp-session returns an empty
    session; to keep data across the sign-in (a cart), call
    ``session.rotate()`` instead. Raises ``LookupError`` like :func:`get_session`.
    """
    session = await _cycle(request).opened.session.aload()
    session.clear()
    if session.user is not None:
        session.user = None
    if session.key is not None:
        session.rotate("new session")
    return session


def get_manager(request: web.Request) -> AsyncSessionManager:
    """The :class:`AsyncSessionManager` serving ``request`` (list and revoke sessions).

    Raises ``LookupError`` when the middleware did not run.
    """
    return _cycle(request).manager


def _cycle(request: web.Request) -> _Cycle:
    if _CYCLE not in request:
        raise LookupError("no session on this request: call serversession.integrations.aiohttp.setup(app, ...)")
    return request[_CYCLE]


def csrf_exempt(handler: H) -> H:
    """Exempt one handler (function or ``web.View`` class) from the CSRF and cross-site checks.

    For webhooks and callbacks authenticated another way (a signature). The
    mark (the kit's :func:`~serversession.integrations.kit.csrf_exempt`, shared
    with Flask and Quart) survives decorators that use ``functools.wraps``.
    """
    return kit.csrf_exempt(handler)
