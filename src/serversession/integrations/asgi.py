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
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ..core.config import SessionConfig
from ..core.lifecycle import SaveResult
from ..core.session import Session
from ..core.transport import client_ip
from ..exceptions import ConcurrentUpdateError, SessionEndedError, StoreError
from ..manager import AsyncSessionManager
from ..stores.url import open_store
from ._common import (
    FORM_TYPE,
    MAX_FORM_BODY,
    STORE_DOWN_MESSAGE,
    csrf_event,
    csrf_failure,
    csrf_message,
    csrf_required,
    error_body,
    response_headers,
    session_error_status,
    token_from_form,
    vary_for,
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


def exception_handlers() -> dict[type[Exception], Callable[[Any, Exception], Awaitable[Any]]]:
    """Starlette/FastAPI exception handlers for session errors raised inside views.

    ``Starlette(exception_handlers=exception_handlers())`` or
    ``FastAPI(exception_handlers=exception_handlers())``. Why: Starlette turns
    an unhandled exception into a 500 before the middleware can see it, so a
    store failure in ``await session.amodify(...)`` needs a handler to become
    the 503 (or 409 for a lost race or an ended session) it is everywhere else.
    """
    from starlette.responses import JSONResponse  # the asgi extra; plain ASGI apps never call this

    async def answer(request: Any, exc: Exception) -> Any:
        status, message = session_error_status(exc) or (500, "internal error")
        log.warning("session error in a view: %s: %s", type(exc).__name__, exc)
        headers = {"Retry-After": "1", "Cache-Control": "no-store"} if status == 503 else {"Cache-Control": "no-store"}
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    return {StoreError: answer, ConcurrentUpdateError: answer, SessionEndedError: answer}


class SessionMiddleware:
    """Wrap ``app`` with server-side sessions.

    ``store`` is a store object or URL (default: ``sqlite:///serversession.sqlite3``);
    ``config`` a :class:`SessionConfig`; or pass a ready ``manager``.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: Any = None,
        config: SessionConfig | None = None,
        *,
        manager: AsyncSessionManager | None = None,
    ) -> None:
        self.app = app
        if manager is None:
            if store is None or isinstance(store, str):
                store = open_store(store or "sqlite:///serversession.sqlite3")
            manager = AsyncSessionManager(store, config)
        self.manager = manager
        self.config = manager.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        config = self.config
        client = scope.get("client")
        ip = client_ip(config, client[0] if client else None, headers.get("x-forwarded-for"))
        token = self.manager.read_token(headers.get("cookie"), headers.get("authorization"))
        try:
            session = await self.manager.aload(token, user_agent=headers.get("user-agent", ""), ip=ip)
        except StoreError as exc:
            log.warning("session store failed on load: %s", exc)
            if scope["type"] == "http":
                await _send_error(send, 503, STORE_DOWN_MESSAGE)
            else:
                await send({"type": "websocket.close", "code": 1011})
            return
        scope["session"] = session
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        if csrf_required(config, scope["method"], scope["path"]):
            presented = headers.get("x-csrf-token")
            if presented is None and headers.get("content-type", "").startswith(FORM_TYPE):
                body = await _read_body(receive)
                if body is None:
                    await _send_error(send, 413, "request body too large")
                    return
                presented = token_from_form(body)
                receive = _replay(body, receive)
            reason = csrf_failure(session, presented)
            if reason is not None:
                await self.manager.aemit(csrf_event(session, reason, self.manager.clock()))
                await _send_error(send, 403, csrf_message(reason))
                return

        # One wrapper (not two nested ones: each costs a coroutine per message)
        # saves the session as the response starts and notes that it started.
        started = failed = False
        manager = self.manager

        async def saving_send(message: Message) -> None:
            nonlocal started, failed
            if failed:
                return  # the app's own response was replaced by a 503
            if not started and message["type"] == "http.response.start":
                try:
                    result = await manager.asave(session, ip=ip)
                except StoreError as exc:
                    log.warning("session store failed on save: %s", exc)
                    failed = True
                    await _send_error(send, 503, STORE_DOWN_MESSAGE)
                    return
                if result.set_cookies or result.header_token is not None or session.accessed:
                    _add_headers(message, result, vary_for(session))
                started = True  # only now: a save that raised can still be answered (409)
            await send(message)

        try:
            await self.app(scope, receive, saving_send)
        except Exception as exc:
            answer = session_error_status(exc)
            if answer is None or started:
                raise
            log.warning("session error escaped the app: %s: %s", type(exc).__name__, exc)
            await _send_error(send, *answer)


_WANTED = {
    name.encode(): name
    for name in ("cookie", "authorization", "user-agent", "x-forwarded-for", "x-csrf-token", "content-type")
}


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers the middleware uses, by lower-case name.

    Names are matched as bytes, so the other headers (most of them) are never
    decoded; servers send them lower-case already, so ``lower()`` runs only on
    a miss.
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
            found[name] += "; " + value  # HTTP/2 may split cookies over several fields
        elif name not in found:
            found[name] = value
    return found


def _add_headers(message: Message, result: SaveResult, vary: str | None) -> None:
    headers = list(message.get("headers", ()))
    names = [name.decode("latin-1") for name, _ in headers]
    added = response_headers(result, names)
    if vary is not None:
        added.append(("Vary", vary))  # a Vary field of its own: HTTP joins repeated ones
    if added:
        headers.extend((name.lower().encode(), value.encode("latin-1")) for name, value in added)
        message["headers"] = headers


async def _send_error(send: Send, status: int, message: str) -> None:
    body = error_body(message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
