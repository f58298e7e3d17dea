"""Moving a Flask-Session app on Redis to serversession without signing anyone out.

Ann signs in through Flask's test client on Flask-Session (Redis, msgpack; its
cookie plain or signed with ``SESSION_USE_SIGNER``); the
import runs through the CLI entry point; the app switches to serversession
(``accept_imported``, ``legacy_cookie_name="session"``, our cookie being
``__Host-session``) and the same Flask-Session cookie still signs her in. The
response sets our cookie and expires the old one; the old value replayed
afterwards is nobody.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, jsonify, session
from flask.testing import FlaskClient
from flask_session import Session as FlaskSession

from serversession.cli import main as cli
from serversession.core.ids import is_well_formed
from serversession.integrations import flask as serversession_flask

BASE = "https://localhost"  # our cookie is Secure (__Host-): the test client sends it over https only


def views(app: Flask) -> Flask:
    @app.post("/signin")
    def signin() -> Any:
        session["_user_id"] = "ann"  # where Flask-Login keeps the user
        session["cart"] = {"tea": 2}
        return "ok"

    @app.get("/whoami")
    def whoami() -> Any:
        return jsonify(user=session.get("_user_id"), cart=session.get("cart"))

    return app


def flask_session_app(port: int, signed: bool) -> Flask:
    app = Flask("incumbent")
    app.config.update(SECRET_KEY="flask secret", SESSION_TYPE="redis", SESSION_USE_SIGNER=signed,
                      SESSION_REDIS=redis.Redis(host="127.0.0.1", port=port, db=8))  # fmt: skip
    if signed:
        with pytest.warns(DeprecationWarning, match="use_signer"):  # deprecated in 0.8, still in use
            FlaskSession(app)
    else:
        FlaskSession(app)
    return views(app)


def serversession_app(store: str) -> tuple[Flask, Any]:
    app = Flask("switched")
    interface = serversession_flask.init_app(app, store=store, accept_imported=True, legacy_cookie_name="session",
                                             csrf=False)  # fmt: skip
    return views(app), interface.manager.store


def cookie(client: FlaskClient, name: str) -> str | None:
    found = client.get_cookie(name, domain="localhost")
    return found.value if found is not None else None


@pytest.mark.parametrize("signed", [False, True], ids=["plain", "use_signer"])
def test_flask_session_on_redis(redis_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch, signed: bool) -> None:  # fmt: skip
    with redis_server.client() as r:
        for db in (8, 9):
            r.execute_command("SELECT", db)
            r.flushdb()
    incumbent = flask_session_app(redis_server.port, signed)
    with incumbent.test_client() as before:
        assert before.post(f"{BASE}/signin").status_code == 200
        legacy = cookie(before, "session")
        assert legacy and before.get(f"{BASE}/whoami").json == {"user": "ann", "cart": {"tea": 2}}
        assert ("." in legacy) is signed  # itsdangerous: sid.signature
    incumbent.config["SESSION_REDIS"].close()

    source = f"flask-session+redis://127.0.0.1:{redis_server.port}/8" + ("?signed=1" if signed else "")
    monkeypatch.setenv("SERVERSESSION_IMPORT_SECRET_KEY", "flask secret")
    target = f"redis://127.0.0.1:{redis_server.port}/9"
    assert cli(["import", "--from", source, "--to", target, "--checkpoint", str(tmp_path / "cp.json")]) == 0
    out = capsys.readouterr().out
    assert "imported 1 session(s)" in out, out

    app, store = serversession_app(target)
    with app.test_client() as after:
        after.set_cookie("session", legacy, domain="localhost")
        first = after.get(f"{BASE}/whoami")
        assert first.json == {"user": "ann", "cart": {"tea": 2}}
        ours = cookie(after, "__Host-session")
        assert ours and is_well_formed(ours)
        assert cookie(after, "session") is None  # expired by the response
        assert any(h.startswith("session=;") for h in first.headers.getlist("Set-Cookie"))
        assert after.get(f"{BASE}/whoami").json == {"user": "ann", "cart": {"tea": 2}}
    with app.test_client() as replay:
        replay.set_cookie("session", legacy, domain="localhost")
        assert replay.get(f"{BASE}/whoami").json == {"user": None, "cart": None}
    store.close()
