"""Build the demo shop's Starlette app: sessions middleware, routes, error handling.

:func:`create_app` wires the pieces: a store opened from its URL, an
:class:`~serversession.AsyncSessionManager`, the
:class:`~serversession.integrations.asgi.SessionMiddleware` (which also enforces
CSRF), the JSON API (:mod:`.api`) and the pages (:mod:`.pages`).
:func:`app_from_env` does the same from ``SERVERSESSION_*`` environment
variables; it is the factory uvicorn imports in each worker process.

Errors: the contract promises JSON ``{"error": ...}`` with a fitting status and
never a traceback, so every exception class a handler may raise is mapped here.
Paths under ``/api`` (and ``/healthz``) answer JSON; pages answer the error page.
An unexpected exception still answers 500 ``{"error": "internal error"}`` (the
traceback goes to the server log only).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..core.config import SessionConfig
from ..core.guard import REAUTH_REQUIRED
from ..exceptions import (
    ConcurrentUpdateError,
    ConfigurationError,
    ReauthenticationRequired,
    SessionEndedError,
    SessionError,
    SessionTooLargeError,
    StoreError,
)
from ..integrations.asgi import SessionMiddleware
from ..manager import AsyncSessionManager
from ..observability import PrometheusMetrics, log_event
from ..stores.url import DEFAULT_STORE_URL, open_store
from . import api, pages
from .accounts import Accounts
from .audit import AuditLog
from .passwords import SharedPasswords
from .shop import DEFAULT_REAUTH_WINDOW, Demo, DemoError

log = logging.getLogger("serversession.demo")

#: Environment variables read by :func:`app_from_env` (and set by the server for its workers).
ENV_STORE = "SERVERSESSION_STORE"
ENV_IDLE_TIMEOUT = "SERVERSESSION_IDLE_TIMEOUT"
ENV_ABSOLUTE_TIMEOUT = "SERVERSESSION_ABSOLUTE_TIMEOUT"
ENV_GUESS_LIMIT = "SERVERSESSION_GUESS_LIMIT"
ENV_MAX_SESSIONS = "SERVERSESSION_MAX_SESSIONS"
ENV_REAUTH_WINDOW = "SERVERSESSION_REAUTH_WINDOW"
ENV_SECRET_KEY = "SERVERSESSION_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
ENV_INSECURE_COOKIE = "SERVERSESSION_INSECURE_COOKIE"
DEFAULT_IDLE_TIMEOUT = SessionConfig.idle_timeout
DEFAULT_ABSOLUTE_TIMEOUT = SessionConfig.absolute_timeout


def create_app(
    store: Any = DEFAULT_STORE_URL,
    *,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    absolute_timeout: float = DEFAULT_ABSOLUTE_TIMEOUT,
    secret_key: str | None = None,
    cookie_secure: bool = True,
    guess_limit: int | None = None,
    max_sessions: int = 0,
    reauth_window: float = DEFAULT_REAUTH_WINDOW,
) -> Starlette:
    """Return the demo app over ``store`` (a store URL or a store object).

    Timeouts are seconds; ``secret_key`` (None: unsigned IDs) signs the cookie.
    ``cookie_secure`` (True) keeps the library's cookie, ``__Host-session`` with
    ``Secure``; False drops ``Secure`` (and so the prefix: the cookie is plain
    ``session``), for plain HTTP on a host other than localhost.
    Raises :class:`~serversession.ConfigurationError` for a bad URL or setting.
    """
    if isinstance(store, str):
        store = open_store(store)
    # Secure stays on although the demo serves plain http://: browsers keep and
    # send Secure cookies for http://localhost (a "potentially trustworthy"
    # origin), and the demo shows the library's real defaults. Plain HTTP on any
    # other host needs cookie_secure=False (`serversession demo --insecure-cookie`).
    config = SessionConfig(
        cookie_secure=cookie_secure,
        idle_timeout=idle_timeout,
        absolute_timeout=absolute_timeout,
        secret_keys=[secret_key] if secret_key else (),
        # The API takes JSON only (a form or text/plain body is how a cross-site "simple
        # request" gets past the browser without a preflight), and the demo owns its
        # origin, so signing out may clear all of it.
        json_only_paths=["/api"],
        clear_site_data=["cache", "cookies", "storage"],
        guess_limit=_guess_limit(guess_limit),
        max_sessions_per_user=max_sessions,  # beyond it a sign-in ends the least recently used (0: no limit)
    )
    manager = AsyncSessionManager(store, config)
    if max_sessions < 0 or not reauth_window > 0:
        raise ConfigurationError("max_sessions must be >= 0 (0: no limit) and reauth_window positive seconds")
    demo = Demo(store=store, manager=manager, accounts=Accounts(),
                audit=AuditLog(manager.alist_sessions, eviction_reason=config.eviction_reason),
                passwords=SharedPasswords(store, manager.clock), reauth_window=reauth_window)  # fmt: skip
    manager.add_listener(demo.audit.on_event)  # the sessions page's "recent activity"
    manager.add_listener(log_event)  # one log line per lifecycle event, by public handle
    metrics = PrometheusMetrics(CollectorRegistry())
    metrics.attach(manager)

    async def serve_metrics(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await store.aclose()  # release connections; every session is already saved

    app = Starlette(
        routes=[
            *api.routes,
            *pages.routes,
            Route("/metrics", serve_metrics),
            Mount("/static", StaticFiles(packages=[("serversession.demo", "static")]), name="static"),
        ],
        middleware=[Middleware(SessionMiddleware, manager=manager)],
        exception_handlers={
            DemoError: on_demo_error,
            HTTPException: on_http_error,
            SessionError: on_session_error,
            Exception: on_unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.demo = demo
    return app


def app_from_env(environ: Mapping[str, str] | None = None) -> Starlette:
    """Build the app from ``SERVERSESSION_STORE``, ``..._IDLE_TIMEOUT``,
    ``..._ABSOLUTE_TIMEOUT``, ``..._SECRET_KEY`` and ``..._INSECURE_COOKIE``
    (defaults: the SQLite file ``serversession.sqlite3``, 1800 s, 43200 s,
    unsigned, a Secure cookie; ``..._INSECURE_COOKIE=1`` drops Secure).

    Raises :class:`~serversession.ConfigurationError` for a value that is not a
    number, or an ``..._INSECURE_COOKIE`` that is not a yes or no.
    """
    env = os.environ if environ is None else environ
    return create_app(
        env.get(ENV_STORE) or DEFAULT_STORE_URL,
        idle_timeout=_seconds(env, ENV_IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT),
        absolute_timeout=_seconds(env, ENV_ABSOLUTE_TIMEOUT, DEFAULT_ABSOLUTE_TIMEOUT),
        secret_key=env.get(ENV_SECRET_KEY) or None,
        cookie_secure=not env_flag(env, ENV_INSECURE_COOKIE),
        max_sessions=int(_seconds(env, ENV_MAX_SESSIONS, 0)),
        reauth_window=_seconds(env, ENV_REAUTH_WINDOW, DEFAULT_REAUTH_WINDOW),
    )


_YES = ("1", "true", "yes", "on")
_NO = ("", "0", "false", "no", "off")


def env_flag(env: Mapping[str, str], name: str) -> bool:
    """An on/off environment variable: 1/true/yes/on, or 0/false/no/off/unset (any case).

    Raises :class:`~serversession.ConfigurationError` for anything else, so a
    typo never silently picks the other setting.
    """
    raw = env.get(name, "").strip().lower()
    if raw in _YES:
        return True
    if raw in _NO:
        return False
    raise ConfigurationError(f"{name} must be 1 or 0 (yes/no, true/false), got {env[name]!r}")


def _guess_limit(given: int | None) -> int:
    """``given``, else ``SERVERSESSION_GUESS_LIMIT`` (an operator's knob, read by every
    worker: 0 turns guessing detection off), else the library's default (100 a minute)."""
    if given is not None:
        return given
    raw = os.environ.get(ENV_GUESS_LIMIT)
    if not raw:
        return SessionConfig.guess_limit
    if not raw.isdigit():
        raise ConfigurationError(f"{ENV_GUESS_LIMIT} must be a whole number (0: off), got {raw!r}")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {raw!r}") from None


# -- error handling --------------------------------------------------------------------


def wants_json(request: Request) -> bool:
    """API paths answer errors as JSON; pages answer the HTML error page."""
    path = request.url.path
    return path == "/healthz" or path == "/api" or path.startswith("/api/")


def error_response(request: Request, status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """``{"error": message}`` for the API, the error page for a person."""
    if not wants_json(request) and "session" in request.scope:
        # A store failure (503) may come from the session itself: render without it.
        response: Response = pages.error_page(request, status, message, with_session=status != 503)
    else:
        response = JSONResponse({"error": message}, status_code=status, headers={"Cache-Control": "no-store"})
    response.headers.update(headers or {})
    return response


async def on_demo_error(request: Request, exc: Exception) -> Response:
    """A request the shop refused (see :class:`DemoError`)."""
    if not isinstance(exc, DemoError):
        raise exc
    return error_response(request, exc.status, exc.message)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Routing errors (404 unknown path, 405 wrong method) in the demo's error format."""
    if not isinstance(exc, HTTPException):
        raise exc
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error_response(request, exc.status_code, str(exc.detail).lower(), exc.headers)


async def on_session_error(request: Request, exc: Exception) -> Response:
    """Errors of the session layer raised inside a handler (store down, lost races)."""
    if isinstance(exc, ReauthenticationRequired):  # the contract's 401 with "reauth_required": true
        message = "this needs a recent sign-in: POST your password to /api/reauth, then retry"
        if wants_json(request):
            body = {**REAUTH_REQUIRED.content(), "error": message}
            return JSONResponse(body, status_code=401, headers={"Cache-Control": "no-store"})
        return error_response(request, 401, message)
    if isinstance(exc, StoreError):
        log.warning("session store failed in %s: %s", request.url.path, exc)
        return error_response(request, 503, "session store unavailable, please retry", {"Retry-After": "1"})
    if isinstance(exc, SessionTooLargeError):
        return error_response(request, 413, "the session is full")
    if isinstance(exc, (ConcurrentUpdateError, SessionEndedError)):
        return error_response(request, 409, "the session changed meanwhile, please retry")
    return error_response(request, 400, "the request could not be applied to the session")


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    """Last resort: a bug. No traceback reaches the client."""
    return JSONResponse({"error": "internal error"}, status_code=500)
