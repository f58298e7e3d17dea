"""The behaviour-suite endpoints as an aiohttp.web application (``setup`` + ``await get_session``)."""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from serversession import Session, SessionConfig
from serversession.integrations.aiohttp import get_manager, get_session, setup

config = SessionConfig(
    cookie_secure=False,
    idle_timeout=float(os.environ.get("SS_IDLE", "2")),
    json_only_paths=["/set"],
    guess_limit=int(os.environ.get("SS_GUESS_LIMIT", "100")),
    max_sessions_per_user=int(os.environ.get("SS_CAP", "0")),
    on_limit=os.environ.get("SS_ON_LIMIT", "evict"),  # type: ignore[arg-type]
)
REAUTH = float(os.environ.get("SS_REAUTH") or 1)
routes = web.RouteTableDef()


async def pause(request: web.Request) -> None:
    await asyncio.sleep(float(request.query.get("sleep", 0)))


@routes.get("/untouched")
async def untouched(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})  # never awaits get_session: costs no store command


@routes.get("/get/{key}")
async def get_value(request: web.Request) -> web.Response:
    session = await get_session(request)
    return web.json_response({"value": session.get(request.match_info["key"])})


@routes.get("/csrf")
async def csrf(request: web.Request) -> web.Response:
    return web.json_response({"csrf": (await get_session(request)).csrf_token})


@routes.post("/set/{key}")
async def set_value(request: web.Request) -> web.Response:
    session = await get_session(request)
    session[request.match_info["key"]] = await request.json()
    await pause(request)
    return web.json_response({"csrf": session.csrf_token})


@routes.post("/incr/{key}")
async def incr(request: web.Request) -> web.Response:
    session = await get_session(request)
    value = await session.amodify(request.match_info["key"], lambda n: n + 1, 0)
    return web.json_response({"value": value, "csrf": session.csrf_token})


@routes.post("/rotate")
async def rotate(request: web.Request) -> web.Response:
    session = await get_session(request)
    session.rotate()
    return web.json_response({"csrf": session.csrf_token})


@routes.post("/login/{name}")
async def login(request: web.Request) -> web.Response:
    session = await get_session(request)
    await pause(request)  # a slow password check
    session.user = request.match_info["name"]
    session.rotate()
    return web.json_response({"csrf": session.csrf_token})


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    (await get_session(request)).destroy()
    return web.json_response({})


@routes.get("/sessions")
async def sessions(request: web.Request) -> web.Response:
    session = await get_session(request)
    infos = await get_manager(request).alist_sessions(session.user, current=session) if session.user else []
    return web.json_response({"sessions": [{"handle": i.handle, "current": i.current} for i in infos]})


@routes.post("/revoke-others")
async def revoke_others(request: web.Request) -> web.Response:
    session = await get_session(request)
    revoked = await get_manager(request).arevoke_user(session.user or "", keep=session)
    return web.json_response({"revoked": revoked, "csrf": session.csrf_token})


@routes.post("/sensitive")
async def sensitive(request: web.Request) -> web.Response:
    session = await get_session(request)
    session.require_recent_auth(REAUTH)  # ReauthenticationRequired: 401 with reauth_required
    return web.json_response({"authenticated_at": iso(session), "csrf": session.csrf_token})


@routes.post("/reauth")
async def reauth(request: web.Request) -> web.Response:
    session = await get_session(request)
    session.reauthenticated()
    return web.json_response({"authenticated_at": iso(session), "csrf": session.csrf_token})


@routes.post("/password")
async def password(request: web.Request) -> web.Response:
    session = await get_session(request)
    revoked = await session.acredential_changed("password changed")
    return web.json_response({"revoked": revoked, "authenticated_at": iso(session), "csrf": session.csrf_token})


def iso(session: Session) -> str | None:
    at = session.authenticated_at
    return None if at is None else at.isoformat()


def app() -> web.Application:
    """A fresh application (``serve.py`` calls this), so importing the module opens no store."""
    application = web.Application()
    setup(application, os.environ["SS_STORE"], config)
    application.add_routes(routes)
    return application
