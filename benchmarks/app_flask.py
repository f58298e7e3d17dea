"""The benchmark app for Flask: the same routes behind three session layers.

``BENCH_KIND``: ``ours`` (:func:`serversession.integrations.flask.init_app`; the write is
``session.modify``), ``flask-session`` (Flask-Session on Redis, its defaults:
permanent sessions refreshed on every request; the write is a plain
read-increment-write) or ``floor`` (no server-side session: what Flask alone
costs). ``BENCH_STORE`` is the store or Redis URL. gunicorn imports
``benchmarks.app_flask:app``. See :mod:`.app_asgi` for what each route is for.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, session

from . import instrument

instrument.install()

KIND = os.environ.get("BENCH_KIND", "floor")
STORE = os.environ.get("BENCH_STORE", "memory://")
USER = "bench"

flask_app = Flask(__name__)
flask_app.config["SECRET_KEY"] = "bench-secret-" * 3


@flask_app.get("/bare")
def bare() -> Any:
    return {"ok": True}


def _ours() -> None:
    import serversession.integrations.flask

    serversession.integrations.flask.init_app(flask_app, store=STORE, cookie_secure=False)

    @flask_app.get("/start")
    def start() -> Any:
        session.raw.ensure_stored()  # type: ignore[attr-defined]
        return {"csrf": session.csrf_token}  # type: ignore[attr-defined]

    @flask_app.post("/login")
    def login() -> Any:
        session["user"] = USER
        session.user = USER  # type: ignore[attr-defined]
        session.rotate()  # type: ignore[attr-defined]
        return {"csrf": session.csrf_token}  # type: ignore[attr-defined]

    @flask_app.post("/write")
    def write() -> Any:
        return {"n": session.modify("n", lambda n: n + 1, 0)}  # type: ignore[attr-defined]


def _flask_session() -> None:
    import redis
    from flask_session import Session

    flask_app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(STORE))
    Session(flask_app)

    @flask_app.get("/start")
    def start() -> Any:
        session["started"] = True
        return {"csrf": ""}

    @flask_app.post("/login")
    def login() -> Any:
        session["user"] = USER
        return {"csrf": ""}

    @flask_app.post("/write")
    def write() -> Any:
        session["n"] = session.get("n", 0) + 1
        return {"n": session["n"]}


if KIND != "floor":
    if KIND == "ours":
        _ours()
    elif KIND == "flask-session":
        _flask_session()
    else:
        raise SystemExit(f"unknown BENCH_KIND {KIND!r}")

    @flask_app.get("/read")
    def read() -> Any:
        return {"user": session.get("user")}

    @flask_app.get("/counter")
    def counter() -> Any:
        return {"n": session.get("n", 0)}


app = instrument.wsgi(flask_app)
