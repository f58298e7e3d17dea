"""The HTML pages over plain HTTP: forms, CSRF fields, redirects, and no stored
session for a visitor who only looks (the browser test walks the same pages for real).
"""

from __future__ import annotations

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
