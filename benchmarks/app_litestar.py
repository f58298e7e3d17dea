"""The benchmark app for Litestar: the same routes behind three session layers.

``BENCH_KIND``: ``ours`` (:class:`serversession.integrations.litestar.ServerSessionPlugin`;
the write is ``amodify``, compare-and-set), ``server-side`` (Litestar's own
``ServerSideSessionConfig`` over ``litestar.stores.redis.RedisStore`` on the
same Redis, its defaults but a 30-minute ``max_age`` like the other peers: it
loads the session for every request that carries the cookie and stores it again
with a fresh expiry on every response, so it slides like ours; the write is a
plain read-increment-write) or ``floor`` (no session layer: what Litestar alone
costs). ``BENCH_STORE`` is the store or Redis URL; uvicorn imports
``benchmarks.app_litestar:app``. See :mod:`.app_asgi` for what each route is for.

Every variant is one ``Litestar`` app with the same handlers, no OpenAPI schema
and the same counting wrapper, so the session layer is the only difference.
"""

from __future__ import annotations

import os
from typing import Any

from litestar import Litestar, Request, get, post

from . import instrument

instrument.install()  # before any store opens a connection

KIND = os.environ.get("BENCH_KIND", "floor")
STORE = os.environ.get("BENCH_STORE", "memory://")
USER = "bench"
Answer = dict[str, Any]
AnyRequest = Request[Any, Any, Any]


@get("/bare")
async def bare() -> Answer:
    return {"ok": True}


def _ours() -> tuple[list[Any], dict[str, Any]]:
    from serversession import SessionConfig
    from serversession.integrations.litestar import ServerSessionPlugin, get_session

    @get("/start")
    async def start(request: AnyRequest) -> Answer:
        session = get_session(request)
        session.ensure_stored()
        return {"csrf": session.csrf_token}

    @post("/login", status_code=200)
    async def login(request: AnyRequest) -> Answer:
        session = get_session(request)
        session["user"] = USER
        session.user = USER
        session.rotate()
        return {"csrf": session.csrf_token}

    @get("/read")
    async def read(request: AnyRequest) -> Answer:
        return {"user": get_session(request).get("user")}

    @post("/write", status_code=200)
    async def write(request: AnyRequest) -> Answer:
        return {"n": await get_session(request).amodify("n", lambda n: n + 1, 0)}

    @get("/counter")
    async def counter(request: AnyRequest) -> Answer:
        return {"n": get_session(request).get("n", 0)}

    plugin = ServerSessionPlugin(STORE, SessionConfig(cookie_secure=False))
    return [start, login, read, write, counter], {"plugins": [plugin]}


def _server_side() -> tuple[list[Any], dict[str, Any]]:
    from litestar.middleware.session.server_side import ServerSideSessionConfig
    from litestar.stores.redis import RedisStore
    from redis.asyncio import Redis

    @get("/start")
    async def start(request: AnyRequest) -> Answer:
        request.session["started"] = True
        return {"csrf": ""}

    @post("/login", status_code=200)
    async def login(request: AnyRequest) -> Answer:
        request.session["user"] = USER
        return {"csrf": ""}

    @get("/read")
    async def read(request: AnyRequest) -> Answer:
        return {"user": request.session.get("user")}

    @post("/write", status_code=200)
    async def write(request: AnyRequest) -> Answer:
        request.session["n"] = request.session.get("n", 0) + 1
        return {"n": request.session["n"]}

    @get("/counter")
    async def counter(request: AnyRequest) -> Answer:
        return {"n": request.session.get("n", 0)}

    config = ServerSideSessionConfig(max_age=1800, secure=False)
    store = RedisStore(Redis.from_url(STORE), namespace="bench")
    return [start, login, read, write, counter], {"middleware": [config.middleware], "stores": {"sessions": store}}


def build() -> Any:
    """The app for ``BENCH_KIND``, wrapped in the counters of :mod:`.instrument`."""
    handlers: list[Any] = [bare]
    options: dict[str, Any] = {}
    if KIND == "ours":
        more, options = _ours()
        handlers += more
    elif KIND == "server-side":
        more, options = _server_side()
        handlers += more
    elif KIND != "floor":
        raise SystemExit(f"unknown BENCH_KIND {KIND!r}")
    return instrument.asgi(Litestar(route_handlers=handlers, openapi_config=None, **options))


app = build()
