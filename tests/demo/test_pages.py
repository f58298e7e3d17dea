"""The HTML pages over plain HTTP: forms, CSRF fields, redirects, and no stored
session for a visitor who only looks (the browser test walks the same pages for real).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from demo_client import DemoServer, browser_client, error_of, form_token, stored_rows

SKU = "tea-sencha"


def test_get_pages_store_no_session(sqlite_demo: DemoServer) -> None:
    before = stored_rows(sqlite_demo.db_path)
    with browser_client(sqlite_demo) as browser:
        for path in ("/", "/login", "/cart", "/settings", "/sessions", "/api/cart", "/api/settings", "/healthz"):
            assert browser.get(path).status_code in (200, 303), path
        assert stored_rows(sqlite_demo.db_path) == before
        assert browser.get("/api/session").status_code == 200
        assert stored_rows(sqlite_demo.db_path) == before + 1


def test_pages_with_forms(sqlite_demo: DemoServer) -> None:
    with browser_client(sqlite_demo) as browser:
        shop = browser.get("/")
        assert shop.status_code == 200 and shop.text.count('class="product-card"') == 8
        assert 'data-theme="light"' in shop.text
        redirect = browser.get("/sessions")
        assert redirect.status_code == 303 and redirect.headers["location"] == "/login?next=/sessions"

        token = form_token(browser.get("/login?next=/sessions").text)
        error_of(browser.post("/cart/add", data={"sku": SKU, "qty": "1"}), 403)  # no token in the form
        assert browser.post("/cart/add", data={"csrf_token": token, "sku": SKU, "qty": "2"}).status_code == 303
        assert browser.post("/cart/add", data={"csrf_token": token, "sku": SKU, "qty": "0"}).status_code == 400
        assert browser.post("/cart/add", data={"csrf_token": token, "sku": "unicorn", "qty": "1"}).status_code == 404
        bad = browser.post("/login", data={"csrf_token": token, "username": "alice", "password": "nope"})
        assert bad.status_code == 401 and 'id="login-error"' in bad.text
        good = browser.post(
            "/login", data={"csrf_token": token, "username": "alice", "password": "wonderland", "next": "/sessions"}
        )
        assert good.status_code == 303 and good.headers["location"] == "/sessions?done=signed_in"
        page = browser.get(good.headers["location"])
        assert page.status_code == 200 and "This device" in page.text and 'id="confirmation"' in page.text
        assert "Signed in on" in page.text
        token = form_token(page.text)
        assert browser.post("/settings", data={"csrf_token": token, "theme": "dark"}).status_code == 303
        for path in ("/", "/cart", "/settings", "/sessions"):
            assert 'data-theme="dark"' in browser.get(path).text, path
        cart = browser.get("/cart").text
        assert 'id="cart-badge" class="badge">2<' in cart and "$25.00" in cart
        assert browser.post("/settings", data={"csrf_token": token, "theme": "pink"}).status_code == 400
        assert browser.post("/settings", data={"csrf_token": token, "language": "ru"}).status_code == 303
        russian = browser.get("/").text
        assert '<html lang="ru" data-theme="dark">' in russian and "Магазин" in russian
        assert browser.post("/logout", data={"csrf_token": token}).headers["location"] == "/?done=signed_out"
        assert 'id="signed-in-user"' not in browser.get("/").text


def test_login_redirects_only_to_local_paths(sqlite_demo: DemoServer) -> None:
    with browser_client(sqlite_demo) as browser:
        token = form_token(browser.get("/login").text)
        form = {"csrf_token": token, "username": "bob", "password": "builder", "next": "//evil.example/x"}
        assert browser.post("/login", data=form).headers["location"] == "/?done=signed_in"


def test_oversized_form_is_413(sqlite_demo: DemoServer) -> None:
    with browser_client(sqlite_demo) as browser:
        token = form_token(browser.get("/login").text)
        response = browser.post("/cart/add", data={"csrf_token": token, "sku": SKU, "qty": "1", "pad": "x" * 20_000})
        assert response.status_code == 413


def test_pictures_are_inline_svg_not_emoji(sqlite_demo: DemoServer) -> None:
    """Emoji render as empty boxes where no colour-emoji font is installed (the
    first screenshots from CI's Chromium showed that); the pages draw SVG instead."""
    import re

    emoji = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
    with browser_client(sqlite_demo) as browser:
        for path in ("/", "/cart", "/login", "/settings"):
            page = browser.get(path).text
            assert not emoji.search(page), path
        assert browser.get("/").text.count('<svg class="icon product-icon"') == 8


def test_the_favicon_is_served(sqlite_demo: DemoServer) -> None:
    with httpx.Client(base_url=sqlite_demo.url, timeout=10, follow_redirects=True) as client:
        response = client.get("/favicon.ico")
        assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
        assert "set-cookie" not in response.headers
        assert 'rel="icon"' in client.get("/").text


def test_the_settings_page_changes_the_password_and_signs_out_other_devices(tmp_path: Path) -> None:
    from demo_client import ApiClient

    with DemoServer(f"sqlite:///{tmp_path / 's.sqlite3'}") as demo:  # its own: bob's password changes
        with browser_client(demo) as browser, ApiClient(demo) as phone:
            phone.signed_in("bob")
            token = form_token(browser.get("/login").text)
            browser.post("/login", data={"csrf_token": token, "username": "bob", "password": "builder"})
            page = browser.get("/settings").text
            assert 'id="password-form"' in page and 'name="current_password"' not in page  # signed in just now
            short = browser.post("/settings/password", data={"csrf_token": form_token(page), "new_password": "short"})
            assert short.status_code == 400 and 'id="security-problem"' in short.text
            changed = browser.post(
                "/settings/password", data={"csrf_token": form_token(short.text), "new_password": "page-secret-1"}
            )
            assert changed.status_code == 200 and "Password changed. Other sessions signed out: 1" in changed.text
            assert phone.get("/api/me").status_code == 401
            assert browser.get("/api/me").json() == {"user": "bob"}
        with ApiClient(demo) as check:
            check.start()
            assert check.login("bob", "page-secret-1").status_code == 200


def test_the_cart_page_changes_quantities(sqlite_demo: DemoServer) -> None:
    with browser_client(sqlite_demo) as browser:
        token = form_token(browser.get("/").text)
        assert browser.post("/cart/add", data={"csrf_token": token, "sku": SKU, "qty": "2"}).status_code == 303
        error_of(browser.post("/cart/update", data={"sku": SKU, "qty": "5"}), 403)  # no token in the form
        changed = browser.post("/cart/update", data={"csrf_token": token, "sku": SKU, "qty": "150"})
        assert changed.status_code == 303 and changed.headers["location"] == f"/cart?done=cart_updated&sku={SKU}"
        assert browser.get("/api/cart").json() == {"items": {SKU: 150}, "count": 150}
        page = browser.get(changed.headers["location"]).text
        assert 'id="confirmation"' in page and "Cart updated: Sencha green tea." in page
        for bad in ("1000", "-1", "1.5", "", "x", "²"):
            assert browser.post("/cart/update", data={"csrf_token": token, "sku": SKU, "qty": bad}).status_code == 400
        assert browser.post("/cart/update", data={"csrf_token": token, "sku": "unicorn", "qty": "1"}).status_code == 404
        assert browser.get("/api/cart").json()["count"] == 150  # nothing of the refused ones was written
        removed = browser.post("/cart/update", data={"csrf_token": token, "sku": SKU, "qty": "0"})
        assert removed.headers["location"] == f"/cart?done=removed&sku={SKU}"
        assert browser.get("/api/cart").json() == {"items": {}, "count": 0}


def test_confirmations_show_only_known_texts(sqlite_demo: DemoServer) -> None:
    with browser_client(sqlite_demo) as browser:
        assert 'id="confirmation"' not in browser.get("/?done=<script>").text
        assert 'id="confirmation"' not in browser.get("/?done=added&sku=<b>x</b>").text
        assert 'id="confirmation"' not in browser.get("/?done=signed_in").text  # nobody is signed in
        page = browser.get("/?done=added&sku=tea-sencha&n=<b>").text
        assert "Added 0 \u00d7 Sencha green tea to your cart." in page and "<b>" not in page


def test_stay_signed_in_renews_the_session(tmp_path: Path) -> None:
    with DemoServer(f"sqlite:///{tmp_path / 's.sqlite3'}", idle_timeout=600) as demo:
        with browser_client(demo) as browser:
            token = form_token(browser.get("/login").text)
            json_accept = {"Accept": "application/json"}
            anonymous = browser.post("/session/stay", data={"csrf_token": token}, headers=json_accept)
            assert anonymous.status_code == 401 and anonymous.json()["signed_out"] is True
            browser.post("/login", data={"csrf_token": token, "username": "alice", "password": "wonderland"})
            page = browser.get("/")
            token = form_token(page.text)
            assert 'id="idle-warning"' in page.text and 'id="stay-signed-in"' in page.text
            error_of(browser.post("/session/stay", data={}, headers=json_accept), 403)
            before = browser.get("/api/session").json()["idle_expires_at"]
            time.sleep(1.1)  # the deadline has whole seconds
            stay = browser.post("/session/stay", data={"csrf_token": token}, headers=json_accept)
            assert stay.status_code == 200 and stay.json()["idle_remaining"] == 600, stay.text
            assert browser.get("/api/session").json()["idle_expires_at"] > before  # renewed in the store
            plain = browser.post("/session/stay", data={"csrf_token": token, "next": "/cart"})
            assert plain.status_code == 303 and plain.headers["location"] == "/cart"
