"""The benchmark app for aiohttp.web, served by aiohttp's own runner.

``BENCH_KIND``: ``ours`` (:func:`serversession.integrations.aiohttp.setup`; the
write is ``amodify``, compare-and-set), ``aiohttp-session`` (aiohttp-session
with its ``RedisStorage`` over ``redis.asyncio`` on the same Redis, a 30-minute
``max_age`` like the other peers (without one its keys never expire) and
otherwise its defaults: the session loads when a handler asks for it and is
stored again only when changed, so a read does not slide its expiry; the write
is a plain read-increment-write) or ``floor`` (no session layer: what aiohttp
alone costs). ``BENCH_STORE`` is the store or Redis URL.

``python -m benchmarks.app_aiohttp --host H --port P [--loop asyncio|uvloop]``
runs :func:`build` under ``aiohttp.web.run_app`` (one process, one loop, no
access log), with the same event loop as the uvicorn targets. See
:mod:`.app_asgi` for what each route is for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from aiohttp import web

from . import instrument

instrument.install()  # before any store opens a connection

KIND = os.environ.get("BENCH_KIND", "floor")
STORE = os.environ.get("BENCH_STORE", "memory://")
USER = "bench"
Handler = Any


async def bare(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def _ours(app: web.Application) -> dict[str, Handler]:
    from serversession import SessionConfig
    from serversession.integrations.aiohttp import get_session, setup

    setup(app, STORE, SessionConfig(cookie_secure=False))

    async def start(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.ensure_stored()
        return web.json_response({"csrf": session.csrf_token})

    async def login(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["user"] = USER
        session.user = USER
        session.rotate()
        return web.json_response({"csrf": session.csrf_token})

    async def read(request: web.Request) -> web.Response:
        return web.json_response({"user": (await get_session(request)).get("user")})

    async def write(request: web.Request) -> web.Response:
        return web.json_response({"n": await (await get_session(request)).amodify("n", lambda n: n + 1, 0)})

    async def counter(request: web.Request) -> web.Response:
        return web.json_response({"n": (await get_session(request)).get("n", 0)})

    return {"start": start, "login": login, "read": read, "write": write, "counter": counter}


def _aiohttp_session(app: web.Application) -> dict[str, Handler]:
    import aiohttp_session
    from aiohttp_session.redis_storage import RedisStorage
    from redis.asyncio import Redis

    aiohttp_session.setup(app, RedisStorage(Redis.from_url(STORE), max_age=1800))

    async def start(request: web.Request) -> web.Response:
        (await aiohttp_session.get_session(request))["started"] = True
        return web.json_response({"csrf": ""})

    async def login(request: web.Request) -> web.Response:
        session = await aiohttp_session.new_session(request)  # its docs' sign-in: a new identity
        session["user"] = USER
        return web.json_response({"csrf": ""})

    async def read(request: web.Request) -> web.Response:
        return web.json_response({"user": (await aiohttp_session.get_session(request)).get("user")})

    async def write(request: web.Request) -> web.Response:
        session = await aiohttp_session.get_session(request)
        session["n"] = session.get("n", 0) + 1
        return web.json_response({"n": session["n"]})

    async def counter(request: web.Request) -> web.Response:
        return web.json_response({"n": (await aiohttp_session.get_session(request)).get("n", 0)})

    return {"start": start, "login": login, "read": read, "write": write, "counter": counter}


def build() -> web.Application:
    """The app for ``BENCH_KIND``, with the counters of :mod:`.instrument` outermost."""
    app = web.Application()
    views: dict[str, Handler] = {}
    if KIND == "ours":
        views = _ours(app)
    elif KIND == "aiohttp-session":
        views = _aiohttp_session(app)
    elif KIND != "floor":
        raise SystemExit(f"unknown BENCH_KIND {KIND!r}")
    app.router.add_get("/bare", bare)
    for name, view in views.items():
        if name in ("login", "write"):
            app.router.add_post(f"/{name}", view)
        else:
            app.router.add_get(f"/{name}", view)
    return instrument.aiohttp(app)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.app_aiohttp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    loop: asyncio.AbstractEventLoop | None = None
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(build(), host=args.host, port=args.port, access_log=None, print=None, shutdown_timeout=5,
                loop=loop)  # fmt: skip


if __name__ == "__main__":
    main()
