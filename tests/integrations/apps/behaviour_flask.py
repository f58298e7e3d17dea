"""The behaviour-suite endpoints as a Flask app using Flask's own ``session``."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from flask import Flask, request, session

import serversession.integrations.flask

app = Flask(__name__)
serversession.integrations.flask.init_app(
    app,
    store=os.environ["SS_STORE"],
    cookie_secure=False,
    idle_timeout=float(os.environ.get("SS_IDLE", "2")),
    json_only_paths=["/set"],
    guess_limit=int(os.environ.get("SS_GUESS_LIMIT", "100")),
    max_sessions_per_user=int(os.environ.get("SS_CAP", "0")),
    on_limit=os.environ.get("SS_ON_LIMIT", "evict"),
)
ours: Any = session  # the FlaskSession behind the proxy, with rotate() and friends
REAUTH = float(os.environ.get("SS_REAUTH") or 1)


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


@app.get("/untouched")
def untouched() -> dict[str, Any]:
    return {"ok": True}  # never looks at the session: costs no store command


@app.get("/get/<key>")
def get_value(key: str) -> dict[str, Any]:
    return {"value": session.get(key)}


@app.get("/csrf")
def csrf() -> dict[str, Any]:
    return {"csrf": ours.csrf_token}


@app.post("/set/<key>")
def set_value(key: str) -> dict[str, Any]:
    session[key] = request.get_json()
    time.sleep(float(request.args.get("sleep", 0)))
    return {"csrf": ours.csrf_token}


@app.post("/incr/<key>")
def incr(key: str) -> dict[str, Any]:
    return {"value": ours.modify(key, lambda n: n + 1, 0), "csrf": ours.csrf_token}


@app.post("/rotate")
def rotate() -> dict[str, Any]:
    ours.rotate()
    return {"csrf": ours.csrf_token}


@app.post("/login/<name>")
def login(name: str) -> dict[str, Any]:
    time.sleep(float(request.args.get("sleep", 0)))  # a slow password check
    ours.user = name
    ours.rotate()
    return {"csrf": ours.csrf_token}


@app.post("/logout")
def logout() -> dict[str, Any]:
    ours.destroy()
    return {}


@app.get("/sessions")
def sessions() -> dict[str, Any]:
    manager = serversession.integrations.flask.get_manager()
    infos = manager.list_sessions(ours.user, current=ours.raw) if ours.user else []
    return {"sessions": [{"handle": i.handle, "current": i.current} for i in infos]}


@app.post("/revoke-others")
def revoke_others() -> dict[str, Any]:
    revoked = serversession.integrations.flask.get_manager().revoke_user(ours.user or "", keep=ours.raw)
    return {"revoked": revoked, "csrf": ours.csrf_token}


@app.post("/sensitive")
def sensitive() -> dict[str, Any]:
    ours.require_recent_auth(REAUTH)  # ReauthenticationRequired: 401 with reauth_required
    return {"authenticated_at": iso(ours.authenticated_at), "csrf": ours.csrf_token}


@app.post("/reauth")
def reauth() -> dict[str, Any]:
    ours.reauthenticated()
    return {"authenticated_at": iso(ours.authenticated_at), "csrf": ours.csrf_token}


@app.post("/password")
def password() -> dict[str, Any]:
    revoked = ours.credential_changed("password changed")
    return {"revoked": revoked, "authenticated_at": iso(ours.authenticated_at), "csrf": ours.csrf_token}
