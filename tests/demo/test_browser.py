"""A person's walk through the demo shop in a real (headless) Chromium.

Shop, cart (quantities changed), sign-in (the cart comes along), a confirmation
after each action, a dark theme on every page, the sessions page, a second device
signed in and then signed out from the first, and sign-out; the sessions page
saying why each ended session ended (in English and Russian); the idle-timeout
warning with its "Stay signed in" and the page after the deadline. Each step saves
a full-page screenshot under pytest's temporary directory (``screenshots-*``, the
path is printed) for a human to look at.

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
from demo_client import ApiClient, DemoServer
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
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
    """Numbered full-page screenshots in ``folder``: 01-shop.png, 02-added-to-cart.png, ..."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        print(f"screenshots: {folder}")

    def shot(self, page: Page, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)


@pytest.fixture
def steps(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Steps:
    return Steps(tmp_path_factory.mktemp(f"screenshots-{request.node.name}"))


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


def test_a_shopping_walk(browser: Browser, shop: DemoServer, steps: Steps) -> None:
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
    expect(page.locator("#confirmation")).to_have_text("Added 2 \u00d7 Sencha green tea to your cart.")
    expect(page).to_have_url(re.compile(r"/$"))  # the confirmation's query is gone: a reload won't repeat it
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
    candle = page.locator('.cart-row[data-sku="candle-cedar"]')
    candle.locator(".cart-qty").fill("3")
    candle.locator(".update-qty").click()
    expect(page.locator("#confirmation")).to_contain_text("Cart updated")
    expect(page.locator("#cart-badge")).to_have_text("5")
    expect(page.locator('.cart-row[data-sku="candle-cedar"] .cart-qty')).to_have_value("3")
    page.locator('.cart-row[data-sku="candle-cedar"] .cart-qty').fill("1")
    page.locator('.cart-row[data-sku="candle-cedar"] .update-qty').click()
    expect(page.locator("#cart-badge")).to_have_text("3")
    expect(page.locator("#cart-total")).to_have_text("$40.90")
    steps.shot(page, "cart-quantity-changed")

    page.click("#checkout-signin a")
    expect(page).to_have_url(re.compile(r"/login\?next=/cart$"))
    steps.shot(page, "login")
    sign_in(page, "alice", "wonderland")
    expect(page).to_have_url(re.compile(r"/cart$"))
    expect(page.locator("#signed-in-user")).to_have_text("alice")
    expect(page.locator(".cart-row")).to_have_count(2)  # the cart came along
    expect(page.locator("#cart-badge")).to_have_text("3")
    expect(page.locator("#confirmation")).to_have_text("You are signed in.")
    expect(page.locator(".cart-footer .note")).to_contain_text("signing out (or a timeout) empties it")
    assert_session_cookie(laptop, "localhost")  # the rotated ID, same attributes
    steps.shot(page, "signed-in-cart-kept")

    page.click('.main-nav a[href="/settings"]')
    page.select_option("#theme-select", "dark")
    page.click("#settings-save")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.locator("#confirmation")).to_have_text("Settings saved.")
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
    brand = phone_page.locator(".brand-mark")
    expect(brand).to_be_visible()  # the shop's icon stays on a 390 px phone...
    box = brand.bounding_box()
    assert box is not None and box["y"] >= 8, box  # ...clear of the top edge
    steps.shot(phone_page, "phone-signed-in")

    page.reload()
    other = page.locator('.session-row[data-current="false"]')
    expect(other).to_have_count(1)
    expect(other).to_contain_text("Safari on iOS")
    steps.shot(page, "sessions-two-devices")
    other.locator(".end-session").click()
    expect(page).to_have_url(re.compile(r"/sessions$"))
    expect(page.locator(".session-row")).to_have_count(1)
    latest = page.locator(".event-list .event").first
    expect(latest).to_have_attribute("data-what", "ended_by_you")
    expect(latest).to_contain_text("Session ended on Safari on iOS")
    expect(latest).to_contain_text("Why: you ended it from Headless Chrome on Linux")
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
    expect(page.locator("#confirmation")).to_contain_text("You are signed out")
    expect(page.locator("#cart-badge")).to_have_text("0")  # the session and its cart are gone
    steps.shot(page, "signed-out")

    phone.close()
    laptop.close()


TABLET_UA = (
    "Mozilla/5.0 (Linux; Android 14; Pixel Tablet) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)


def signed_in_page(browser: Browser, server: DemoServer, user_agent: str | None = None) -> Page:
    """A new browser (its own cookies) signed in as alice, on the sessions page."""
    context = browser.new_context(base_url=server.url, user_agent=user_agent, viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.goto("/login?next=/sessions")
    sign_in(page, "alice", "wonderland")
    expect(page.locator("#signed-in-user")).to_have_text("alice")
    return page


def test_the_sessions_page_says_why_each_session_ended(browser: Browser, steps: Steps) -> None:
    with DemoServer("memory://", flags=("--max-sessions", "3")) as server:
        laptop = signed_in_page(browser, server)
        phone = signed_in_page(browser, server, PHONE_UA)
        laptop.reload()
        # Both sign-ins started without a session: both are in the activity, the newest first.
        expect(laptop.locator('.event[data-what="signed_in"]')).to_have_count(2)
        expect(laptop.locator(".event").first).to_contain_text("Signed in on Safari on iOS")

        laptop.locator('.session-row[data-current="false"] .end-session').click()
        expect(laptop.locator("#confirmation")).to_have_text("The session was ended.")
        phone = signed_in_page(browser, server, PHONE_UA)
        tablet = signed_in_page(browser, server, TABLET_UA)
        laptop.goto("/sessions")
        laptop.click("#revoke-others")
        expect(laptop.locator("#confirmation")).to_have_text("Signed out everywhere else: 2 session(s) ended.")
        expect(laptop.locator('.event[data-what="signed_out_elsewhere"]')).to_have_count(2)

        phone = signed_in_page(browser, server, PHONE_UA)
        tablet = signed_in_page(browser, server, TABLET_UA)
        signed_in_page(browser, server)  # a fourth session: the cap of 3 ends the least recently used (the laptop)
        expect(phone.locator("#signed-in-user")).to_have_text("alice")
        phone.goto("/sessions")
        expect(phone.locator(".event").first).to_contain_text("Signed in on")
        too_many = phone.locator('.event[data-what="too_many_sessions"]')
        expect(too_many).to_have_count(1)
        expect(too_many).to_contain_text("Why: too many sessions")

        phone.goto("/settings")
        phone.fill("#new-password", "a-longer-secret")
        phone.click("#password-save")
        expect(phone.locator("#security-notice")).to_contain_text("Other sessions signed out: 2")
        phone.goto("/sessions")
        changed = phone.locator('.event[data-what="password_changed"]')
        expect(changed).to_have_count(2)
        expect(changed.first).to_contain_text("Why: the password was changed on Safari on iOS")
        expect(phone.locator('.event[data-what="password_changed_here"]')).to_contain_text("Password changed on Safari")
        for ended in ("ended_by_you", "signed_out_elsewhere", "too_many_sessions", "password_changed"):
            expect(phone.locator(f'.event[data-what="{ended}"] .tag-ended').first).to_be_visible()
        expect(phone.locator('.event[data-what="ended_by_you"]')).to_contain_text("Session ended on Safari on iOS")
        steps.shot(phone, "sessions-why-ended")

        tablet.reload()
        expect(tablet.locator("#signed-in-user")).to_have_count(0)
        phone.goto("/settings")
        phone.select_option("#language-select", "ru")
        phone.click("#settings-save")
        expect(phone.locator("#confirmation")).to_have_text("Настройки сохранены.")
        phone.goto("/sessions")
        expect(phone.locator('.event[data-what="password_changed"]').first).to_contain_text("Причина: пароль изменён")
        steps.shot(phone, "sessions-why-ended-ru")
        phone.set_viewport_size({"width": 390, "height": 844})
        steps.shot(phone, "sessions-why-ended-phone")


def test_the_idle_timeout_warning_renews_the_session_and_then_says_it_ended(browser: Browser, steps: Steps) -> None:
    idle = 18  # the warning shows idle / 3 = 6 s before the deadline (a minute for a real timeout)
    with DemoServer("memory://", idle_timeout=idle) as server, ApiClient(server) as other:
        page = signed_in_page(browser, server)
        handle = page.locator('.session-row[data-current="true"]').get_attribute("data-session-id")
        other.signed_in("alice")  # another device of alice, to read the laptop's session from outside

        def last_seen() -> str:
            rows = other.get("/api/sessions").json()["sessions"]
            return str(next(r["last_seen_at"] for r in rows if r["id"] == handle))

        warning = page.locator("#idle-warning")
        expect(warning).to_be_hidden()
        expect(warning).to_be_visible(timeout=idle * 1000 + 5000)
        expect(page.locator("#idle-warning-text")).to_contain_text("You will be signed out in 0:0")
        steps.shot(page, "idle-warning")
        seen_before = last_seen()  # the sign-in, seconds ago
        page.click("#stay-signed-in")
        expect(warning).to_be_hidden()
        assert last_seen() > seen_before  # renewed on the server, not only on the page
        steps.shot(page, "idle-stayed")

        ended = page.locator("#idle-ended")
        expect(ended).to_be_visible(timeout=idle * 1000 + 5000)
        expect(ended).to_contain_text("You were signed out for inactivity")
        expect(page.locator("#signed-in-user")).to_be_hidden()
        steps.shot(page, "idle-signed-out")
        assert page.request.get("/api/me").status == 401  # the server had ended it too
        page.click("#sign-in-again")
        expect(page.locator("#login-form")).to_be_visible()
        expect(page.locator("#signed-in-user")).to_have_count(0)
        steps.shot(page, "idle-sign-in-again")
