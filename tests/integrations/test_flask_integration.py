"""Flask specifics, in process: settings mapping, SessionMixin semantics, CSRF, 503s."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flaky_store import FlakyStore
from flask import Flask, flash, get_flashed_messages, render_template_string, request, session
from flask.testing import FlaskClient

import serversession.integrations.flask
from serversession import ConfigurationError, MemoryStore, SessionConfig

ours: Any = session  # FlaskSession behind the proxy


def make_app(store: Any, **options: Any) -> Flask:
    app = Flask(__name__)
    serversession.integrations.flask.init_app(app, store=store, **{"cookie_secure": False, **options})

    @app.post("/set")
    def set_value() -> str:
        session.update(request.form.to_dict(flat=True))
        session.pop("csrf_token", None)
        return "ok"

    @app.get("/show")
    def show() -> dict[str, Any]:
        return {"data": dict(session), "new": ours.new, "modified": ours.modified, "permanent": session.permanent}

    @app.post("/remember")
    def remember() -> str:
        session.permanent = True
        session["remembered"] = True
        return "ok"

    @app.post("/count")
    def count() -> str:
        return str(ours.modify("n", lambda n: n + 1, 0))

    @app.get("/form")
    def form() -> str:
        return render_template_string('<input name="csrf_token" value="{{ csrf_token() }}">')

    @app.post("/hook")
    @serversession.integrations.flask.csrf_exempt
    def hook() -> str:
        return "hooked"

    @app.post("/flash")
    def add_flash() -> str:
        flash("saved", "info")
        return "ok"

    @app.get("/flashes")
    def flashes() -> Any:
        return get_flashed_messages(with_categories=True)

    @app.post("/clear")
    def clear() -> str:
        session.clear()
        return "cleared"

    @app.get("/static-ish")
    def no_session() -> str:
        return "plain"

    return app


def csrf(client: FlaskClient) -> str:
    return client.get("/form").text.split('value="')[1].split('"')[0]


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def client(store: FlakyStore) -> FlaskClient:
    return make_app(store).test_client()


def test_flask_settings_are_honoured_or_overridden() -> None:
    app = Flask(__name__)
    default = serversession.integrations.flask.config_from_flask(app)
    assert default.cookie_name == "__Host-session" and default.cookie_secure  # Flask's False is not taken
    assert default.cookie_samesite == "lax" and default.absolute_timeout == 43200  # nor its None / 31 days
    app.config.update(SESSION_COOKIE_NAME="sid", SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_DOMAIN="example.com",
                      SESSION_COOKIE_PATH="/app", PERMANENT_SESSION_LIFETIME=timedelta(minutes=10))  # fmt: skip
    mapped = serversession.integrations.flask.config_from_flask(app, renew_fraction=0.2)
    assert (mapped.cookie_name, mapped.cookie_samesite, mapped.cookie_domain, mapped.cookie_path) == (
        "sid", "strict", "example.com", "/app")  # fmt: skip
    assert (mapped.absolute_timeout, mapped.idle_timeout, mapped.renew_fraction) == (600, 600, 0.2)
    with pytest.raises(ConfigurationError):
        serversession.integrations.flask.init_app(app, store=MemoryStore(), config=SessionConfig(), csrf=False)


def test_session_mixin_semantics(client: FlaskClient) -> None:
    assert client.get("/show").json == {"data": {}, "new": True, "modified": False, "permanent": False}
    response = client.post("/set", data={"a": "1", "csrf_token": csrf(client)})
    assert "Max-Age" not in response.headers["Set-Cookie"]
    assert client.get("/show").json == {"data": {"a": "1"}, "new": False, "modified": False, "permanent": False}
    remembered = client.post("/remember", headers={"X-CSRF-Token": csrf(client)})
    assert "Max-Age=" in remembered.headers["Set-Cookie"]
    assert client.get("/show").json["permanent"] is True
    assert client.get("/show").headers["Vary"] == "Cookie"
    assert "Vary" not in client.get("/static-ish").headers


def test_modify_flash_and_session_transaction(client: FlaskClient) -> None:
    token = csrf(client)
    assert [client.post("/count", headers={"X-CSRF-Token": token}).text for _ in range(3)] == ["1", "2", "3"]
    client.post("/flash", headers={"X-CSRF-Token": token})
    assert client.get("/flashes").json == [["info", "saved"]]
    assert client.get("/flashes").json == []
    with client.session_transaction() as sess:
        sess["injected"] = "yes"
    assert client.get("/show").json["data"]["injected"] == "yes"


def test_csrf_is_enforced_exemptable_and_switchable(client: FlaskClient, store: FlakyStore) -> None:
    missing = client.post("/set", data={"a": "1"})
    assert missing.status_code == 403 and missing.json["error"].startswith("CSRF token missing: send it in")
    assert client.post("/set", data={"a": "1", "csrf_token": "x"}).json["error"].startswith("CSRF token invalid:")
    multipart = client.post("/set", data={"a": "2", "csrf_token": csrf(client)}, content_type="multipart/form-data")
    assert multipart.status_code == 200
    assert client.post("/hook").text == "hooked"
    app = Flask(__name__)
    app.config["SERVERSESSION_CSRF"] = False
    serversession.integrations.flask.init_app(app, store=store, cookie_secure=False)
    app.add_url_rule("/w", "w", lambda: "written", methods=["POST"])
    assert app.test_client().post("/w").text == "written"


def test_store_outages_answer_503(client: FlaskClient, store: FlakyStore) -> None:
    client.post("/set", data={"a": "1", "csrf_token": csrf(client)})
    store.fail.add("load")
    loads = store.loads
    ignored = client.get("/static-ish")  # a view that ignores the session never reads it: unaffected
    assert ignored.status_code == 200 and ignored.text == "plain" and store.loads == loads
    unsafe = client.post("/set", data={"a": "2", "csrf_token": "x"})  # the CSRF check reads it first
    for response in (client.get("/show"), unsafe):
        assert response.status_code == 503 and response.json == {"error": "session store unavailable, please retry"}
        assert response.headers["Retry-After"] == "1"
    store.fail = {"commit"}
    token = csrf(client)
    assert client.post("/count", headers={"X-CSRF-Token": token}).status_code == 503  # modify() in the view
    assert client.post("/set", data={"b": "2", "csrf_token": token}).status_code == 503  # the save
    store.fail.clear()
    assert client.get("/show").json["data"] == {"a": "1"}


def test_clear_empties_the_session_and_kills_the_old_id(client: FlaskClient, store: FlakyStore) -> None:
    token = csrf(client)
    client.post("/set", data={"user_id": "7", "csrf_token": token})
    old = client.get_cookie("session")
    assert old is not None
    cleared = client.post("/clear", headers={"X-CSRF-Token": token})
    new = client.get_cookie("session")
    assert cleared.status_code == 200 and new is not None and new.value != old.value
    assert client.get("/show").json["data"] == {}
    replay = make_app(store).test_client()
    replay.set_cookie("session", old.value)
    assert replay.get("/show").json["data"] == {}
    visitor = make_app(store).test_client()
    assert "Set-Cookie" not in visitor.post("/clear", headers={"X-CSRF-Token": csrf(visitor)}).headers


def test_a_planted_pre_session_csrf_secret_does_not_survive_sign_in(store: FlakyStore) -> None:
    """Flask's tutorial signs in with session.clear() then session["user_id"] = ...:
    on a first visit that must not keep a pre-session secret the client brought."""
    from serversession.core import csrf as csrf_core

    app = make_app(store)

    @app.post("/signin")
    def signin() -> str:
        session.clear()
        session["user_id"] = "alice"
        return "signed in"

    client = app.test_client()
    planted = "A" * 43
    client.set_cookie("session-csrf", planted)
    forged = csrf_core.token_for(planted)
    assert client.post("/signin", headers={"X-CSRF-Token": forged}).status_code == 200  # the form it protected
    assert client.post("/set", data={"x": "1"}, headers={"X-CSRF-Token": forged}).status_code == 403
    assert client.post("/set", data={"x": "1"}, headers={"X-CSRF-Token": csrf(client)}).status_code == 200


def test_an_after_request_hook_reading_the_session_keeps_the_guards_answer() -> None:
    """Flask-Login reads the session in after_request on every response, the guard's
    503 and 429 included: it must see an empty session, not turn them into a 500."""
    import secrets

    store = FlakyStore()
    app = make_app(store, guess_limit=2)

    @app.after_request
    def peek(response: Any) -> Any:
        _ = "_user_id" in session
        session.pop("_remember", None)
        return response

    client = app.test_client()
    client.get("/show")
    store.fail.add("load")
    client.set_cookie("session", secrets.token_urlsafe(32))
    down = client.get("/show")
    assert down.status_code == 503 and down.json == {"error": "session store unavailable, please retry"}
    store.fail.discard("load")
    answers = []
    for _ in range(5):
        client.set_cookie("session", secrets.token_urlsafe(32))
        answers.append(client.get("/show"))
    assert answers[-1].status_code == 429, [a.status_code for a in answers]
    assert answers[-1].json["error"].startswith("too many requests")
