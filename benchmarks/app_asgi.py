"""The benchmark app for ASGI: one Starlette app, four session layers.

``BENCH_KIND`` picks the layer, ``BENCH_STORE`` the store URL (ours) or the
Redis URL (starsessions); uvicorn imports ``benchmarks.app_asgi:app``.

* ``ours``: serversession's :class:`SessionMiddleware`; the write is
  ``amodify`` (compare-and-set), the documented way to increment.
* ``starsessions``: starsessions on Redis, sliding (``rolling=True``) like
  ours; the write is its natural read-increment-write.
* ``cookie``: Starlette's signed-cookie ``SessionMiddleware`` (no store).
* ``floor``: no session layer at all: what the framework alone costs.

Every variant has the same routes and the same Starlette middleware stack, so
the only difference measured is the session layer. ``/start`` and ``/login``
set the session up (create, then a sign-in-like write with rotation where the
layer has one); ``/bare``, ``/read`` and ``/write`` are measured; ``/counter``
reads the final counter for the lost-update check.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import instrument

instrument.install()  # before any store opens a connection

KIND = os.environ.get("BENCH_KIND", "floor")
STORE = os.environ.get("BENCH_STORE", "memory://")
USER = "bench"


async def bare(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def _ours() -> tuple[list[Middleware], dict[str, Any]]:
    from serversession import SessionConfig
    from serversession.integrations.asgi import SessionMiddleware, get_session

    async def start(request: Request) -> JSONResponse:
        session = get_session(request)
        session.ensure_stored()
        return JSONResponse({"csrf": session.csrf_token})

    async def login(request: Request) -> JSONResponse:
        session = get_session(request)
        session["user"] = USER
        session.user = USER
        session.rotate()
        return JSONResponse({"csrf": session.csrf_token})

    async def read(request: Request) -> JSONResponse:
        return JSONResponse({"user": get_session(request).get("user")})

    async def write(request: Request) -> JSONResponse:
        return JSONResponse({"n": await get_session(request).amodify("n", lambda n: n + 1, 0)})

    async def counter(request: Request) -> JSONResponse:
        return JSONResponse({"n": get_session(request).get("n", 0)})

    config = SessionConfig(cookie_secure=False)
    middleware = [Middleware(SessionMiddleware, store=STORE, config=config)]  # type: ignore[arg-type]
    return middleware, {"start": start, "login": login, "read": read, "write": write, "counter": counter}


def _peer_views(load: Any) -> dict[str, Any]:
    """Views for layers whose session is a plain dict on ``request.session``."""

    async def start(request: Request) -> JSONResponse:
        await load(request)
        request.session["started"] = True
        return JSONResponse({"csrf": ""})

    async def login(request: Request) -> JSONResponse:
        await load(request)
        request.session["user"] = USER
        return JSONResponse({"csrf": ""})

    async def read(request: Request) -> JSONResponse:
        await load(request)
        return JSONResponse({"user": request.session.get("user")})

    async def write(request: Request) -> JSONResponse:
        await load(request)
        request.session["n"] = request.session.get("n", 0) + 1
        return JSONResponse({"n": request.session["n"]})

    async def counter(request: Request) -> JSONResponse:
        await load(request)
        return JSONResponse({"n": request.session.get("n", 0)})

    return {"start": start, "login": login, "read": read, "write": write, "counter": counter}


def _starsessions() -> tuple[list[Middleware], dict[str, Any]]:
    import redis.asyncio
    from starsessions import SessionMiddleware, load_session
    from starsessions.stores.redis import RedisStore

    store = RedisStore(connection=redis.asyncio.Redis.from_url(STORE))
    middleware = [Middleware(SessionMiddleware, store=store, lifetime=1800, rolling=True,  # type: ignore[arg-type]
                             cookie_https_only=False)]  # fmt: skip
    return middleware, _peer_views(load_session)


def _cookie() -> tuple[list[Middleware], dict[str, Any]]:
    from starlette.middleware.sessions import SessionMiddleware

    async def nothing(request: Request) -> None:
        return None

    middleware = [Middleware(SessionMiddleware, secret_key="bench-secret-" * 3, max_age=1800,  # type: ignore[arg-type]
                             https_only=False)]  # fmt: skip
    return middleware, _peer_views(nothing)


def build() -> Any:
    """The app for ``BENCH_KIND``, wrapped in the counters of :mod:`.instrument`."""
    middleware: list[Middleware] = []
    views: dict[str, Any] = {}
    if KIND == "ours":
        middleware, views = _ours()
    elif KIND == "starsessions":
        middleware, views = _starsessions()
    elif KIND == "cookie":
        middleware, views = _cookie()
    elif KIND != "floor":
        raise SystemExit(f"unknown BENCH_KIND {KIND!r}")
    routes = [Route("/bare", bare)]
    routes += [Route(f"/{name}", view, methods=["POST"] if name in ("login", "write") else ["GET"])
               for name, view in views.items()]  # fmt: skip
    return instrument.asgi(Starlette(routes=routes, middleware=middleware))


app = build()
