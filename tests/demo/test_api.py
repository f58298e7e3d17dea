"""The demo's JSON API contract (docs/demo-api.md), driven over real HTTP.

Every test talks to a real ``serversession demo`` process. The main flows run
against every store; input handling runs once, on SQLite, because it is decided
before the store is reached. No answer may ever be a 500.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from demo_client import COOKIE, ApiClient, DemoServer, bare, error_of

from serversession.demo import catalog

SKU = "tea-sencha"
OTHER_SKU = "mug-classic"


# -- main flows, on every store ---------------------------------------------------------

def test_main_flow(demo: DemoServer) -> None:
    with ApiClient(demo) as client:
        info = client.start()
        assert info["authenticated"] is False and info["user"] is None
        now = datetime.now(timezone.utc)
        idle, absolute = (datetime.fromisoformat(info[k]) for k in ("idle_expires_at", "absolute_expires_at"))
        assert idle.tzinfo is not None and now < idle <= absolute
        first_cookie, first_csrf = client.cookie, client.csrf
        assert first_cookie

        added = client.post("/api/cart/items", json={"sku": SKU, "qty": 2})
        assert added.json() == {"items": {SKU: 2}, "count": 2}
        settings = client.put("/api/settings", json={"theme": "dark"})
        assert settings.json() == {"theme": "dark", "language": "en"}

        login = client.login("alice")
        assert login.status_code == 200 and login.json()["user"] == "alice"
        assert client.csrf != first_csrf and client.cookie not in (None, first_cookie)
        assert client.get("/api/me").json() == {"user": "alice"}
        assert client.get("/api/session").json()["authenticated"] is True
        assert client.get("/api/cart").json() == {"items": {SKU: 2}, "count": 2}  # kept across sign-in
        assert client.get("/api/settings").json() == {"theme": "dark", "language": "en"}

        with bare(demo, first_cookie) as old:  # the pre-login ID stopped working at once
            error_of(old.get("/api/me"), 401)
        error_of(client.post("/api/cart/items", json={"sku": SKU, "qty": 1}, headers={"X-CSRF-Token": first_csrf}), 403)

        listed = client.get("/api/sessions").json()["sessions"]
        mine = [s for s in listed if s["current"]]
        assert len(mine) == 1
        assert mine[0]["id"] != client.cookie and client.cookie not in str(listed)
        assert mine[0]["ip"] == "127.0.0.1" and "python-httpx" in mine[0]["user_agent"]
        assert set(mine[0]) >= {"id", "current", "created_at", "last_seen_at", "user_agent", "ip"}
        datetime.fromisoformat(mine[0]["created_at"])
        datetime.fromisoformat(mine[0]["last_seen_at"])

        client.post("/api/cart/items", json={"sku": OTHER_SKU, "qty": 1})
        removed = client.delete(f"/api/cart/items/{SKU}")
        assert removed.json() == {"items": {OTHER_SKU: 1}, "count": 1}

        signed_in_cookie = client.cookie
        assert client.post("/api/logout").json() == {"ok": True}
        assert client.cookie is None  # cleared by the response
        with bare(demo, signed_in_cookie) as replay:  # ended on the server, not just in the jar
            error_of(replay.get("/api/me"), 401)
            assert replay.get("/api/cart").json() == {"items": {}, "count": 0}


def test_fifty_concurrent_adds_lose_nothing(demo: DemoServer) -> None:
    with ApiClient(demo) as client:
        client.start()
        cookie, csrf = client.cookie, client.csrf
    assert cookie and csrf

    async def hammer() -> tuple[int, int, list[int]]:
        headers = {"Cookie": f"{COOKIE}={cookie}", "X-CSRF-Token": csrf}
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=demo.url, headers=headers, limits=limits, timeout=30) as http:
            before = (await http.get("/api/cart")).json()["count"]
            responses = await asyncio.gather(
                *(http.post("/api/cart/items", json={"sku": "cookie-box", "qty": 1}) for _ in range(50))
            )
            after = (await http.get("/api/cart")).json()["count"]
            return before, after, [r.status_code for r in responses]

    before, after, statuses = asyncio.run(hammer())
    assert statuses == [200] * 50
    assert after - before == 50


def test_ending_other_sessions(demo: DemoServer) -> None:
    with (
        ApiClient(demo, user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0") as laptop,
        ApiClient(demo, user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1") as phone,
        ApiClient(demo) as tablet,
        ApiClient(demo) as desk,
        ApiClient(demo) as bob,
    ):
        for client in (laptop, phone, tablet, desk):
            client.signed_in("alice")
        bob.signed_in("bob")
        phone_handle = next(s["id"] for s in phone.get("/api/sessions").json()["sessions"] if s["current"])
        listed = {s["id"]: s for s in laptop.get("/api/sessions").json()["sessions"]}
        assert phone_handle in listed and listed[phone_handle]["device"] == "Safari on iOS"

        error_of(bob.delete(f"/api/sessions/{phone_handle}"), 404)  # not bob's session
        assert laptop.delete(f"/api/sessions/{phone_handle}").json() == {"ok": True}
        error_of(phone.get("/api/me"), 401)
        error_of(laptop.delete(f"/api/sessions/{phone_handle}"), 404)  # already gone
        error_of(laptop.delete("/api/sessions/no-such-handle"), 404)

        revoked = laptop.post("/api/sessions/revoke-others").json()["revoked"]
        assert revoked >= 2  # tablet and desk (and any alice left by other tests)
        for client in (tablet, desk):
            error_of(client.get("/api/me"), 401)
        assert laptop.get("/api/me").json() == {"user": "alice"}
        assert bob.get("/api/me").json() == {"user": "bob"}
        assert [s["current"] for s in laptop.get("/api/sessions").json()["sessions"]] == [True]


# -- input handling and errors (decided before any store; run on SQLite) --------------

def test_healthz(sqlite_demo: DemoServer) -> None:
    response = httpx.get(f"{sqlite_demo.url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "set-cookie" not in response.headers


def test_server_prints_where_it_serves(sqlite_demo: DemoServer) -> None:
    assert sqlite_demo.banner in sqlite_demo.log().splitlines()
    assert "serving on http://localhost:" in sqlite_demo.banner  # bound to 127.0.0.1: a secure origin to browsers


def cookie_parts(set_cookie: str) -> tuple[str, str, dict[str, str]]:
    """(name, value, {lower-case attribute: value}) of one Set-Cookie header."""
    first, *rest = (part.strip() for part in set_cookie.split(";"))
    name, _, value = first.partition("=")
    attributes = {}
    for part in rest:
        key, _, attribute = part.partition("=")
        assert key.lower() not in attributes, set_cookie  # each attribute once
        attributes[key.lower()] = attribute
    return name, value, attributes


def session_cookie(response: httpx.Response) -> tuple[str, str, dict[str, str]]:
    """The one Set-Cookie of the session cookie in ``response``."""
    found = [cookie_parts(v) for v in response.headers.get_list("set-cookie") if v.startswith(f"{COOKIE}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def test_the_session_cookie_has_the_librarys_secure_attributes(sqlite_demo: DemoServer) -> None:
    """``__Host-…; Secure; HttpOnly; SameSite=Lax; Path=/``, no Domain, no expiry, over plain http://."""
    assert COOKIE.startswith("__Host-")
    with bare(sqlite_demo) as client:
        started = client.get("/api/session")
        name, value, attributes = session_cookie(started)
        assert name == COOKIE and len(value) >= 43
        assert attributes == {"secure": "", "httponly": "", "samesite": "Lax", "path": "/"}
        csrf = started.json()["csrf_token"]
        login = client.post(
            "/api/login",
            json={"username": "alice", "password": "wonderland"},
            headers={"Cookie": f"{COOKIE}={value}", "X-CSRF-Token": csrf},
        )
        assert login.status_code == 200, login.text
        rotated_name, rotated, attributes = session_cookie(login)  # the new ID at sign-in: the same attributes
        assert rotated_name == COOKIE and rotated not in ("", value)
        assert attributes == {"secure": "", "httponly": "", "samesite": "Lax", "path": "/"}
    with ApiClient(sqlite_demo) as jar:  # a client that keeps cookies the way a browser does on localhost
        jar.signed_in("bob")
        assert jar.get("/api/me").json() == {"user": "bob"}


# -- the catalogue --------------------------------------------------------------------------

PRICE = re.compile(r"[0-9]+\.[0-9]{2}")


def test_products_list_the_catalogue_with_decimal_prices(sqlite_demo: DemoServer) -> None:
    with bare(sqlite_demo) as client:
        response = client.get("/api/products")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    products = response.json()["products"]
    assert set(response.json()) == {"products"} and products
    for product in products:
        assert set(product) == {"sku", "name", "price"}
        assert all(isinstance(product[k], str) and product[k] for k in product)
        assert PRICE.fullmatch(product["price"]), product  # a decimal string, never a float's text
    assert products == [{"sku": p.sku, "name": p.name, "price": f"{p.price:.2f}"} for p in catalog.PRODUCTS]
    assert {p["sku"]: Decimal(p["price"]) for p in products}["tea-sencha"] == Decimal("12.50")
    assert any(p["price"].endswith("0") for p in products)  # "12.50", "9.00": trailing zeros kept


def test_products_need_no_session_and_create_none(sqlite_demo: DemoServer) -> None:
    with bare(sqlite_demo) as client:
        response = client.get("/api/products")
        assert response.status_code == 200
        assert "set-cookie" not in response.headers and "session-id" not in response.headers
    with ApiClient(sqlite_demo) as shopper:  # with a session, the same list, and the session is untouched
        shopper.start()
        cookie = shopper.cookie
        listed = shopper.get("/api/products")
        assert listed.json() == response.json() and "set-cookie" not in listed.headers
        assert shopper.cookie == cookie


def test_every_listed_product_can_be_added_and_no_other(sqlite_demo: DemoServer) -> None:
    with ApiClient(sqlite_demo) as client:
        client.start()
        skus = [p["sku"] for p in client.get("/api/products").json()["products"]]
        for sku in skus:
            assert client.post("/api/cart/items", json={"sku": sku, "qty": 1}).status_code == 200, sku
        assert client.get("/api/cart").json() == {"items": dict.fromkeys(skus, 1), "count": len(skus)}
        unlisted = "not-" + skus[0]
        assert unlisted not in skus
        error_of(client.post("/api/cart/items", json={"sku": unlisted, "qty": 1}), 404)
        assert client.get("/api/cart").json()["count"] == len(skus)


def test_csrf_is_required_and_a_refusal_changes_nothing(sqlite_demo: DemoServer) -> None:
    with ApiClient(sqlite_demo) as client:
        client.signed_in("alice")
        client.post("/api/cart/items", json={"sku": SKU, "qty": 1})
        attempts = [
            ("POST", "/api/cart/items", {"sku": SKU, "qty": 5}),
            ("DELETE", f"/api/cart/items/{SKU}", None),
            ("PUT", "/api/settings", {"theme": "dark"}),
            ("POST", "/api/logout", None),
            ("POST", "/api/sessions/revoke-others", None),
            ("POST", "/api/login", {"username": "bob", "password": "builder"}),
        ]
        for method, path, body in attempts:
            for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
                response = client.http.request(method, path, json=body, headers=headers)
                error_of(response, 403)
        assert client.get("/api/cart").json() == {"items": {SKU: 1}, "count": 1}
        assert client.get("/api/settings").json()["theme"] == "light"
        assert client.get("/api/me").json() == {"user": "alice"}


def test_wrong_credentials_are_401_with_one_message(sqlite_demo: DemoServer) -> None:
    with ApiClient(sqlite_demo) as client:
        client.start()
        wrong_password = error_of(client.login("alice", "not-her-password"), 401)
        unknown_user = error_of(client.login("mallory", "wonderland"), 401)
        assert wrong_password == unknown_user  # no hint about which usernames exist
        error_of(client.login("alice", "x" * 5000), 401)
        error_of(client.get("/api/me"), 401)


def test_signed_out_user_gets_401_on_account_endpoints(sqlite_demo: DemoServer) -> None:
    with ApiClient(sqlite_demo) as client:
        client.start()
        error_of(client.get("/api/me"), 401)
        error_of(client.get("/api/sessions"), 401)
        error_of(client.delete("/api/sessions/whatever"), 401)
        error_of(client.post("/api/sessions/revoke-others"), 401)
        assert client.post("/api/logout").json() == {"ok": True}  # harmless when signed out


@pytest.mark.parametrize(
    "body",
    [
        b"", b"{", b"not json", b"\xff\xfe{}", b"[1, 2]", b"null", b'"text"', b"[" * 5000,
        b'{"sku": 1, "qty": 1}', b'{"sku": "tea-sencha"}', b'{"qty": 1}',
        b'{"sku": "tea-sencha", "qty": "1"}', b'{"sku": "tea-sencha", "qty": 0}',
        b'{"sku": "tea-sencha", "qty": 100}', b'{"sku": "tea-sencha", "qty": -1}',
        b'{"sku": "tea-sencha", "qty": 1.5}', b'{"sku": "tea-sencha", "qty": true}',
        b'{"sku": "tea-sencha", "qty": 1e400}', b'{"sku": "tea-sencha", "qty": NaN}',
        b'{"sku": "tea-sencha", "qty": 1, "price": 0}', b'{"sku": "", "qty": 1}',
        b'{"sku": ["tea-sencha"], "qty": 1}', b'{"sku": "tea-sencha", "qty": ' + b"9" * 5000 + b"}",
    ],
)
def test_bad_cart_input_is_400(sqlite_demo: DemoServer, body: bytes) -> None:
    with ApiClient(sqlite_demo) as client:
        client.start()
        response = client.post("/api/cart/items", content=body, headers={"Content-Type": "application/json"})
        error_of(response, 400)
        assert client.get("/api/cart").json() == {"items": {}, "count": 0}


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/api/login", "POST", {"username": "alice"}),
        ("/api/login", "POST", {"username": "alice", "password": 5}),
        ("/api/login", "POST", ["alice", "wonderland"]),
        ("/api/settings", "PUT", {"theme": "blue"}),
        ("/api/settings", "PUT", {"language": "fr"}),
        ("/api/settings", "PUT", {"theme": 1}),
        ("/api/settings", "PUT", {"font": "serif"}),
        ("/api/settings", "PUT", {"theme": ["dark"]}),
    ],
)
def test_bad_login_and_settings_input_is_400(
    sqlite_demo: DemoServer, path: str, method: str, body: Any
) -> None:
    with ApiClient(sqlite_demo) as client:
        client.start()
        error_of(client.http.request(method, path, json=body, headers={"X-CSRF-Token": client.csrf or ""}), 400)
        assert client.get("/api/settings").json() == {"theme": "light", "language": "en"}


def test_unknown_sku_is_404(sqlite_demo: DemoServer) -> None:
    with ApiClient(sqlite_demo) as client:
        client.start()
        error_of(client.post("/api/cart/items", json={"sku": "unicorn", "qty": 1}), 404)
        error_of(client.delete("/api/cart/items/unicorn"), 404)
        assert client.delete(f"/api/cart/items/{SKU}").json() == {"items": {}, "count": 0}  # not in cart: fine


def test_oversized_bodies_are_413(sqlite_demo: DemoServer) -> None:
    with ApiClient(sqlite_demo) as client:
        client.start()
        big = b'{"sku": "tea-sencha", "qty": 1, "pad": "' + b"x" * 17_000 + b'"}'
        error_of(client.post("/api/cart/items", content=big, headers={"Content-Type": "application/json"}), 413)

        def chunks() -> Any:  # no Content-Length: the server must count while reading
            yield b'{"sku": "tea-sencha", "qty": 1, "pad": "'
            for _ in range(20):
                yield b"x" * 1024
            yield b'"}'

        error_of(client.post("/api/cart/items", content=chunks(), headers={"Content-Type": "application/json"}), 413)
        error_of(client.put("/api/settings", content=big, headers={"Content-Type": "application/json"}), 413)
        assert client.get("/api/cart").json()["count"] == 0


def test_hostile_cookies_get_a_fresh_session(sqlite_demo: DemoServer) -> None:
    for cookie in ("garbage", "x" * 10_000, "A" * 43, "\"'<>;", ""):
        with bare(sqlite_demo, cookie) as client:
            response = client.get("/api/session")
            assert response.status_code < 500
            if response.status_code == 200:
                assert response.json()["authenticated"] is False
                assert response.cookies.get(COOKIE) not in (None, "", cookie)
            else:
                error_of(response, response.status_code)
            assert client.get("/api/me").status_code == 401


JUNK_BODIES: list[bytes] = [
    b"", b"{}", b"[]", b"null", b"0", b'"x"', b"{" * 3000, b"\x00\xff" * 100, b'{"a": ' + b"1" * 5000 + b"}",
    b'{"sku": {}, "qty": {}, "username": [], "password": {}, "theme": null, "language": 3}',
    b"csrf_token=&sku=%ff%fe&qty=-9999999999999999999999&theme=%00",
    b'{"\\ud800": "\\udfff", "sku": "\\ud800", "username": "\\ud800", "password": "\\ud800", "theme": "\\ud800"}',
    b'{"username": "\\ud800", "password": "\\ud800"}', b'{"sku": "\\ud800", "qty": 1}',
    b"sku=tea-sencha&qty=" + b"9" * 5000, b"sku=tea-sencha&qty=%C2%B2", b"sku=tea-sencha&qty=%D9%A3&qty=1",
]
ENDPOINTS = [
    ("POST", "/api/login"), ("POST", "/api/logout"), ("POST", "/api/cart/items"), ("DELETE", "/api/cart/items/%00"),
    ("DELETE", "/api/cart/items/" + "x" * 3000), ("PUT", "/api/settings"), ("POST", "/api/sessions/revoke-others"),
    ("DELETE", "/api/sessions/%2e%2e"), ("POST", "/login"), ("POST", "/logout"), ("POST", "/cart/add"),
    ("POST", "/cart/remove"), ("POST", "/settings"), ("POST", "/sessions/x/end"), ("POST", "/sessions/revoke-others"),
    ("POST", "/api/reauth"), ("PUT", "/api/password"), ("POST", "/cart/update"), ("POST", "/session/stay"),
]


def test_no_input_gets_a_500(sqlite_demo: DemoServer) -> None:
    with ApiClient(sqlite_demo) as client:
        client.signed_in("bob")
        for method, path in ENDPOINTS:
            for body in JUNK_BODIES:
                for kind in ("application/json", "application/x-www-form-urlencoded", "text/plain"):
                    response = client.http.request(
                        method, path, content=body, headers={"Content-Type": kind, "X-CSRF-Token": client.csrf or ""}
                    )
                    assert response.status_code < 500, (method, path, body[:40], kind, response.text[:200])
                    if path.startswith("/api/") and response.status_code >= 400:
                        error_of(response, response.status_code)
                if client.get("/api/me").status_code != 200:  # a junk body that signed us out: sign in again
                    client.signed_in("bob")


def test_unknown_paths_and_methods_answer_json(sqlite_demo: DemoServer) -> None:
    with bare(sqlite_demo) as client:
        error_of(client.get("/api/nope"), 404)
        error_of(client.get("/api/login"), 405)
        error_of(client.get("/api/sessions/abc"), 405)
        error_of(client.post("/healthz"), 403)  # unsafe method: CSRF first, whatever the path


def test_header_transport(sqlite_demo: DemoServer) -> None:
    with bare(sqlite_demo, **{"Authorization": "Session new-please"}) as start:
        response = start.get("/api/session")
        assert response.status_code == 200 and COOKIE not in response.cookies
        session_id = response.headers["Session-Id"]
        csrf = response.json()["csrf_token"]
    with bare(sqlite_demo, **{"Authorization": f"Session {session_id}", "X-CSRF-Token": csrf}) as api:
        assert api.post("/api/cart/items", json={"sku": SKU, "qty": 3}).json()["count"] == 3
        login = api.post("/api/login", json={"username": "bob", "password": "builder"})
        assert login.status_code == 200 and COOKIE not in login.cookies
        new_id = login.headers["Session-Id"]
        assert new_id != session_id
    with bare(sqlite_demo, **{"Authorization": f"Session {new_id}"}) as api:
        assert api.get("/api/me").json() == {"user": "bob"}
        assert api.get("/api/cart").json()["count"] == 3
    with bare(sqlite_demo, **{"Authorization": f"Session {session_id}"}) as old:
        error_of(old.get("/api/me"), 401)


def test_the_api_takes_json_only_and_refuses_cross_site_posts(sqlite_demo: DemoServer) -> None:
    with ApiClient(sqlite_demo) as client:
        client.signed_in("alice")
        body = json.dumps({"sku": SKU, "qty": 1}).encode()
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b"):
            response = client.post("/api/cart/items", content=body, headers={"Content-Type": content_type})
            assert "Content-Type: application/json" in error_of(response, 415)
        evil = client.post("/api/cart/items", json={"sku": SKU, "qty": 1}, headers={"Origin": "https://evil.example"})
        assert error_of(evil, 403).startswith("cross-site request refused")
        assert client.get("/api/cart").json() == {"items": {}, "count": 0}
        own = client.post("/api/cart/items", json={"sku": SKU, "qty": 1}, headers={"Origin": sqlite_demo.url})
        assert own.status_code == 200, own.text


def test_signing_out_clears_the_sites_data(sqlite_demo: DemoServer) -> None:
    with ApiClient(sqlite_demo) as client:
        client.signed_in("alice")
        response = client.post("/api/logout")
        assert response.status_code == 200
        assert response.headers["clear-site-data"] == '"cache", "cookies", "storage"'
