"""The demo's HTML pages: the same shop as :mod:`.api`, for a person with a browser.

Pages are rendered on the server from the templates in ``templates/`` (Jinja2,
autoescaped). Every form posts with a ``csrf_token`` field, which the session
middleware checks before a handler runs, and every successful POST answers
``303 See Other`` so a reload never repeats it.

GET pages never store a session: they only read it, and the CSRF token they
embed comes from a small pre-session cookie until the visitor does something
that needs a session (adding to the cart, signing in).
"""

from __future__ import annotations

import math
import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, PackageLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..core.session import Session
from ..exceptions import ReauthenticationRequired
from ..integrations.asgi import get_session
from . import catalog, shop
from .api import NO_STORE, demo_of
from .catalog import money
from .devices import describe
from .shop import DemoError

templates = Environment(loader=PackageLoader("serversession.demo", "templates"), autoescape=True)

#: Messages the pages show, by language (the templates hold the rest).
MESSAGES = {
    "expired": {
        "en": "Your session has ended (timed out or signed out elsewhere). Please sign in again.",
        "ru": "Ваш сеанс завершён (истёк или закрыт на другом устройстве). Пожалуйста, войдите снова.",
    },
    "evicted": {
        "en": "You were signed out because you signed in on another device. Please sign in again.",
        "ru": "Вы вышли из системы, потому что вошли на другом устройстве. Пожалуйста, войдите снова.",
    },
    "bad_login": {"en": "Wrong username or password.", "ru": "Неверный логин или пароль."},
    "password_changed": {
        "en": "Password changed. Other sessions signed out:",
        "ru": "Пароль изменён. Завершено других сеансов:",
    },
}


def ended_note(session: Session, language: str) -> str | None:
    """What to tell a person whose session ended: why, when the server knows (the per-user
    cap signed them out), else that it timed out or was ended elsewhere."""
    if not session.expired:
        return None
    return message("evicted" if session.ended_because else "expired", language)


def message(key: str, language: str) -> str:
    """A page message in ``language`` (English when there is no translation)."""
    texts = MESSAGES[key]
    return texts.get(language, texts["en"])


def render(
    request: Request, name: str, http_status: int = 200, *, with_session: bool = True, **context: Any
) -> HTMLResponse:
    """Render template ``name`` with the header's context (user, theme, cart badge, clock).

    ``with_session=False`` renders an anonymous header without touching the
    session: the page that says the store failed must not read from it again.
    """
    page: dict[str, Any] = {"theme": "light", "language": "en", "user": None, "csrf_token": "", "cart_count": 0,
                            "idle_remaining": None, "idle_timeout": None, "flash": None, "done": None}  # fmt: skip
    if with_session:
        session = get_session(request)
        settings = shop.settings_of(session)
        page = {
            "theme": settings["theme"],
            "language": settings["language"],
            "user": session.user,
            "csrf_token": session.csrf_token,
            "cart_count": sum(shop.cart_of(session).values()),
            "idle_remaining": idle_remaining(session),
            "idle_timeout": session.config.idle_timeout,
            "flash": ended_note(session, settings["language"]),
            "done": confirmation(request, session),
        }
    page["request_path"] = safe_next(request.url.path)
    page.update(context)
    html = templates.get_template(name).render(page)
    return HTMLResponse(html, status_code=http_status, headers={"Cache-Control": "no-store"})


def idle_remaining(session: Session, *, writes: bool = False) -> int | None:
    """Whole seconds until the session times out if unused, as it stands after this
    request; None before it is stored. ``writes``: this request writes data.

    The page's idle-timeout warning counts down from this, and after it says the
    visitor was signed out, so it must be the truth, not the deadline as loaded:
    this very request renews the session when it writes data or when
    ``renew_after`` seconds have passed since the last renewal (the library's rule,
    see ``SessionConfig.renew_fraction``). Rounded up, and the page counts from when
    it arrived: the page never says "signed out" before the server has ended it
    (its clock may read a second late).
    """
    if session.is_new:
        return None
    now = time.time()
    deadline = session.idle_expires_at
    if writes or now - session.last_seen_at >= session.config.renew_after:
        window = min(session.config.idle_timeout, session.idle_limit or math.inf)
        deadline = min(now + window, session.absolute_expires_at)
    return max(0, math.ceil(deadline - now))


#: Confirmations a page shows after a form post (``?done=KEY``), texts in ``_i18n.html``.
CONFIRMATIONS = ("added", "cart_updated", "removed", "settings_saved", "signed_in", "signed_out",
                 "session_ended", "others_ended")  # fmt: skip


def confirmation(request: Request, session: Session) -> dict[str, Any] | None:
    """The confirmation the redirect after a form post asked for: ``{"key", "name", "qty", "count"}``.

    Only known keys and known products count, so a crafted link can show no text of its own.
    """
    query = request.query_params
    key = query.get("done")
    if key not in CONFIRMATIONS:
        return None
    product = catalog.find(query.get("sku", ""))
    if key in ("added", "removed") and product is None:
        return None
    if key == "signed_in" and session.user is None:
        return None
    number = query.get("n", "")
    return {"key": key, "name": product.name if product else "", "n": int(number) if number.isdigit() else 0}


def done(path: str, key: str, **extra: str | int) -> RedirectResponse:
    """303 to ``path`` asking it to confirm ``key`` (see :data:`CONFIRMATIONS`)."""
    query = urlencode({"done": key, **extra})
    return see_other(f"{path}{'&' if '?' in path else '?'}{query}")


def error_page(request: Request, status: int, text: str, *, with_session: bool = True) -> HTMLResponse:
    """The error page with ``status`` and a safe message."""
    return render(request, "error.html", status, with_session=with_session, status=status, message=text, active=None)


def see_other(path: str) -> RedirectResponse:
    """303 to a local path: the browser follows with a GET."""
    return RedirectResponse(path, status_code=303)


def safe_next(value: str | None) -> str:
    """``value`` if it is a local path ("/cart"), else "/": no open redirects."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or len(value) > 200:
        return "/"
    if any(ord(c) < 0x20 or c == "\\" for c in value):
        return "/"
    return value


async def read_form(request: Request) -> dict[str, str]:
    """Read a urlencoded form (at most :data:`shop.MAX_BODY` bytes); first value per field."""
    raw = await shop.read_body(request)
    try:
        fields = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=50, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise DemoError(400, "the form could not be read") from None
    return {name: values[0] for name, values in fields.items()}


def when(timestamp: float) -> str:
    """A short UTC time for the sessions page."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


# -- GET pages ---------------------------------------------------------------------


async def shop_page(request: Request) -> Response:
    """The product grid."""
    products = [
        {"sku": p.sku, "name": p.name, "price": p.price_text, "description": p.description, "icon": p.icon}
        for p in catalog.PRODUCTS
    ]
    return render(request, "shop.html", active="shop", products=products)


async def cart_page(request: Request) -> Response:
    """The cart with line totals."""
    items = []
    total = Decimal(0)
    for sku, qty in shop.cart_of(get_session(request)).items():
        product = catalog.find(sku)
        if product is None:
            continue
        line = product.price * qty
        total += line
        items.append(
            {"sku": sku, "name": product.name, "qty": qty, "price": product.price_text, "line_total": money(line)}
        )
    return render(request, "cart.html", active="cart", items=items, total=money(total))


async def login_page(request: Request) -> Response:
    """The sign-in form (a signed-in visitor goes on to ``next``)."""
    next_path = safe_next(request.query_params.get("next"))
    if get_session(request).user is not None:
        return see_other(next_path)
    return render(request, "login.html", active="login", next=next_path)


async def settings_page(request: Request, status: int = 200, **context: Any) -> Response:
    """Theme and language; for a signed-in user, the password change (Security)."""
    session, demo = get_session(request), demo_of(request)
    at = session.authenticated_at
    recent = at is not None and demo.manager.clock() - at.timestamp() < demo.reauth_window
    return render(request, "settings.html", status, active="settings", reauth_needed=not recent, **context)


async def password_post(request: Request) -> Response:
    """Change the password from the Security form; the current one is asked when the sign-in is old."""
    form = await read_form(request)
    session = get_session(request)
    if session.user is None:
        return signin_required(request, "/settings")
    demo = demo_of(request)
    try:
        if form.get("current_password"):
            await shop.reauthenticate(demo, session, form["current_password"])
        revoked = await shop.change_password(demo, session, form.get("new_password", ""))
    except DemoError as exc:
        return await settings_page(request, exc.status, problem=exc.message)
    except ReauthenticationRequired:
        problem = "enter your current password: your last sign-in was a while ago"
        return await settings_page(request, 401, problem=problem)
    language = shop.settings_of(session)["language"]
    notice = f"{message('password_changed', language)} {revoked}"
    return await settings_page(request, notice=notice)


async def sessions_page(request: Request) -> Response:
    """The user's active sessions and recent account events; sign-in required."""
    session = get_session(request)
    if session.user is None:
        return signin_required(request, "/sessions")
    demo = demo_of(request)
    infos = await demo.manager.alist_sessions(session.user, current=session)
    rows = [
        {
            "id": i.handle,
            "current": i.current,
            "device": describe(i.user_agent),
            "ip": i.ip,
            "created_at": when(i.created_at),
            "last_seen_at": when(i.last_seen_at),
            "user_agent": i.user_agent,
        }
        for i in infos
    ]
    demo.audit.know(infos)
    events = [
        {"at": when(e.at), "what": e.what, "ended": e.ended, "device": e.device, "by": e.by, "text": e.text}
        for e in demo.audit.recent(session.user)
    ]
    return render(request, "sessions.html", active="sessions", sessions=rows, events=events)


def signin_required(request: Request, next_path: str) -> Response:
    """A page needs a signed-in user: after a timeout show the sign-in form with a note, else redirect."""
    if get_session(request).expired:
        return render(request, "login.html", active="login", next=next_path)
    return see_other(f"/login?next={quote(next_path)}")


# -- form posts ----------------------------------------------------------------------


async def login_post(request: Request) -> Response:
    """Sign in from the form; a wrong password shows the form again (401)."""
    form = await read_form(request)
    session = get_session(request)
    next_path = safe_next(form.get("next"))
    try:
        await shop.login(demo_of(request), session, form.get("username", ""), form.get("password", ""))
    except DemoError as exc:
        if exc.status != 401:
            raise
        language = shop.settings_of(session)["language"]
        return render(request, "login.html", 401, active="login", next=next_path, error=message("bad_login", language))
    return done(next_path, "signed_in")


async def logout_post(request: Request) -> Response:
    """Sign out and go to the shop."""
    shop.logout(demo_of(request), get_session(request))
    return done("/", "signed_out")


async def cart_add(request: Request) -> Response:
    """Add a product from the shop grid."""
    form = await read_form(request)
    sku, qty = shop.parse_sku(form.get("sku")), shop.parse_qty(form.get("qty", "1"))
    await shop.add_to_cart(get_session(request), sku, qty)
    return done("/", "added", sku=sku, n=qty)


async def cart_update(request: Request) -> Response:
    """Change a cart line's quantity from the cart page (0 removes the line)."""
    form = await read_form(request)
    sku, qty = shop.parse_sku(form.get("sku")), shop.parse_line_qty(form.get("qty", ""))
    await shop.set_quantity(get_session(request), sku, qty)
    return done("/cart", "cart_updated" if qty else "removed", sku=sku)


async def cart_remove(request: Request) -> Response:
    """Remove a product from the cart page."""
    form = await read_form(request)
    sku = shop.parse_sku(form.get("sku"))
    await shop.remove_from_cart(get_session(request), sku)
    return done("/cart", "removed", sku=sku)


async def settings_post(request: Request) -> Response:
    """Save theme and language."""
    form = await read_form(request)
    changes = shop.parse_settings({k: v for k, v in form.items() if k != "csrf_token"})
    await shop.update_settings(get_session(request), changes)
    return done("/settings", "settings_saved")


async def stay_post(request: Request) -> Response:
    """The idle-timeout warning's "Stay signed in": renew the session on the server.

    A data write always renews the idle deadline (a plain request renews only once
    ``renew_after`` has passed), so this stores the time of the click. The page's
    script posts the form with ``Accept: application/json`` and gets
    ``{"idle_remaining": seconds}`` (401 ``{"signed_out": true}`` if the session ended
    meanwhile); without the script the form redirects back to ``next``.
    """
    form = await read_form(request)
    session = get_session(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    if session.user is None:
        if wants_json:
            return JSONResponse({"error": "not signed in", "signed_out": True}, 401, headers=NO_STORE)
        return signin_required(request, safe_next(form.get("next")))
    session["kept_alive_at"] = round(time.time())
    if wants_json:
        return JSONResponse({"idle_remaining": idle_remaining(session, writes=True)}, headers=NO_STORE)
    return see_other(safe_next(form.get("next")))


async def end_session_post(request: Request) -> Response:
    """End one of the user's other sessions."""
    session = get_session(request)
    if session.user is None:
        return signin_required(request, "/sessions")
    await shop.end_session(demo_of(request), session, request.path_params["handle"])
    return done("/", "signed_out") if session.destroy_requested else done("/sessions", "session_ended")


async def revoke_others_post(request: Request) -> Response:
    """Sign out everywhere else."""
    session = get_session(request)
    if session.user is None:
        return signin_required(request, "/sessions")
    ended = await shop.revoke_others(demo_of(request), session)
    return done("/sessions", "others_ended", n=ended)


async def favicon(request: Request) -> Response:
    """Browsers ask for /favicon.ico whatever the page says: send them the SVG icon."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


routes = [
    Route("/", shop_page, methods=["GET"]),
    Route("/favicon.ico", favicon, methods=["GET"]),
    Route("/settings/password", password_post, methods=["POST"]),
    Route("/cart", cart_page, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_post, methods=["POST"]),
    Route("/logout", logout_post, methods=["POST"]),
    Route("/cart/add", cart_add, methods=["POST"]),
    Route("/cart/remove", cart_remove, methods=["POST"]),
    Route("/cart/update", cart_update, methods=["POST"]),
    Route("/session/stay", stay_post, methods=["POST"]),
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings", settings_post, methods=["POST"]),
    Route("/sessions", sessions_page, methods=["GET"]),
    Route("/sessions/revoke-others", revoke_others_post, methods=["POST"]),
    Route("/sessions/{handle}/end", end_session_post, methods=["POST"]),
]
