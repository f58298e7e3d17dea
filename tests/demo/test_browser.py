"""A person's walk through the demo shop in a real (headless) Chromium.

Shop, cart, sign-in (the cart comes along), a dark theme on every page, the
sessions page, a second device signed in and then signed out from the first,
and sign-out. Each step saves a full-page screenshot under
``test-artifacts/screenshots/`` (git-ignored) for a human to look at.

The demo serves plain HTTP with a ``Secure`` ``__Host-`` cookie: Chromium keeps
and sends it for both loopback origins, so the laptop browses
``http://localhost`` (the address the demo prints) and the phone
``http://127.0.0.1``, and the cookie each keeps is checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_client import DemoServer
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"the browser test needs Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shop() -> Iterator[DemoServer]:
    with DemoServer("memory://") as server:
        yield server


class Steps:
    """Numbered full-page screenshots: 01-shop.png, 02-added-to-cart.png, ..."""

    def __init__(self) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob("*.png"):
            old.unlink()
        self.count = 0

    def shot(self, page: Page, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(SCREENSHOTS / f"{self.count:02d}-{name}.png"), full_page=True)


def assert_session_cookie(context: BrowserContext, host: str) -> None:
    """The browser holds exactly one session cookie: ``__Host-``, Secure, HttpOnly,
    SameSite=Lax, Path=/, for this host only, gone when the browser closes."""
    cookies = [c for c in context.cookies() if c["name"] == "__Host-session"]
    assert len(cookies) == 1, context.cookies()
    cookie = dict(cookies[0])
    assert cookie.pop("value")
    assert cookie == {
        "name": "__Host-session", "domain": host, "path": "/", "expires": -1,
        "httpOnly": True, "secure": True, "sameSite": "Lax",
    }  # fmt: skip


def sign_in(page: Page, user: str, password: str) -> None:
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#login-submit")


def test_a_shopping_walk(browser: Browser, shop: DemoServer) -> None:
    steps = Steps()
    laptop = browser.new_context(base_url=shop.localhost_url, viewport={"width": 1280, "height": 800})
    page = laptop.new_page()

    page.goto("/")
    expect(page.locator(".product-card")).to_have_count(8)
    expect(page.locator("#cart-badge")).to_have_text("0")
    expect(page.locator("#signed-in-user")).to_have_count(0)
    steps.shot(page, "shop")

    tea = page.locator('.product-card[data-sku="tea-sencha"]')
    tea.locator(".qty-input").fill("2")
    tea.locator(".add-to-cart").click()
    expect(page.locator("#cart-badge")).to_have_text("2")
    page.locator('.product-card[data-sku="candle-cedar"] .add-to-cart').click()
    expect(page.locator("#cart-badge")).to_have_text("3")
    expect(page.locator("#idle-remaining")).to_have_text(re.compile(r"\d+:\d\d"))  # stored now: a clock
    assert_session_cookie(laptop, "localhost")
    steps.shot(page, "added-to-cart")

    page.click('.main-nav a[href="/cart"]')
    expect(page.locator(".cart-row")).to_have_count(2)
    expect(page.locator("#cart-total")).to_have_text("$40.90")
    expect(page.locator("#checkout-signin")).to_be_visible()
    steps.shot(page, "cart")

    page.click("#checkout-signin a")
    expect(page).to_have_url(re.compile(r"/login\?next=/cart$"))
    steps.shot(page, "login")
    sign_in(page, "alice", "wonderland")
    expect(page).to_have_url(re.compile(r"/cart$"))
    expect(page.locator("#signed-in-user")).to_have_text("alice")
    expect(page.locator(".cart-row")).to_have_count(2)  # the cart came along
    expect(page.locator("#cart-badge")).to_have_text("3")
    assert_session_cookie(laptop, "localhost")  # the rotated ID, same attributes
    steps.shot(page, "signed-in-cart-kept")

    page.click('.main-nav a[href="/settings"]')
    page.select_option("#theme-select", "dark")
    page.click("#settings-save")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    steps.shot(page, "settings-dark")
    for path in ("/", "/cart", "/login", "/sessions"):
        page.goto(path)
        expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.goto("/")
    steps.shot(page, "shop-dark")

    page.goto("/sessions")
    expect(page.locator(".session-row")).to_have_count(1)
    expect(page.locator('.session-row[data-current="true"]')).to_contain_text("This device")
    expect(page.locator("#revoke-others")).to_be_disabled()
    steps.shot(page, "sessions-one-device")

    phone = browser.new_context(base_url=shop.url, user_agent=PHONE_UA, viewport={"width": 390, "height": 844})
    assert shop.url.startswith("http://127.0.0.1:")
    phone_page = phone.new_page()
    phone_page.goto("/sessions")
    expect(phone_page).to_have_url(re.compile(r"/login\?next=/sessions$"))
    sign_in(phone_page, "alice", "wonderland")
    expect(phone_page).to_have_url(re.compile(r"/sessions$"))
    expect(phone_page.locator(".session-row")).to_have_count(2)
    expect(phone_page.locator("html")).to_have_attribute("data-theme", "light")  # settings are per session
    assert_session_cookie(phone, "127.0.0.1")
    steps.shot(phone_page, "phone-signed-in")

    page.reload()
    other = page.locator('.session-row[data-current="false"]')
    expect(other).to_have_count(1)
    expect(other).to_contain_text("Safari on iOS")
    steps.shot(page, "sessions-two-devices")
    other.locator(".end-session").click()
    expect(page).to_have_url(re.compile(r"/sessions$"))
    expect(page.locator(".session-row")).to_have_count(1)
    ended = "Ended the session on Safari on iOS from Headless Chrome on Linux"
    expect(page.locator(".event-list")).to_contain_text(ended)
    steps.shot(page, "ended-phone-session")

    phone_page.reload()
    expect(phone_page.locator("#signed-in-user")).to_have_count(0)
    expect(phone_page.locator("#flash")).to_have_text(
        "Your session has ended (timed out or signed out elsewhere). Please sign in again."
    )
    expect(phone_page.locator("#login-form")).to_be_visible()
    steps.shot(phone_page, "phone-signed-out")

    page.click("#sign-out")
    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.locator("#signed-in-user")).to_have_count(0)
    expect(page.locator("#cart-badge")).to_have_text("0")  # the session and its cart are gone
    steps.shot(page, "signed-out")

    phone.close()
    laptop.close()
