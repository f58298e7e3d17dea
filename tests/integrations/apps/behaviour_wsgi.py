"""The behaviour-suite endpoints as a plain WSGI app behind the WSGI middleware."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from serversession import SessionConfig
from serversession.integrations.wsgi import SessionMiddleware, get_session

config = SessionConfig(
    cookie_secure=False,
    idle_timeout=float(os.environ.get("SS_IDLE", "2")),
    json_only_paths=["/set"],
    guess_limit=int(os.environ.get("SS_GUESS_LIMIT", "100")),
    max_sessions_per_user=int(os.environ.get("SS_CAP", "0")),
    on_limit=os.environ.get("SS_ON_LIMIT", "evict"),  # type: ignore[arg-type]
)
REAUTH = float(os.environ.get("SS_REAUTH") or 1)


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def endpoints(environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    if environ["PATH_INFO"] == "/untouched":
        return 200, {"ok": True}  # never looks at the session: costs no store command
    session = get_session(environ)
    manager = middleware.manager
    method = environ["REQUEST_METHOD"]
    route, _, arg = environ["PATH_INFO"].strip("/").partition("/")
    if method == "GET" and route == "get":
        return 200, {"value": session.get(arg)}
    if method == "GET" and route == "csrf":
        return 200, {"csrf": session.csrf_token}
    if method == "GET" and route == "sessions":
        infos = manager.list_sessions(session.user, current=session) if session.user else []
        return 200, {"sessions": [{"handle": i.handle, "current": i.current} for i in infos]}
    if method != "POST":
        return 404, {}
    if route == "set":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        session[arg] = json.loads(environ["wsgi.input"].read(length))
        time.sleep(float(parse_qs(environ.get("QUERY_STRING", "")).get("sleep", ["0"])[0]))
    elif route == "incr":
        return 200, {"value": session.modify(arg, lambda n: n + 1, 0), "csrf": session.csrf_token}
    elif route == "rotate":
        session.rotate()
    elif route == "login":
        time.sleep(float(parse_qs(environ.get("QUERY_STRING", "")).get("sleep", ["0"])[0]))  # a slow password check
        session.user = arg
        session.rotate()
    elif route == "logout":
        session.destroy()
        return 200, {}
    elif route == "revoke-others":
        return 200, {"revoked": manager.revoke_user(session.user or "", keep=session), "csrf": session.csrf_token}
    elif route == "sensitive":
        session.require_recent_auth(REAUTH)  # ReauthenticationRequired: 401 with reauth_required
        return 200, {"authenticated_at": iso(session.authenticated_at), "csrf": session.csrf_token}
    elif route == "reauth":
        session.reauthenticated()
        return 200, {"authenticated_at": iso(session.authenticated_at), "csrf": session.csrf_token}
    elif route == "password":
        revoked = session.credential_changed("password changed")
        return 200, {"revoked": revoked, "authenticated_at": iso(session.authenticated_at), "csrf": session.csrf_token}
    else:
        return 404, {}
    return 200, {"csrf": session.csrf_token}


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    status, payload = endpoints(environ)
    body = json.dumps(payload).encode()
    start_response(f"{status} {'OK' if status == 200 else 'Not Found'}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])  # fmt: skip
    return [body]


middleware = SessionMiddleware(application, store=os.environ["SS_STORE"], config=config)
app = middleware
