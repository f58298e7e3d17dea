"""The behaviour-suite endpoints as a Starlette app behind the ASGI middleware (``lazy`` with ``SS_LAZY=1``)."""

from __future__ import annotations

import os

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serversession import Session, SessionConfig
from serversession.integrations.asgi import SessionMiddleware, aget_session, exception_handlers

config = SessionConfig(
    cookie_secure=False,
    idle_timeout=float(os.environ.get("SS_IDLE", "2")),
    json_only_paths=["/set"],
    guess_limit=int(os.environ.get("SS_GUESS_LIMIT", "100")),
    max_sessions_per_user=int(os.environ.get("SS_CAP", "0")),
    on_limit=os.environ.get("SS_ON_LIMIT", "evict"),  # type: ignore[arg-type]
)
REAUTH = float(os.environ.get("SS_REAUTH") or 1)


async def untouched(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})  # never looks at the session: with lazy=True it costs no store command


async def get_value(request: Request) -> JSONResponse:
    return JSONResponse({"value": (await aget_session(request)).get(request.path_params["key"])})


async def csrf(request: Request) -> JSONResponse:
    return JSONResponse({"csrf": (await aget_session(request)).csrf_token})


async def set_value(request: Request) -> JSONResponse:
    session = await aget_session(request)
    session[request.path_params["key"]] = await request.json()
    await anyio.sleep(float(request.query_params.get("sleep", 0)))
    return JSONResponse({"csrf": session.csrf_token})


async def incr(request: Request) -> JSONResponse:
    session = await aget_session(request)
    value = await session.amodify(request.path_params["key"], lambda n: n + 1, 0)
    return JSONResponse({"value": value, "csrf": session.csrf_token})


async def rotate(request: Request) -> JSONResponse:
    session = await aget_session(request)
    session.rotate()
    return JSONResponse({"csrf": session.csrf_token})


async def login(request: Request) -> JSONResponse:
    session = await aget_session(request)
    await anyio.sleep(float(request.query_params.get("sleep", 0)))  # a slow password check
    session.user = request.path_params["name"]
    session.rotate()
    return JSONResponse({"csrf": session.csrf_token})


async def logout(request: Request) -> JSONResponse:
    (await aget_session(request)).destroy()
    return JSONResponse({})


async def sessions(request: Request) -> JSONResponse:
    session = await aget_session(request)
    infos = await middleware.manager.alist_sessions(session.user, current=session) if session.user else []
    return JSONResponse({"sessions": [{"handle": i.handle, "current": i.current} for i in infos]})


async def revoke_others(request: Request) -> JSONResponse:
    session = await aget_session(request)
    revoked = await middleware.manager.arevoke_user(session.user or "", keep=session)
    return JSONResponse({"revoked": revoked, "csrf": session.csrf_token})


async def sensitive(request: Request) -> JSONResponse:
    session = await aget_session(request)
    session.require_recent_auth(REAUTH)  # ReauthenticationRequired: 401 with reauth_required
    return JSONResponse({"authenticated_at": iso(session), "csrf": session.csrf_token})


async def reauth(request: Request) -> JSONResponse:
    session = await aget_session(request)
    session.reauthenticated()
    return JSONResponse({"authenticated_at": iso(session), "csrf": session.csrf_token})


async def password(request: Request) -> JSONResponse:
    session = await aget_session(request)
    revoked = await session.acredential_changed("password changed")
    return JSONResponse({"revoked": revoked, "authenticated_at": iso(session), "csrf": session.csrf_token})


def iso(session: Session) -> str | None:
    at = session.authenticated_at
    return None if at is None else at.isoformat()


routes = [
    Route("/untouched", untouched),
    Route("/get/{key}", get_value),
    Route("/csrf", csrf),
    Route("/set/{key}", set_value, methods=["POST"]),
    Route("/incr/{key}", incr, methods=["POST"]),
    Route("/rotate", rotate, methods=["POST"]),
    Route("/login/{name}", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/sessions", sessions),
    Route("/revoke-others", revoke_others, methods=["POST"]),
    Route("/sensitive", sensitive, methods=["POST"]),
    Route("/reauth", reauth, methods=["POST"]),
    Route("/password", password, methods=["POST"]),
]
inner = Starlette(routes=routes, exception_handlers=exception_handlers())
# SS_LAZY=1: read at first use (the handlers await aget_session, which works either way).
middleware = SessionMiddleware(inner, store=os.environ["SS_STORE"], config=config, lazy=bool(os.environ.get("SS_LAZY")))
app = middleware
