"""The demo's authentication-grade controls, over HTTP against real demo processes:
``authenticated_at``, ``POST /api/reauth``, ``PUT /api/password`` (recent authentication,
other sessions ended, the new password held by every process on the store) and
``--max-sessions`` (the least recently used session signed out, and told why)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from demo_client import ApiClient, DemoServer, error_of


@pytest.fixture(scope="module")
def shared_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('auth') / 'sessions.sqlite3'}"


@pytest.fixture(scope="module")
def pair(shared_file: str) -> Iterator[tuple[DemoServer, DemoServer]]:
    """Two demo processes on one SQLite file, with a 2 s re-authentication window."""
    flags = ("--reauth-window", "2")
    with DemoServer(shared_file, flags=flags) as first, DemoServer(shared_file, flags=flags) as second:
        yield first, second


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_session_says_when_its_user_last_authenticated(pair: tuple[DemoServer, DemoServer]) -> None:
    demo = pair[0]
    with ApiClient(demo) as client:
        assert client.start()["authenticated_at"] is None
        before = datetime.now(timezone.utc).replace(microsecond=0)
        client.login("alice")
        at = parse(client.start()["authenticated_at"])
        assert before <= at <= datetime.now(timezone.utc) and at.tzinfo is not None


def test_reauth_checks_the_password_and_renews_the_authentication_time(pair: tuple[DemoServer, DemoServer]) -> None:
    demo = pair[0]
    with ApiClient(demo) as anonymous:
        anonymous.start()
        error_of(anonymous.post("/api/reauth", json={"password": "wonderland"}), 401)
    with ApiClient(demo) as client:
        client.signed_in("alice")
        first = parse(client.start()["authenticated_at"])
        error_of(client.post("/api/reauth", json={"password": "not-it"}), 401)
        error_of(client.post("/api/reauth", json={"pass": "x"}), 400)
        time.sleep(1.1)
        response = client.post("/api/reauth", json={"password": "wonderland"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ok"] is True and parse(body["authenticated_at"]) > first
        assert client.start()["authenticated_at"] == body["authenticated_at"]


def test_a_password_change_needs_a_recent_sign_in_and_ends_the_other_sessions(
    pair: tuple[DemoServer, DemoServer],
) -> None:
    first, second = pair
    with ApiClient(first) as laptop, ApiClient(second) as phone, ApiClient(second) as tablet:
        laptop.signed_in("bob")
        phone.signed_in("bob")
        tablet.signed_in("bob")
        error_of(laptop.put("/api/password", json={"new_password": "short"}), 400)
        time.sleep(2.2)  # past the 2 s window
        stale = laptop.put("/api/password", json={"new_password": "a-new-secret"})
        assert stale.status_code == 401 and stale.json()["reauth_required"] is True
        assert isinstance(stale.json()["error"], str)
        assert laptop.post("/api/reauth", json={"password": "builder"}).status_code == 200
        old_id = laptop.cookie
        changed = laptop.put("/api/password", json={"new_password": "a-new-secret"})
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert body["ok"] is True and body["revoked"] == 2 and body["csrf_token"] != laptop.csrf
        laptop.csrf = body["csrf_token"]
        assert laptop.cookie not in (None, old_id)  # this session got a new ID
        assert laptop.get("/api/me").json() == {"user": "bob"}
        for other in (phone, tablet):  # ended, on the other process too
            assert other.get("/api/me").status_code == 401
    for demo in pair:  # the new password holds on every process on the store, the old one nowhere
        with ApiClient(demo) as client:
            client.start()
            error_of(client.login("bob", "builder"), 401)
            assert client.login("bob", "a-new-secret").status_code == 200


def test_max_sessions_signs_out_the_least_recently_used_device(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'cap.sqlite3'}"
    with DemoServer(store, flags=("--max-sessions", "2")) as demo:
        with ApiClient(demo) as first, ApiClient(demo) as second, ApiClient(demo) as third, ApiClient(demo) as fourth:
            for client in (first, second, third):
                client.signed_in("alice")
                time.sleep(0.05)
            # The third sign-in ended the least recently used session: the API says why...
            assert "another device" in error_of(first.get("/api/me"), 401)
            for kept in (second, third):
                assert kept.get("/api/me").json() == {"user": "alice"}
            assert len(third.get("/api/sessions").json()["sessions"]) == 2
            fourth.signed_in("alice")
            # ...and so does the sessions page of the device signed out next.
            page = second.get("/sessions")
            assert page.status_code == 200 and "signed in on another device" in page.text
            assert third.get("/api/me").json() == {"user": "alice"}


def test_bad_input_on_reauth_and_password_changes_nothing(pair: tuple[DemoServer, DemoServer]) -> None:
    """Every refusal of the two endpoints leaves the account and the session as they were:
    the authentication time, the session ID and the password."""
    demo = pair[0]
    with ApiClient(demo) as client:
        client.signed_in("alice")
        time.sleep(1.1)  # a stamp by any refused request would show as a later second
        before = client.start()
        cookie = client.cookie

        def unchanged() -> None:
            now = client.start()
            assert now["authenticated_at"] == before["authenticated_at"] and now["user"] == "alice"
            assert client.cookie == cookie
            with ApiClient(demo) as check:  # alice's password is still hers
                check.start()
                assert check.login("alice", "wonderland").status_code == 200

        for body in ({}, {"password": 1}, {"password": None}, {"password": ["wonderland"]},
                     {"password": {"x": 1}}, {"password": "wonderland", "extra": 1}):  # fmt: skip
            error_of(client.post("/api/reauth", json=body), 400)
        for body in ({}, {"new_password": 12345678}, {"new_password": None}, {"new_password": ["a-new-secret"]},
                     {"new_password": "a-new-secret", "password": "wonderland"}):  # fmt: skip
            error_of(client.put("/api/password", json=body), 400)
        for path, method in (("/api/reauth", "POST"), ("/api/password", "PUT")):
            headers = {"X-CSRF-Token": client.csrf or "", "Content-Type": "application/json"}
            error_of(client.http.request(method, path, content=b"not json", headers=headers), 400)
        unchanged()

        for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):  # no token, or a wrong one: 403
            error_of(client.http.post("/api/reauth", json={"password": "wonderland"}, headers=headers), 403)
            error_of(client.http.put("/api/password", json={"new_password": "a-new-secret"}, headers=headers), 403)
        unchanged()

        # A wrong password says only that, whatever was wrong with it.
        for wrong in ("wonderlan", "Wonderland", "", "wonderland ", "w" * 300, "builder"):
            message = error_of(client.post("/api/reauth", json={"password": wrong}), 401)
            assert message == "wrong password"
        unchanged()

        error_of(client.put("/api/password", json={"new_password": "short"}), 400)  # too short: nothing written
        time.sleep(2.2)  # past the 2 s window: refused before anything is written
        stale = client.put("/api/password", json={"new_password": "a-new-secret"})
        assert stale.status_code == 401 and stale.json()["reauth_required"] is True
        unchanged()
