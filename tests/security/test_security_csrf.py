"""CSRF: every state-changing request needs the session's token, sign-in included
(OWASP CSRF Prevention Cheat Sheet: synchronizer token, login CSRF; ASVS V4.2.2 / V3.5.x).

The routes are read from the demo's own route table, so a route added later is
covered without touching this file. Each attack carries the victim's cookie (a
browser attaches it to a forged cross-site request) with a missing or wrong
token; each must be refused with 403 and change nothing.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sec_kit import COOKIE, CSRF_COOKIE, TunedDemo, json_error, raw_client, sign_in, start_session

from serversession.demo import api, pages

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def unsafe_routes() -> list[tuple[str, str]]:
    found = []
    for route in [*api.routes, *pages.routes]:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method in UNSAFE:
                found.append((method, route.path))
    # Unsafe methods on paths that don't take them: the check comes first, whatever the route.
    found += [("PATCH", "/api/cart"), ("DELETE", "/api/session"), ("POST", "/healthz"), ("PUT", "/nowhere")]
    return found


def test_the_route_table_has_the_unsafe_routes_we_expect() -> None:
    paths = {path for _, path in unsafe_routes()}
    assert {"/api/login", "/api/logout", "/api/cart/items", "/api/settings", "/login", "/logout"} <= paths


class Victim:
    """alice, signed in with a cart line, plus a second alice session whose handle the attacks target."""

    def __init__(self, demo: TunedDemo) -> None:
        self.demo = demo
        pre_id, self.pre_sign_in_csrf = start_session(demo)
        with raw_client(demo, pre_id, **{"X-CSRF-Token": self.pre_sign_in_csrf}) as client:
            login = client.post("/api/login", json={"username": "alice", "password": "wonderland"})
        self.session_id = login.cookies[COOKIE]
        self.csrf = login.json()["csrf_token"]
        with raw_client(demo, self.session_id, **{"X-CSRF-Token": self.csrf}) as client:
            assert client.post("/api/cart/items", json={"sku": "tea-sencha", "qty": 1}).status_code == 200
        self.other_id, _ = sign_in(demo, "alice")
        with raw_client(demo, self.other_id) as client:
            self.other_handle = next(s["id"] for s in client.get("/api/sessions").json()["sessions"] if s["current"])

    def state(self) -> dict[str, Any]:
        with raw_client(self.demo, self.session_id) as client:
            handles = sorted(s["id"] for s in client.get("/api/sessions").json()["sessions"])
            return {
                "me": client.get("/api/me").json(),
                "cart": client.get("/api/cart").json(),
                "settings": client.get("/api/settings").json(),
                "other_alive": self.other_handle in handles,
            }


def concrete(path: str, victim: Victim) -> str:
    path = path.replace("{sku}", "tea-sencha").replace("{handle}", victim.other_handle)
    assert not re.search(r"[{}]", path), path
    return path


def body_for(path: str) -> dict[str, Any]:
    return {
        "/api/login": {"username": "bob", "password": "builder"},
        "/api/cart/items": {"sku": "tea-sencha", "qty": 5},
        "/api/settings": {"theme": "dark"},
    }.get(path, {})


def form_for(path: str, token: str) -> dict[str, str]:
    fields = {"/login": {"username": "bob", "password": "builder"}, "/cart/add": {"sku": "tea-sencha", "qty": "5"},
              "/cart/remove": {"sku": "tea-sencha"}, "/settings": {"theme": "dark"}}.get(path, {})
    return {**fields, "csrf_token": token}


def test_every_unsafe_request_needs_the_sessions_own_token(redis_demo: TunedDemo) -> None:
    victim = Victim(redis_demo)
    before = victim.state()
    _attacker_id, attacker_csrf = start_session(redis_demo)
    bad_tokens = {
        "missing": None,
        "empty": "",
        "random": "A" * 43,
        "the attacker's own session's token": attacker_csrf,
        "the victim's token from before sign-in": victim.pre_sign_in_csrf,
        "the session ID itself": victim.session_id,
    }
    with raw_client(redis_demo, victim.session_id) as browser:
        for method, route in unsafe_routes():
            path = concrete(route, victim)
            for label, token in bad_tokens.items():
                headers = {} if token is None else {"X-CSRF-Token": token}
                response = browser.request(method, path, json=body_for(route), headers=headers)
                assert response.status_code == 403, (method, path, label, response.status_code)
                json_error(response, 403)
                forms = browser.request(method, path, data=form_for(route, token or ""))
                # The JSON API refuses a form body outright (415, before the token is looked at).
                expected = 415 if path.startswith("/api/") else 403
                assert forms.status_code == expected, (method, path, label, "form")
            # The right token, but in the URL instead of a header or form field.
            assert browser.request(method, f"{path}?csrf_token={victim.csrf}").status_code == 403
    assert victim.state() == before


def test_the_right_token_works_so_the_refusals_above_mean_something(redis_demo: TunedDemo) -> None:
    victim = Victim(redis_demo)
    with raw_client(redis_demo, victim.session_id, **{"X-CSRF-Token": victim.csrf}) as client:
        assert client.put("/api/settings", json={"theme": "dark"}).status_code == 200
    with raw_client(redis_demo, victim.session_id) as client:
        assert client.post("/settings", data={"csrf_token": victim.csrf, "theme": "light"}).status_code == 303
    assert victim.state()["settings"]["theme"] == "light"


def test_login_csrf_a_visitor_without_a_session_cannot_be_signed_in_by_another_site(redis_demo: TunedDemo) -> None:
    credentials = {"username": "bob", "password": "builder"}  # the attacker's own account
    with raw_client(redis_demo) as attacker:
        page = attacker.get("/login")
    attacker_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    attacker_secret = page.cookies[CSRF_COOKIE]

    with raw_client(redis_demo) as victim:  # no cookies at all
        for headers in ({}, {"X-CSRF-Token": attacker_token}, {"X-CSRF-Token": "A" * 43}):
            response = victim.post("/api/login", json=credentials, headers=headers)
            json_error(response, 403)
            assert "set-cookie" not in response.headers
        assert victim.post("/login", data={**credentials, "csrf_token": attacker_token}).status_code == 403
    with raw_client(redis_demo) as victim:  # a victim with a pre-session secret of its own
        own_page = victim.get("/login")
        own_secret = own_page.cookies[CSRF_COOKIE]
        assert own_secret != attacker_secret
        with_own_cookie = {"Cookie": f"{CSRF_COOKIE}={own_secret}"}
        response = victim.post("/login", data={**credentials, "csrf_token": attacker_token}, headers=with_own_cookie)
        assert response.status_code == 403
        own_token = re.search(r'name="csrf_token" value="([^"]+)"', own_page.text).group(1)  # type: ignore[union-attr]
        ok = victim.post("/login", data={**credentials, "csrf_token": own_token}, headers=with_own_cookie)
        assert ok.status_code == 303  # the same form with the visitor's own token signs in


def test_the_token_changes_at_sign_in_and_the_old_one_dies(redis_demo: TunedDemo) -> None:
    session_id, before = start_session(redis_demo)
    with raw_client(redis_demo, session_id, **{"X-CSRF-Token": before}) as client:
        login = client.post("/api/login", json={"username": "alice", "password": "wonderland"})
    new_id, after = login.cookies[COOKIE], login.json()["csrf_token"]
    assert after != before
    with raw_client(redis_demo, new_id, **{"X-CSRF-Token": before}) as client:
        json_error(client.post("/api/cart/items", json={"sku": "tea-sencha", "qty": 1}), 403)
    with raw_client(redis_demo, new_id, **{"X-CSRF-Token": after}) as client:
        assert client.post("/api/cart/items", json={"sku": "tea-sencha", "qty": 1}).status_code == 200


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_methods_change_nothing(redis_demo: TunedDemo, method: str) -> None:
    victim = Victim(redis_demo)
    before = victim.state()
    with raw_client(redis_demo, victim.session_id) as browser:
        for _, route in unsafe_routes():
            response = browser.request(method, concrete(route, victim))
            assert response.status_code in (200, 303, 401, 404, 405), (method, route, response.status_code)
    assert victim.state() == before
