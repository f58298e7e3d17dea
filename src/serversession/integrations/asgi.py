"""ASGI middleware: server-side sessions for Starlette, FastAPI or any ASGI app.

Per HTTP request it reads the token (cookie or ``Authorization: Session``), loads
the session with at most one store read, checks the CSRF token on unsafe
methods, exposes the session as ``scope["session"]`` (so Starlette's
``request.session`` works) and saves it when the app starts its response,
adding ``Set-Cookie`` to that very message. Streaming bodies pass through
untouched; changes made after the response has started are not saved.

WebSocket scopes get the session too, read-only: a handshake response can't
carry cookies reliably, so nothing is saved for them.

A store failure answers ``503`` with ``{"error": ...}`` and a ``Retry-After``;
nothing is written, no fresh session replaces the real one, and the next request
tries the store again.

``SessionMiddleware(app, ..., lazy=True)`` defers the store read to the
session's first use, so a request that never touches its session (static
files, a health check, a public listing) costs no store command and gets no
session headers. The app then reads it without blocking the event loop:
``session = await aget_session(request)`` (or ``await session.aload()``);
a synchronous first use in a coroutine raises
:class:`~serversession.core.session.SessionNotLoadedError` saying so (a plain
``def`` endpoint, which Starlette runs in a worker thread, may use it directly).
An unsafe request that needs a CSRF check, and one without a session cookie, is
read before the app as without ``lazy``. Off by default, since code written for
the eager read uses the session synchronously.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..core.config import SessionConfig
from ..core.guard import Refusal, refusal_for_error
from ..core.session import Session
from ..exceptions import (
    ConcurrentUpdateError,
    ReauthenticationRequired,
    SessionEndedError,
    SessionLimitError,
    StoreError,
)
from ..manager import AsyncSessionManager
from ..stores.url import open_store
from .kit import (
    MAX_FORM_BODY,
    SESSION_HEADERS,
    abegin,
    afinish,
    answer_for,
    body_too_large,
    token_from_form,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("serversession")


def get_session(scope: Scope | Any) -> Session:
    """Return the :class:`Session` of an ASGI scope or a Starlette ``Request``.

    Raises ``LookupError`` when :class:`SessionMiddleware` did not run.
    """
    scope = getattr(scope, "scope", scope)
    session = scope.get("session")
    if not isinstance(session, Session):
        raise LookupError("no session in scope: is SessionMiddleware installed?")
    return session


async def aget_session(scope: Scope | Any) -> Session:
    """:func:`get_session`, read from the store first if it was deferred (``lazy=True``).

    Raises ``LookupError`` when :class:`SessionMiddleware` did not run and
    :class:`~serversession.exceptions.StoreError` when the store fails (the
    middleware and :func:`exception_handlers` answer 503).
    """
    return await get_session(scope).aload()


def exception_handlers() -> dict[type[Exception], Callable[[Any, Exception], Awaitable[Any]]]:
    """Starlette/FastAPI exception handlers for session errors raised inside views.

    ``Starlette(exception_handlers=exception_handlers())`` or
    ``FastAPI(exception_handlers=exception_handlers())``. Why: Starlette turns
    an unhandled exception into a 500 before the middleware can see it, so a
    store failure in ``await session.amodify(...)`` needs a handler to become
    the 503 (or 409 for a lost race or an ended session, 401 with
    ``"reauth_required": true`` for ``require_recent_auth``) it is everywhere else.
    """
    from starlette.responses import JSONResponse  # the asgi extra; plain ASGI apps never call this

    async def answer(request: Any, exc: Exception) -> Any:
        refusal = refusal_for_error(exc) or Refusal(500, "internal error", "internal")
        log.warning("session error in a view: %s: %s", type(exc).__name__, exc)
        headers = {k: v for k, v in refusal.headers() if k not in ("Content-Type", "Content-Length")}
        return JSONResponse(refusal.content(), status_code=refusal.status, headers=headers)

    errors = (StoreError, ConcurrentUpdateError, SessionEndedError, ReauthenticationRequired, SessionLimitError)
    return dict.fromkeys(errors, answer)


class SessionMiddleware:
    """Wrap ``app`` with server-side sessions.

    ``store`` is a store object or URL (default: ``sqlite:///serversession.sqlite3``);
    ``config`` a :class:`SessionConfig`; or pass a ready ``manager``. ``lazy``
    (False) reads the session at its first use instead of before the app (see
    the module docs: the app then awaits :func:`aget_session`).
    """

    def __init__(
        self,
        app: ASGIApp,
        store: Any = None,
        config: SessionConfig | None = None,
        *,
        manager: AsyncSessionManager | None = None,
        lazy: bool = False,
    ) -> None:
        self.app = app
        self.lazy = lazy
        if manager is None:
            if store is None or isinstance(store, str):
                store = open_store(store or "sqlite:///serversession.sqlite3")
            manager = AsyncSessionManager(store, config)
        self.manager = manager
        self.config = manager.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        manager = self.manager
        client = scope.get("client")

        async def form_token() -> str | Refusal | None:
            nonlocal receive
            read = await _read_body(receive)
            if read is None:
                return body_too_large(MAX_FORM_BODY)
            body, whole = read
            receive = _replay(body, whole, receive)  # the app reads the body we consumed
            return token_from_form(body)

        websocket = kind == "websocket"  # a handshake is screened like an unsafe request
        opened = await abegin(manager, scope.get("method", "GET"), scope["path"], scope.get("scheme", "http"), headers,
                              client[0] if client else None, form_token=form_token, websocket=websocket,
                              lazy=self.lazy)  # fmt: skip
        if isinstance(opened, Refusal):
            await _answer(send, opened, kind)
            return
        session = opened.session
        scope["session"] = session
        if kind == "websocket":
            await self.app(scope, receive, send)
            return

        # One wrapper (not two nested ones: each costs a coroutine per message)
        # saves the session as the response starts and notes that it started.
        started = failed = False

        async def saving_send(message: Message) -> None:
            nonlocal started, failed
            if failed:
                return  # the app's own response was replaced by a refusal
            if not started and message["type"] == "http.response.start":
                names = _names(message) if session.loaded else ()  # an unread session adds nothing to name
                added = await afinish(manager, opened, names, message.get("status"))
                if isinstance(added, Refusal):
                    failed = True
                    await _answer(send, added, kind)
                    return
                _add_headers(message, added)
                started = True  # only now: a save that was refused can still be answered (409)
            await send(message)

        try:
            await self.app(scope, receive, saving_send)
        except Exception as exc:
            refusal = answer_for(exc)
            if refusal is None or started or failed:  # failed: a refused save was answered already
                raise
            await _answer(send, refusal, kind)


_WANTED = {name.encode(): name for name in SESSION_HEADERS}


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers the middleware uses, by lower-case name.

    Names are matched as bytes, so the other headers (most of them) are never
    decoded; servers send them lower-case already, so ``lower()`` runs only on
    a miss. Repeated cookie fields are joined (HTTP/2 may split cookies), so a
    session cookie sent twice is seen twice.
    """
    found: dict[str, str] = {}
    wanted = _WANTED
    for raw_name, raw_value in scope.get("headers", ()):
        name = wanted.get(raw_name)
        if name is None:
            name = wanted.get(raw_name.lower())
            if name is None:
                continue
        value = raw_value.decode("latin-1")
        if name == "cookie" and name in found:
            found[name] += "; " + value
        elif name not in found:
            found[name] = value
    return found


def _names(message: Message) -> list[str]:
    return [name.decode("latin-1") for name, _ in message.get("headers", ())]


def _add_headers(message: Message, added: list[tuple[str, str]]) -> None:
    if added:
        headers = list(message.get("headers", ()))
        headers.extend((name.lower().encode(), value.encode("latin-1")) for name, value in added)
        message["headers"] = headers


async def _answer(send: Send, refusal: Refusal, kind: str = "http") -> None:
    """Send ``refusal`` as the response (an HTTP error, or a refused WebSocket handshake)."""
    if kind == "websocket":
        # 1008 policy violation for a refusal, 1011 for a server-side failure (store down).
        await send({"type": "websocket.close", "code": 1011 if refusal.status >= 500 else 1008})
        return
    body = refusal.body()
    headers = [(name.lower().encode(), value.encode("latin-1")) for name, value in refusal.headers(body)]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> tuple[bytes, bool] | None:
    """The request body read so far and whether it is whole (False: the client left
    mid-body), or None when it is larger than ``MAX_FORM_BODY``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False  # http.disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, whole: bool, receive: Receive) -> Receive:
    """``receive`` for the app, starting with the body the middleware consumed. A body cut
    short by a disconnect is replayed as unfinished (``more_body``), so the app then gets
    the disconnect itself instead of acting on a prefix as if it were the whole form."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": not whole}
        if not whole:
            return {"type": "http.disconnect"}
        return await receive()

    return replay
