"""Litestar: server-side sessions as a plugin, ``request.session`` and a ``session`` dependency.

``Litestar(plugins=[ServerSessionPlugin("redis://localhost")])`` installs three
things through Litestar's own conventions (an ``InitPlugin``):

* :class:`ServerSessionMiddleware`, outermost of the app's middleware, which runs
  the kit's request cycle (:func:`~serversession.integrations.kit.abegin` before
  the handler, :func:`~serversession.integrations.kit.afinish` as the response
  starts) and puts the :class:`~serversession.Session` in ``scope["session"]``, so
  Litestar's ``request.session`` is ours;
* exception handlers, so a session error raised in a handler answers 503 (store
  down, ``Retry-After``), 409 (lost race, ended session, refused sign-in) or 401
  (``"reauth_required": true``) instead of Litestar's 500;
* the dependencies ``session`` (this request's :class:`~serversession.Session`)
  and ``session_manager`` (the :class:`~serversession.AsyncSessionManager`, to
  list and revoke a user's sessions), injectable by name.

Litestar's middleware runs after routing, so the handler's ``opt`` is at hand:
``opt={"csrf_exempt": True}`` on a handler, controller or router exempts it from
the CSRF and cross-site checks (the key is the plugin's ``exempt_opt_key``).

``request.set_session(data)`` and ``request.clear_session()`` (what Litestar's
``SessionAuth`` examples call) work, and take effect as the response starts:
``set_session`` replaces the session's data and gives a stored session a new ID
(replacing the whole session is what a sign-in does, and a new ID defeats
session fixation; the CSRF token changes with it, so the client reads a new one);
``clear_session`` ends the session (``destroy()``). Changes made after the
response started are not saved. Litestar's ``SessionAuth`` works too, given
``session_backend_config=plugin.session_auth_backend()``; Litestar's own session
middleware beside the plugin would replace ``request.session``, so the plugin
refuses it at start-up.

WebSocket handshakes are screened like unsafe requests (cross-site WebSocket
hijacking rides on the cookie) and see the session read-only: nothing is saved.

``ServerSessionPlugin(..., lazy=True)`` reads the session at its first awaited
use instead of before the handler: the ``session`` dependency (and
``SessionAuth``'s backend) await the read, so a handler that takes neither
costs no store command and gets no session headers. ``request.session`` is then
not read yet: a synchronous first use in a coroutine raises
:class:`~serversession.core.session.SessionNotLoadedError` (``await
request.session.aload()`` first). An unsafe request that needs a CSRF check is
read before the handler, to check the token. Off by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from litestar import Request, Response
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.middleware import ASGIMiddleware
from litestar.plugins import InitPlugin
from litestar.serialization import decode_json, encode_json
from litestar.types import ASGIApp, Empty, Message, Receive, Scope, Send
from litestar.utils import get_serializer_from_scope
from litestar.utils.path import normalize_path

from ..core.config import SessionConfig
from ..core.guard import Refusal
from ..core.session import Session
from ..exceptions import (
    ConcurrentUpdateError,
    ConfigurationError,
    NotSerializableError,
    ReauthenticationRequired,
    SessionEndedError,
    SessionLimitError,
    StoreError,
)
from ..manager import AsyncSessionManager
from ..stores.url import open_store
from . import kit
from ._litestar_auth import SCOPE_KEY, SessionAuthBackendConfig, is_litestar_session_middleware

__all__ = [
    "SESSION_ERRORS",
    "ServerSessionMiddleware",
    "ServerSessionPlugin",
    "SessionAuthBackendConfig",
    "get_session",
    "session_error_handler",
]

#: The session errors :func:`session_error_handler` answers (503, 409, 401).
SESSION_ERRORS: tuple[type[Exception], ...] = (
    StoreError, ConcurrentUpdateError, SessionEndedError, SessionLimitError, ReauthenticationRequired,
)  # fmt: skip
#: A refusal's headers that Litestar's ``Response`` writes itself.
_OWN_HEADERS = frozenset(("content-type", "content-length"))
#: Where :func:`_note_failure` marks a request whose handler raised (its error answer saves nothing).
_FAILED_KEY = "serversession.failed"


def get_session(connection: Any) -> Session:
    """Return this request's :class:`Session` from a Litestar ``Request``, ``WebSocket`` or ASGI scope.

    Raises ``LookupError`` when :class:`ServerSessionPlugin` (or its middleware)
    is not installed, or the request did not go through it (an exception handler
    answering a 404 or 405: Litestar runs middleware only for a matched route).
    """
    scope = getattr(connection, "scope", connection)
    session = scope.get(SCOPE_KEY) if isinstance(scope, Mapping) else None
    if not isinstance(session, Session):
        raise LookupError("no serversession session in scope: is ServerSessionPlugin installed?")
    return session


def session_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A Litestar exception handler: the JSON answer to a session error raised in a handler.

    Why: Litestar turns an unhandled exception into a 500 before any middleware
    sees it, so ``await session.amodify(...)`` failing on a dead store needs a
    handler to become the 503 it is in every other integration. The plugin
    registers it for :data:`SESSION_ERRORS`; any other exception is answered 500.
    """
    refusal = kit.answer_for(exc) or Refusal(500, "internal error", "internal")
    body = refusal.body()
    headers = {name: value for name, value in refusal.headers(body) if name.lower() not in _OWN_HEADERS}
    return Response(body, status_code=refusal.status, media_type="application/json", headers=headers)


class ServerSessionMiddleware(ASGIMiddleware):
    """The kit's request cycle as Litestar middleware; :class:`ServerSessionPlugin` installs it.

    ``exempt_opt_key`` names the handler ``opt`` that exempts a route from the
    CSRF and cross-site checks (default ``"csrf_exempt"``).
    """

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, manager: AsyncSessionManager, *, exempt_opt_key: str = "csrf_exempt",
                 lazy: bool = False) -> None:  # fmt: skip
        self.manager = manager
        self.exempt_opt_key = exempt_opt_key
        #: Read the session at its first awaited use (the ``session`` dependency) instead of before the handler.
        self.lazy = lazy

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Admit the request, expose its session, save it as the response starts."""
        manager = self.manager
        websocket = scope["type"] == ScopeType.WEBSOCKET
        raw: Any = scope
        headers = kit.pick_headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw["headers"])
        handler = raw.get("route_handler")
        exempt = bool(handler is not None and handler.opt.get(self.exempt_opt_key))
        client = raw.get("client")
        body: bytes | None = None

        async def form_token() -> str | Refusal | None:
            nonlocal body
            body = await _read_body(receive)
            if body is None:
                return kit.body_too_large(kit.MAX_FORM_BODY)
            return kit.token_from_form(body)

        opened = await kit.abegin(
            manager, raw.get("method", "GET"), _full_path(raw), raw.get("scheme", "http"),
            headers, client[0] if client else None, exempt=exempt, form_token=form_token, websocket=websocket,
            lazy=self.lazy,
        )  # fmt: skip
        if isinstance(opened, Refusal):
            await _answer(send, opened, websocket)
            return
        if body is not None:  # the form was read to find its token: the handler reads it again
            receive = _replay(body, receive)
        session = opened.session
        raw["session"] = raw[SCOPE_KEY] = session
        if websocket:
            await next_app(scope, receive, send)
            return

        started = replaced = False

        async def saving_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the handler's response was replaced by a refusal
            if not started and message["type"] == "http.response.start":
                if raw.get(_FAILED_KEY):  # the handler raised: its error answer saves nothing, as on ASGI
                    started = True
                    await send(message)
                    return
                if raw.get("session") is not session:  # set_session() / clear_session(): act on the stored one
                    await session.aload()
                _adopt(raw, session)
                added = await kit.afinish(manager, opened, _names(message), message.get("status"))
                if isinstance(added, Refusal):
                    replaced = True
                    await _answer(send, added, websocket)
                    return
                if added:
                    encoded = [(name.lower().encode(), value.encode("latin-1")) for name, value in added]
                    message["headers"] = [*message.get("headers", ()), *encoded]
                started = True  # only now: a save that raised can still be answered
            await send(message)

        try:
            await next_app(scope, receive, saving_send)
        except Exception as exc:
            refusal = kit.answer_for(exc)  # raised by middleware inside ours, past the handlers
            if refusal is None or started or replaced:
                raise
            await _answer(send, refusal, websocket)


class ServerSessionPlugin(InitPlugin):
    """Server-side sessions for a Litestar app: ``Litestar(plugins=[ServerSessionPlugin(store)])``.

    ``store`` is a store object or URL (default ``sqlite:///serversession.sqlite3``)
    and ``config`` a :class:`SessionConfig` (default ``SessionConfig()``); or pass
    a ready ``manager`` instead of both. A store opened from a URL is closed at
    the app's shutdown; a store object is the caller's to close.

    ``exempt_opt_key`` (``"csrf_exempt"``) is the handler ``opt`` that exempts a
    route from CSRF; ``dependency_key`` (``"session"``) and
    ``manager_dependency_key`` (``"session_manager"``) are the names under which
    the session and the manager are injected; ``lazy`` (False) defers the store
    read to the session's first awaited use (see the module docs). Raises :class:`ConfigurationError`
    when a store and a manager are both given, or a dependency name is taken.
    """

    __slots__ = ("_owns_store", "dependency_key", "exempt_opt_key", "lazy", "manager", "manager_dependency_key")

    def __init__(
        self,
        store: Any = None,
        config: SessionConfig | None = None,
        *,
        manager: AsyncSessionManager | None = None,
        exempt_opt_key: str = "csrf_exempt",
        dependency_key: str = "session",
        manager_dependency_key: str = "session_manager",
        lazy: bool = False,
    ) -> None:
        self._owns_store = False
        if manager is None:
            if store is None or isinstance(store, str):
                store = open_store(store or "sqlite:///serversession.sqlite3")
                self._owns_store = True
            manager = AsyncSessionManager(store, config)
        elif store is not None or config is not None:
            raise ConfigurationError("pass a store and a config, or a manager, not both (the manager has its own)")
        #: The manager every request of the app goes through (also injected as ``session_manager``).
        self.manager = manager
        self.exempt_opt_key = exempt_opt_key
        self.dependency_key = dependency_key
        self.manager_dependency_key = manager_dependency_key
        self.lazy = lazy

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the middleware (outermost), the exception handlers and the two dependencies."""
        for key in (self.dependency_key, self.manager_dependency_key):
            if key in app_config.dependencies:
                raise ConfigurationError(f"the dependency {key!r} is taken: pass ServerSessionPlugin(... "
                                         f"dependency_key=... / manager_dependency_key=...) another name")  # fmt: skip
        if any(is_litestar_session_middleware(entry) for entry in app_config.middleware):
            raise ConfigurationError(
                "Litestar's own session middleware (ServerSideSessionConfig, CookieBackendConfig, or SessionAuth "
                "with one of them) would replace request.session: remove it, or give SessionAuth "
                "session_backend_config=plugin.session_auth_backend()"
            )
        manager = self.manager

        def provide_manager() -> AsyncSessionManager:
            return manager

        middleware = ServerSessionMiddleware(manager, exempt_opt_key=self.exempt_opt_key, lazy=self.lazy)
        app_config.middleware.insert(0, middleware)
        app_config.after_exception.append(_note_failure)
        for error in SESSION_ERRORS:
            app_config.exception_handlers.setdefault(error, session_error_handler)
        app_config.dependencies[self.dependency_key] = Provide(_provide_session)
        app_config.dependencies[self.manager_dependency_key] = Provide(provide_manager, sync_to_thread=False)
        app_config.signature_namespace.update(Session=Session, AsyncSessionManager=AsyncSessionManager)
        if self._owns_store:
            app_config.on_shutdown.append(self._close_store)
        return app_config

    def session_auth_backend(self) -> SessionAuthBackendConfig:
        """The ``session_backend_config`` for Litestar's ``SessionAuth``: its session is ours.

        ``SessionAuth(retrieve_user_handler=..., session_backend_config=plugin.session_auth_backend())``
        keeps Litestar's authentication middleware (``request.user``, ``exclude``)
        over the session this plugin loaded and saves.
        """
        return SessionAuthBackendConfig(key=self.manager.config.cookie_name or "session")

    async def _close_store(self) -> None:
        await self.manager.store.aclose()


async def _note_failure(exc: Exception, scope: Scope) -> None:
    """``after_exception`` hook: mark a request whose handler failed, so its error answer saves nothing.

    Why: Litestar turns the exception into its answer (a 500, or the 503/409/401
    of :func:`session_error_handler`) inside the middleware, which then sees an
    ordinary response start; saving there would store what the handler half
    did before it failed (and, for a lost race, the losing write). Saved as
    usual, as Starlette's ``ExceptionMiddleware`` answers are on ASGI: an
    ``HTTPException`` (a 401, a redirect) and an exception the app answers with
    a handler of its own for that class (not ``Exception`` or ``500``: a 500
    page is still a failure).
    """
    if isinstance(exc, HTTPException):
        return
    route: Any = scope.get("route_handler")
    handlers: Mapping[Any, Any] = route.resolve_exception_handlers() if route is not None else {}
    answer = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers and cls is not Exception), None)
    if answer is None or answer is session_error_handler:
        raw: Any = scope
        raw[_FAILED_KEY] = True


async def _provide_session(scope: Scope) -> Session:
    """The ``session`` dependency (``scope`` is Litestar's reserved kwarg: HTTP and WebSocket alike),
    read from the store if it was deferred: a handler that takes it gets it ready to use."""
    return await get_session(scope).aload()


def _full_path(scope: Any) -> str:
    """The request's full path: Litestar's router strips the mount prefix (``root_path``)
    from ``scope["path"]``, and a mounted ASGI app's prefix too; the guard's path lists
    (``csrf_exempt_paths``, ``json_only_paths``) name full paths."""
    root: str = (scope.get("root_path") or "").rstrip("/")
    handler = scope.get("route_handler")
    if getattr(handler, "is_mount", False) and scope.get("raw_path"):
        # The mount's prefix is cut from scope["path"]: rebuild the path the router matched, the way
        # it did (root_path split off, then normalized), or "/mounted//set" would escape the lists.
        path = unquote(scope["raw_path"].partition(b"?")[0].decode("latin-1"))
        if root_path := scope.get("root_path"):
            path = path.split(root_path, maxsplit=1)[-1]
        return root + normalize_path(path)
    routed: str = scope["path"]
    return root + routed


def _adopt(scope: Any, session: Session) -> None:
    """Carry out what ``request.set_session()`` / ``clear_session()`` put in ``scope["session"]``."""
    value = scope.get("session")
    if value is session:
        return
    scope["session"] = session
    if value is Empty or value is None:
        session.destroy()
        return
    # Litestar accepts dicts, dataclasses, msgspec structs and pydantic models here, and
    # turns them into JSON for its stores: the same round trip gives our JSON-only codec a dict.
    data = value if isinstance(value, dict) else decode_json(encode_json(value, get_serializer_from_scope(scope)))
    if not isinstance(data, dict):
        raise NotSerializableError(f"request.set_session() takes a dict or a model with fields, "
                                   f"not {type(value).__name__}")  # fmt: skip
    session.clear()
    session.update(data)
    if session.key is not None:  # a stored session: a new ID, as at any sign-in
        session.rotate("set_session")


def _names(message: Message) -> list[str]:
    raw: Any = message
    return [name.decode("latin-1") for name, _ in raw.get("headers", ())]


async def _answer(send: Send, refusal: Refusal, websocket: bool) -> None:
    """Send ``refusal`` as the response, or refuse the WebSocket handshake."""
    if websocket:
        # 1008 policy violation for a refusal, 1011 for a server-side failure (store down).
        await send({"type": "websocket.close", "code": 1011 if refusal.status >= 500 else 1008, "reason": ""})
        return
    body = refusal.body()
    headers = [(name.lower().encode(), value.encode("latin-1")) for name, value in refusal.headers(body)]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None past :data:`~serversession.integrations.kit.MAX_FORM_BODY` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Any = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > kit.MAX_FORM_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` first, then defers to the server's."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
