"""The behaviour-suite endpoints as a Quart app using Quart's own ``session``."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from typing import Any

from quart import Quart, request, session

from serversession.integrations import quart as serversession_quart

app = Quart(__name__)
serversession_quart.init_app(
    app,
    store=os.environ["SS_STORE"],
    lazy=bool(os.environ.get("SS_LAZY")),  # SS_LAZY=1: read at first use, so each view awaits ours.aload() first
    cookie_secure=False,
    idle_timeout=float(os.environ.get("SS_IDLE", "2")),
    json_only_paths=["/set"],
    guess_limit=int(os.environ.get("SS_GUESS_LIMIT", "100")),
    max_sessions_per_user=int(os.environ.get("SS_CAP", "0")),
    on_limit=os.environ.get("SS_ON_LIMIT", "evict"),
)
ours: Any = session  # the QuartSession behind the proxy, with rotate() and friends
REAUTH = float(os.environ.get("SS_REAUTH") or 1)


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


@app.get("/untouched")
async def untouched() -> dict[str, Any]:
    return {"ok": True}  # never touches the session: with lazy it costs no store command


@app.get("/get/<key>")
async def get_value(key: str) -> dict[str, Any]:
    await ours.aload()
    return {"value": session.get(key)}


@app.get("/csrf")
async def csrf() -> dict[str, Any]:
    await ours.aload()
    return {"csrf": ours.csrf_token}


@app.post("/set/<key>")
async def set_value(key: str) -> dict[str, Any]:
    await ours.aload()
    session[key] = await request.get_json()
    await asyncio.sleep(float(request.args.get("sleep", 0)))
    return {"csrf": ours.csrf_token}


@app.post("/incr/<key>")
async def incr(key: str) -> dict[str, Any]:
    await ours.aload()
    return {"value": await ours.amodify(key, lambda n: n + 1, 0), "csrf": ours.csrf_token}


@app.post("/rotate")
async def rotate() -> dict[str, Any]:
    await ours.aload()
    ours.rotate()
    return {"csrf": ours.csrf_token}


@app.post("/login/<name>")
async def login(name: str) -> dict[str, Any]:
    await ours.aload()
    await asyncio.sleep(float(request.args.get("sleep", 0)))  # a slow password check
    ours.user = name
    ours.rotate()
    return {"csrf": ours.csrf_token}


@app.post("/logout")
async def logout() -> dict[str, Any]:
    await ours.aload()
    ours.destroy()
    return {}


@app.get("/sessions")
async def sessions() -> dict[str, Any]:
    await ours.aload()
    manager = serversession_quart.get_manager()
    infos = await manager.alist_sessions(ours.user, current=ours.raw) if ours.user else []
    return {"sessions": [{"handle": i.handle, "current": i.current} for i in infos]}


@app.post("/revoke-others")
async def revoke_others() -> dict[str, Any]:
    await ours.aload()
    revoked = await serversession_quart.get_manager().arevoke_user(ours.user or "", keep=ours.raw)
    return {"revoked": revoked, "csrf": ours.csrf_token}


@app.post("/sensitive")
async def sensitive() -> dict[str, Any]:
    await ours.aload()
    ours.require_recent_auth(REAUTH)  # ReauthenticationRequired: 401 with reauth_required
    return {"authenticated_at": iso(ours.authenticated_at), "csrf": ours.csrf_token}


@app.post("/reauth")
async def reauth() -> dict[str, Any]:
    await ours.aload()
    ours.reauthenticated()
    return {"authenticated_at": iso(ours.authenticated_at), "csrf": ours.csrf_token}


@app.post("/password")
async def password() -> dict[str, Any]:
    await ours.aload()
    revoked = await ours.acredential_changed("password changed")
    return {"revoked": revoked, "authenticated_at": iso(ours.authenticated_at), "csrf": ours.csrf_token}
