"""Quart integration: server-side sessions behind Quart's own ``session``, async all the way.

One line turns it on; views keep using :data:`quart.session` as before::

    from quart import Quart, redirect, request, session, url_for
    from serversession.integrations import quart as serversession_quart

    app = Quart(__name__)
    serversession_quart.init_app(app, store="redis://127.0.0.1:6379/0")

    @app.post("/login")
    async def login():
        form = await request.form
        ...  # check the password first
        session["username"] = form["username"]
        session.user = form["username"]  # optional: lists and revokes by user
        session.rotate()  # new session ID at sign-in: defeats session fixation
        return redirect(url_for("index"))

Quart awaits a :class:`~quart.sessions.SessionInterface`'s ``open_session`` and
``save_session``; this one is async too, over an :class:`AsyncSessionManager`,
so a store with a native async face (Redis, PostgreSQL, memory) is used from the
event loop with no thread hop per request. SQLite's async face runs in a thread,
as it does everywhere (its driver blocks). Every hook this module installs is a
coroutine for the same reason: Quart runs a plain function in a thread.

The session object is Flask's integration's one (:class:`~serversession.integrations.flask.FlaskSession`,
Quart shares Flask's ``SessionMixin``), so ``session.permanent``, ``session.modified``,
``session.new``, ``session.clear()`` (which also gives a stored session a new ID:
the tutorial's sign-in and sign-out), ``session.rotate()``, ``session.destroy()``,
``session.user``, ``session.csrf_token`` and the authentication controls behave
exactly as documented there; :class:`QuartSession` adds the awaited twins
``await session.amodify(key, fn, default)`` and ``await session.acredential_changed()``.
Quart's settings are read like Flask's (:func:`~serversession.integrations.flask.config_from_flask`),
and ``SERVERSESSION_STORE`` / ``SERVERSESSION_CSRF`` mean the same.

One request, as the kit runs it (:func:`~serversession.integrations.kit.abegin`):
the throttle, the cross-site and JSON-only screen, the load, the guessing
observation and the CSRF check (``X-CSRF-Token``, or the ``csrf_token`` field of
an urlencoded or multipart form as Quart parses it) all happen when Quart opens
the session, before routing hooks run; a refusal is answered by a
``before_request`` hook placed first, so no view runs. The save happens when
Quart saves the session (after the ``after_request`` hooks): a store failure or a
refused sign-in then replaces the response (503, 409). Session errors escaping a
view answer through error handlers: 503 store down, 409 lost race or ended
session, 401 ``{"error": ..., "reauth_required": true}`` for ``require_recent_auth``.
Changes made while a streamed body is being sent are not saved.

WebSocket handshakes are screened like unsafe requests (cross-site WebSocket
hijacking rides on the cookie), ``@csrf_exempt`` or not; the session is read-only
there, nothing is saved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, cast

from quart import Quart, current_app, has_request_context, has_websocket_context
from quart import globals as quart_globals
from quart.sessions import SessionInterface, SessionMixin
from quart.wrappers import BaseRequestWebsocket, Request, Response
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response as WerkzeugResponse

from ..core import csrf
from ..core.config import SessionConfig
from ..core.session import Session
from ..exceptions import (
    ConcurrentUpdateError,
    ConfigurationError,
    ReauthenticationRequired,
    SessionEndedError,
    SessionLimitError,
    StoreError,
)
from ..manager import AsyncSessionManager
from ..stores.url import DEFAULT_STORE_URL, open_store
from . import kit
from .flask import FlaskSession, config_from_flask, csrf_exempt

__all__ = ["QuartSession", "ServerSessionInterface", "aget_session", "csrf_exempt", "get_manager", "get_session",
           "init_app"]  # fmt: skip

T = TypeVar("T")
#: The session errors a view may let escape, answered by :func:`kit.answer_for`.
SESSION_ERRORS = (StoreError, ConcurrentUpdateError, SessionEndedError, ReauthenticationRequired, SessionLimitError)


class QuartSession(FlaskSession):
    """Quart's ``session``: Flask's session API over a :class:`Session`, with awaited twins.

    ``session.modify()`` and ``session.credential_changed()`` raise ``TypeError``
    here (the manager is async): await :meth:`amodify` and :meth:`acredential_changed`.
    """

    def __init__(self, opened: kit.Opened, websocket: bool = False) -> None:
        super().__init__(opened.session, opened.ip)
        #: What :func:`kit.abegin` opened, handed back to :func:`kit.afinish` at save.
        self.opened = opened
        #: A WebSocket's session is read-only: nothing is saved for it.
        self.websocket = websocket
        #: What the save decided (headers to add, or the refusal), once it ran.
        self.outcome: list[tuple[str, str]] | kit.Refusal | None = None

    def __repr__(self) -> str:
        if not self.raw.loaded:
            return "<QuartSession (not read from the store yet)>"
        return f"<QuartSession handle={self.raw.handle!r} keys={sorted(self.raw)!r}>"

    async def aload(self) -> QuartSession:
        """Read the session from the store if it was deferred (``lazy``); return this session.

        ``await session.aload()`` once before the synchronous API of a lazily read
        session; free when it was read already.
        """
        await self.raw.aload()
        return self

    async def amodify(self, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """Atomically replace ``session[key]`` by ``fn(value)`` in the store now (see :meth:`Session.modify`)."""
        await self.raw.aload()
        return await self.raw.amodify(key, fn, default)

    async def acredential_changed(self, reason: str = "credential changed") -> int:
        """The user changed a password, factor or role: new ID for this session now, every other
        session of the user ended; returns how many (see :meth:`Session.credential_changed`)."""
        await self.raw.aload()
        return await self.raw.acredential_changed(reason)


class _UnavailableSession(dict[str, Any], SessionMixin):
    """Stands in when the kit refused the request (503 store down, 429, 403, 413, 415).

    The guard hook answers before any view runs, but ``after_request`` hooks
    still run on that answer and may read the session: they see an empty one,
    and whatever they write is dropped, so the answer stays the refusal.
    """

    def __init__(self, refusal: kit.Refusal) -> None:
        super().__init__()
        self.refusal = refusal
        self.accessed = False
        self.modified = False


class ServerSessionInterface(SessionInterface):
    """A Quart :class:`~quart.sessions.SessionInterface` backed by an :class:`AsyncSessionManager`.

    Prefer :func:`init_app`, which also installs the hook that answers refusals,
    the error handlers and the ``csrf_token()`` template helper.
    """

    def __init__(self, manager: AsyncSessionManager, *, lazy: bool = False) -> None:
        self.manager = manager
        #: Read the session at its first awaited use instead of when Quart opens it (see :func:`init_app`).
        self.lazy = lazy

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> SessionMixin:
        """Run the request's side of the kit: the guard's checks and at most one store read.

        Never raises for a refused request or a store failure: the refusal rides on
        the returned stand-in and the guard hook answers it (an exception here
        would escape Quart's error handling).
        """
        websocket = request.scope.get("type") == "websocket"
        method = "GET" if websocket else request.method
        client = request.scope.get("client")
        form_token = None if websocket else _form_reader(cast(Request, request))
        opened = await kit.abegin(
            self.manager,
            method,
            request.root_path + request.path,
            request.scheme,
            kit.pick_headers(request.headers.items()),
            client[0] if client else None,
            # @csrf_exempt is for HTTP views (webhooks): on a WebSocket it would only turn off
            # the Origin screen, the one defence a handshake has against cross-site hijacking.
            exempt=not websocket and method not in csrf.SAFE_METHODS and _route_exempt(app, request),
            form_token=form_token,
            multipart=True,
            websocket=websocket,
            lazy=self.lazy,
        )
        if isinstance(opened, kit.Refusal):
            return _UnavailableSession(opened)
        return QuartSession(opened, websocket)

    def is_null_session(self, obj: object) -> bool:
        """A refused request's stand-in is never saved."""
        return isinstance(obj, _UnavailableSession) or super().is_null_session(obj)

    async def save_session(
        self, app: Quart, session: SessionMixin, response: Response | WerkzeugResponse | None
    ) -> None:
        """Write what the request changed and add the kit's headers; a refusal replaces the response.

        Quart saves again when something after the save fails (a ``request_finished``
        receiver): its 500 page then gets the first save's headers (the cookie of a
        rotated session, or the same refusal), which a second save, finding nothing
        left to write, would not give: the browser would keep the old, deleted ID.
        """
        if not isinstance(session, QuartSession) or session.websocket or response is None:
            return
        if session.outcome is None:
            # Decided without the response's headers, so a later page decides Cache-Control for itself.
            session.outcome = await kit.afinish(self.manager, session.opened, (), response.status_code)
        added = session.outcome
        if isinstance(added, kit.Refusal):
            _become(response, added)
            return
        headers = response.headers
        own_cache_control = "Cache-Control" in headers
        for name, value in added:
            if name == "Cache-Control" and own_cache_control:
                continue  # the app chose its own (kit.response_headers keeps it the same way)
            headers.add(name, value)  # added, not set: Set-Cookie repeats, the app's Vary stays


def _form_reader(request: Request) -> kit.AsyncFormToken:
    """Read the ``csrf_token`` field, leaving the body to the view (Quart caches it).

    An urlencoded body is searched as the other integrations search it (at most
    :data:`kit.MAX_FORM_BODY` bytes and 1000 fields: Quart's own parser has no
    field limit); a multipart one is parsed by Quart, within its limits
    (``MAX_CONTENT_LENGTH``, ``MAX_FORM_MEMORY_SIZE``), files and all, as the
    view would. Too large is the kit's 413.
    """

    async def form_token() -> str | kit.Refusal | None:
        multipart = request.mimetype == "multipart/form-data"
        if not multipart and (request.content_length or 0) > kit.MAX_FORM_BODY:
            return kit.body_too_large(kit.MAX_FORM_BODY)
        try:
            if multipart:
                value = (await request.form).get(csrf.FORM_FIELD)
                return value if isinstance(value, str) else None
            body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        except RequestEntityTooLarge:
            length, most = request.content_length, request.max_content_length
            too_long = not multipart or (length is not None and most is not None and length > most)
            return kit.body_too_large((most if too_long else request.max_form_memory_size) or 0)
        except HTTPException:  # malformed or timed out: no token in it
            return None
        if len(body) > kit.MAX_FORM_BODY:  # chunked, so no Content-Length said so first
            return kit.body_too_large(kit.MAX_FORM_BODY)
        return kit.token_from_form(body)

    return form_token


def _route_exempt(app: Quart, request: BaseRequestWebsocket) -> bool:
    """Whether the view this request routes to is ``@csrf_exempt``.

    Quart opens the session before it routes the request, so the route is
    matched here too (unsafe HTTP methods only; a miss or a redirect is not exempt).
    """
    adapter = app.create_url_adapter(request)
    if adapter is None:
        return False
    try:
        rule, _ = adapter.match(return_rule=True)
    except HTTPException:
        return False
    return kit.is_csrf_exempt(app.view_functions.get(rule.endpoint))


def init_app(
    app: Quart, store: Any = None, config: SessionConfig | None = None, *, lazy: bool | None = None, **options: Any
) -> ServerSessionInterface:
    """Give ``app`` server-side sessions; ``quart.session`` keeps working.

    ``store`` is a store object (async face) or URL (default:
    ``app.config["SERVERSESSION_STORE"]``, else ``sqlite:///serversession.sqlite3``).
    ``config`` is used as is; without it the config comes from Quart's settings
    (read as Flask's, see :func:`serversession.integrations.flask.config_from_flask`) and
    ``options`` (any :class:`SessionConfig` field, e.g. ``cookie_secure=False``).
    ``app.config["SERVERSESSION_CSRF"] = False`` turns the CSRF check off (the
    cross-site screen stays). ``lazy`` (default ``app.config["SERVERSESSION_LAZY"]``,
    else False) reads the session at its first awaited use instead of when Quart
    opens it: a request that never touches it costs no store command, and views
    ``await session.aload()`` (or ``await aget_session()``) before using it, since
    a synchronous first use in a coroutine raises
    :class:`~serversession.core.session.SessionNotLoadedError`. Raises
    :class:`ConfigurationError` for a bad store URL or setting, or when both
    ``config`` and ``options`` are given.
    """
    if config is not None and options:
        raise ConfigurationError("pass either config= or SessionConfig options, not both")
    if store is None or isinstance(store, str):
        store = open_store(store or app.config.get("SERVERSESSION_STORE") or DEFAULT_STORE_URL)
    # Quart keeps Flask's setting names and its permanent_session_lifetime.
    config = config or config_from_flask(cast(Any, app), **options)
    if not app.config.get("SERVERSESSION_CSRF", True) and config.csrf:
        config = dataclasses.replace(config, csrf=False)
    manager = AsyncSessionManager(store, config)
    if lazy is None:
        lazy = bool(app.config.get("SERVERSESSION_LAZY", False))
    interface = ServerSessionInterface(manager, lazy=lazy)
    app.session_interface = interface  # type: ignore[assignment]  # Quart annotates its default's class
    app.extensions["serversession"] = interface

    # First in line, so no other hook runs on a session that is not there.
    app.before_request_funcs.setdefault(None, []).insert(0, _answer_refusal)
    app.before_websocket_funcs.setdefault(None, []).insert(0, _answer_refusal)
    for error in SESSION_ERRORS:
        app.register_error_handler(error, _session_error)
    if config.csrf:  # not when off: Flask-WTF's own csrf_token() stays visible
        app.context_processor(_template_helpers)
    return interface


def get_manager(app: Quart | None = None) -> AsyncSessionManager:
    """The :class:`AsyncSessionManager` of ``app`` (default: the current app), for listing and revoking.

    Raises ``LookupError`` when :func:`init_app` did not run on it.
    """
    interface = (app or current_app).extensions.get("serversession")
    if not isinstance(interface, ServerSessionInterface):
        raise LookupError("serversession.integrations.quart.init_app() was not called on this app")
    return interface.manager


def get_session() -> Session:
    """The :class:`Session` of the current request or WebSocket.

    Raises ``LookupError`` outside a request, when :func:`init_app` did not run,
    or when the request was refused before it had a session.
    """
    current = _current_session()
    if isinstance(current, QuartSession):
        return current.raw
    raise LookupError("no serversession session in this request: is init_app() called on the app?")


async def aget_session() -> Session:
    """:func:`get_session`, read from the store first if it was deferred (``lazy``).

    Raises ``LookupError`` like :func:`get_session` and
    :class:`~serversession.exceptions.StoreError` when the store fails (answered 503).
    """
    return await get_session().aload()


def _current_session() -> SessionMixin | None:
    """This request's session object, read without marking it accessed.

    Quart up to 0.22 keeps it on a request or a websocket context; 0.23 folds
    both into the app context, whose ``session`` property would also set
    ``accessed`` (a ``Vary: Cookie`` on a response that never read it).
    """
    if not (has_request_context() or has_websocket_context()):
        return None
    if hasattr(quart_globals, "request_ctx"):  # Quart <= 0.22
        ctx: Any = quart_globals.request_ctx if has_request_context() else quart_globals.websocket_ctx
        return cast("SessionMixin | None", ctx.session)
    ctx = cast(Any, quart_globals).app_ctx._get_current_object()  # Quart 0.23+
    return cast("SessionMixin | None", getattr(ctx, "_session", None))


async def _answer_refusal() -> Response | None:
    current = _current_session()
    if isinstance(current, _UnavailableSession):
        return _error_response(current.refusal)
    return None


async def _session_error(exc: Exception) -> Response:
    refusal = kit.answer_for(exc)
    if refusal is None:  # registered for session errors only; anything else is the app's
        raise exc
    return _error_response(refusal)


async def _template_helpers() -> dict[str, Callable[[], str]]:
    return {"csrf_token": lambda: get_session().csrf_token}


def _error_response(refusal: kit.Refusal) -> Response:
    body = refusal.body()
    headers = Headers(refusal.headers(body))
    response: Response = current_app.response_class(body, status=refusal.status, headers=headers)
    return response


def _become(response: Response | WerkzeugResponse, refusal: kit.Refusal) -> None:
    """Turn the app's response into ``refusal``'s answer, in place (Quart sends the object it passed)."""
    body = refusal.body()
    if isinstance(response, WerkzeugResponse):
        response.close()  # e.g. an open file from send_file
    response.headers.clear()
    response.status_code = refusal.status
    for name, value in refusal.headers(body):
        response.headers[name] = value
    response.set_data(body)
