"""The behaviour-suite endpoints as a Litestar app with ServerSessionPlugin.

Handlers take the session and the manager as dependencies (``session``,
``session_manager``), the way a Litestar app would.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
from litestar import Litestar, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery

from serversession import AsyncSessionManager, Session, SessionConfig
from serversession.integrations.litestar import ServerSessionPlugin

config = SessionConfig(
    cookie_secure=False,
    idle_timeout=float(os.environ.get("SS_IDLE", "2")),
    json_only_paths=["/set"],
    guess_limit=int(os.environ.get("SS_GUESS_LIMIT", "100")),
    max_sessions_per_user=int(os.environ.get("SS_CAP", "0")),
    on_limit=os.environ.get("SS_ON_LIMIT", "evict"),  # type: ignore[arg-type]
)
REAUTH = float(os.environ.get("SS_REAUTH") or 1)
Answer = dict[str, Any]


@get("/untouched")
async def untouched() -> Answer:
    return {"ok": True}  # takes no session dependency: with lazy=True it costs no store command


@get("/get/{key:str}")
async def get_value(key: FromPath[str], session: NamedDependency[Session]) -> Answer:
    return {"value": session.get(key)}


@get("/csrf")
async def csrf(session: NamedDependency[Session]) -> Answer:
    return {"csrf": session.csrf_token}


@post("/set/{key:str}", status_code=200)
async def set_value(
    key: FromPath[str], request: Request[Any, Any, Any], session: NamedDependency[Session], sleep: FromQuery[float] = 0
) -> Answer:
    session[key] = await request.json()
    await anyio.sleep(sleep)
    return {"csrf": session.csrf_token}


@post("/incr/{key:str}", status_code=200)
async def incr(key: FromPath[str], session: NamedDependency[Session]) -> Answer:
    value = await session.amodify(key, lambda n: n + 1, 0)
    return {"value": value, "csrf": session.csrf_token}


@post("/rotate", status_code=200)
async def rotate(session: NamedDependency[Session]) -> Answer:
    session.rotate()
    return {"csrf": session.csrf_token}


@post("/login/{name:str}", status_code=200)
async def login(name: FromPath[str], session: NamedDependency[Session], sleep: FromQuery[float] = 0) -> Answer:
    await anyio.sleep(sleep)  # a slow password check
    session.user = name
    session.rotate()
    return {"csrf": session.csrf_token}


@post("/logout", status_code=200)
async def logout(session: NamedDependency[Session]) -> Answer:
    session.destroy()
    return {}


@get("/sessions")
async def sessions(session: NamedDependency[Session], session_manager: NamedDependency[AsyncSessionManager]) -> Answer:
    infos = await session_manager.alist_sessions(session.user, current=session) if session.user else []
    return {"sessions": [{"handle": i.handle, "current": i.current} for i in infos]}


@post("/revoke-others", status_code=200)
async def revoke_others(
    session: NamedDependency[Session], session_manager: NamedDependency[AsyncSessionManager]
) -> Answer:
    revoked = await session_manager.arevoke_user(session.user or "", keep=session)
    return {"revoked": revoked, "csrf": session.csrf_token}


@post("/sensitive", status_code=200)
async def sensitive(session: NamedDependency[Session]) -> Answer:
    session.require_recent_auth(REAUTH)  # ReauthenticationRequired: 401 with reauth_required
    return {"authenticated_at": iso(session), "csrf": session.csrf_token}


@post("/reauth", status_code=200)
async def reauth(session: NamedDependency[Session]) -> Answer:
    session.reauthenticated()
    return {"authenticated_at": iso(session), "csrf": session.csrf_token}


@post("/password", status_code=200)
async def password(session: NamedDependency[Session]) -> Answer:
    revoked = await session.acredential_changed("password changed")
    return {"revoked": revoked, "authenticated_at": iso(session), "csrf": session.csrf_token}


def iso(session: Session) -> str | None:
    at = session.authenticated_at
    return None if at is None else at.isoformat()


handlers = [untouched, get_value, csrf, set_value, incr, rotate, login, logout, sessions, revoke_others, sensitive,
            reauth, password]  # fmt: skip
# SS_LAZY=1: read at first use (the session dependency awaits it)
plugin = ServerSessionPlugin(os.environ["SS_STORE"], config, lazy=bool(os.environ.get("SS_LAZY")))
app = Litestar(route_handlers=handlers, plugins=[plugin])
