"""The benchmark app for Quart: the same routes behind two session layers.

``BENCH_KIND``: ``ours`` (:func:`serversession.integrations.quart.init_app`; the
write is ``await session.amodify``, compare-and-set), ``cookie`` (Quart's default
signed-cookie session, its defaults: Quart has no maintained server-side session
library, so the session its users have is the incumbent; nothing is stored, so
there is no counter to read back) or ``floor`` (no secret key, so Quart opens its
null session and nothing else: what Quart alone costs). ``BENCH_STORE`` is the
store URL. uvicorn imports ``benchmarks.app_quart:app``, with the same flags as
every other ASGI target. See :mod:`.app_asgi` for what each route is for.
"""

from __future__ import annotations

import os
from typing import Any

from quart import Quart, session

from . import instrument

instrument.install()  # before any store opens a connection

KIND = os.environ.get("BENCH_KIND", "floor")
STORE = os.environ.get("BENCH_STORE", "memory://")
USER = "bench"

quart_app = Quart(__name__)
ours: Any = session  # serversession's QuartSession behind the proxy (rotate(), amodify() and friends)


@quart_app.get("/bare")
async def bare() -> Any:
    return {"ok": True}


def _ours() -> None:
    from serversession.integrations import quart as serversession_quart

    serversession_quart.init_app(quart_app, store=STORE, cookie_secure=False)

    @quart_app.get("/start")
    async def start() -> Any:
        ours.raw.ensure_stored()
        return {"csrf": ours.csrf_token}

    @quart_app.post("/login")
    async def login() -> Any:
        session["user"] = USER
        ours.user = USER
        ours.rotate()
        return {"csrf": ours.csrf_token}

    @quart_app.post("/write")
    async def write() -> Any:
        return {"n": await ours.amodify("n", lambda n: n + 1, 0)}


def _cookie() -> None:
    quart_app.secret_key = "bench-secret-" * 3

    @quart_app.get("/start")
    async def start() -> Any:
        session["started"] = True
        return {"csrf": ""}

    @quart_app.post("/login")
    async def login() -> Any:
        session["user"] = USER
        return {"csrf": ""}

    @quart_app.post("/write")
    async def write() -> Any:
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}


if KIND != "floor":
    if KIND == "ours":
        _ours()
    elif KIND == "cookie":
        _cookie()
    else:
        raise SystemExit(f"unknown BENCH_KIND {KIND!r}")

    @quart_app.get("/read")
    async def read() -> Any:
        return {"user": session.get("user")}

    @quart_app.get("/counter")
    async def counter() -> Any:
        return {"n": session.get("n", 0)}


app = instrument.asgi(quart_app)
