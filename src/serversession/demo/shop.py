"""What the shop does, shared by the JSON API (:mod:`.api`) and the pages (:mod:`.pages`).

Both faces take input in their own format (JSON, forms) and answer in their own
(JSON, HTML), but sign-in, the cart, settings and the sessions list behave the
same through either, so those rules are written once here. A rule broken by the
client raises :class:`DemoError` with the HTTP status to answer; each face turns
it into its own kind of error response.

Session layout: ``session["cart"]`` is ``{sku: qty}``, ``session["settings"]`` is
``{"theme": ..., "language": ...}``, and ``session.user`` is the signed-in name.
Every change to the cart or settings goes through ``session.amodify`` (an atomic
read-modify-write in the store), so concurrent requests never lose an update.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from starlette.requests import ClientDisconnect, Request

from ..core.session import Session
from ..manager import AsyncSessionManager
from . import catalog
from .accounts import MAX_CREDENTIAL, Accounts, hash_password
from .audit import AuditLog
from .devices import describe
from .passwords import SharedPasswords

#: Largest request body the demo reads (bytes); larger is answered 413.
MAX_BODY = 16 * 1024
MIN_QTY, MAX_QTY = 1, 99
#: Most of one product a cart holds, however many times it is added.
MAX_LINE_QTY = 999
THEMES = ("light", "dark")
LANGUAGES = ("en", "ru")
DEFAULT_SETTINGS = {"theme": "light", "language": "en"}
#: Seconds a sign-in counts as recent for a password change (``--reauth-window``).
DEFAULT_REAUTH_WINDOW = 300.0
MIN_PASSWORD = 8
_FORM_QTY = re.compile(r"[0-9]{1,4}")


class DemoError(Exception):
    """A request the shop refuses: ``status`` is the HTTP status, ``message`` is safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Demo:
    """Everything a request handler needs besides its session (kept on ``app.state.demo``)."""

    store: Any
    manager: AsyncSessionManager
    accounts: Accounts
    audit: AuditLog
    passwords: SharedPasswords
    #: Seconds a sign-in or re-authentication counts as recent (``--reauth-window``).
    reauth_window: float = DEFAULT_REAUTH_WINDOW


def iso(timestamp: float) -> str:
    """Unix seconds as ISO-8601 UTC (``2025-01-31T12:00:00+00:00``)."""
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """Read the request body, refusing more than ``limit`` bytes (413).

    ``Content-Length`` is checked first so a large upload is refused before it is
    read; the count while reading covers chunked bodies and lying headers.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise DemoError(413, f"request body too large (limit {limit // 1024} KB)")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise DemoError(413, f"request body too large (limit {limit // 1024} KB)")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise DemoError(400, "the client went away mid-request") from exc
    return b"".join(chunks)


# -- input rules ----------------------------------------------------------------


def parse_sku(value: object) -> str:
    """Return ``value`` if it is the SKU of a product; 400 if not a string, 404 if unknown."""
    if not isinstance(value, str) or not value:
        raise DemoError(400, "sku must be a non-empty string")
    if catalog.find(value) is None:
        raise DemoError(404, f"no product with sku {value[:64]!r}")
    return value


def parse_qty(value: object) -> int:
    """Return ``value`` as a quantity in 1..99; 400 otherwise (bools and floats too)."""
    if isinstance(value, str) and _FORM_QTY.fullmatch(value.strip()):
        value = int(value.strip())  # form fields are text; ASCII digits only ("²".isdigit() is True)
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_QTY <= value <= MAX_QTY:
        raise DemoError(400, f"qty must be a whole number from {MIN_QTY} to {MAX_QTY}")
    return value


def parse_settings(changes: dict[str, Any]) -> dict[str, str]:
    """Validate a partial settings change: only known keys with allowed values (else 400)."""
    allowed = {"theme": THEMES, "language": LANGUAGES}
    for key, value in changes.items():
        if key not in allowed:
            raise DemoError(400, f"unknown setting {key[:64]!r}; expected theme or language")
        if not isinstance(value, str) or value not in allowed[key]:
            raise DemoError(400, f"{key} must be one of: {', '.join(allowed[key])}")
    return dict(changes)


# -- reading the session ----------------------------------------------------------


def cart_of(session: Session) -> dict[str, int]:
    """A copy of the session's cart, keeping only well-formed lines."""
    return clean_cart(session.get("cart"))


def clean_cart(cart: Any) -> dict[str, int]:
    """Well-formed lines (known SKU, positive int) of a stored cart value, as a new dict."""
    if not isinstance(cart, dict):
        return {}
    return {
        k: v
        for k, v in cart.items()
        if catalog.find(k) is not None and isinstance(v, int) and not isinstance(v, bool) and v > 0
    }


def cart_view(cart: dict[str, int]) -> dict[str, Any]:
    """The API's cart shape: ``{"items": {sku: qty}, "count": total quantity}``."""
    return {"items": cart, "count": sum(cart.values())}


def settings_of(session: Session) -> dict[str, str]:
    """The session's settings with defaults filled in (invalid stored values ignored)."""
    stored = session.get("settings")
    settings = dict(DEFAULT_SETTINGS)
    if isinstance(stored, dict):
        for key, choices in (("theme", THEMES), ("language", LANGUAGES)):
            if stored.get(key) in choices:
                settings[key] = stored[key]
    return settings


def require_user(session: Session) -> str:
    """Return the signed-in user; 401 when the session has none."""
    if session.user is None:
        # Say why when the server knows (the per-user cap ended it): "signed out because ...".
        raise DemoError(401, f"not signed in: {session.ended_because}" if session.ended_because else "not signed in")
    return session.user


# -- changing things ---------------------------------------------------------------


class _LineFull(Exception):
    """Raised inside a modify function: the cart line would pass MAX_LINE_QTY."""


async def add_to_cart(session: Session, sku: str, qty: int) -> dict[str, int]:
    """Add ``qty`` of ``sku`` atomically; return the cart as stored."""

    def add(cart: Any) -> dict[str, int]:
        cart = cart if isinstance(cart, dict) else {}
        total = cart.get(sku, 0) + qty
        if total > MAX_LINE_QTY:
            raise _LineFull
        return {**cart, sku: total}

    try:
        cart = await session.amodify("cart", add, {})
    except _LineFull:
        raise DemoError(400, f"a cart holds at most {MAX_LINE_QTY} of one product") from None
    return clean_cart(cart)


async def set_quantity(session: Session, sku: str, qty: int) -> dict[str, int]:
    """Set the cart's line of ``sku`` to ``qty`` atomically (0 removes it); return the cart as stored."""
    if qty == 0:
        return await remove_from_cart(session, sku)
    cart = await session.amodify("cart", lambda c: {**(c if isinstance(c, dict) else {}), sku: qty}, {})
    return clean_cart(cart)


def parse_line_qty(value: object) -> int:
    """A cart line's new quantity from a form field: a whole number 0..999 (0 removes); 400 otherwise."""
    if isinstance(value, str) and _FORM_QTY.fullmatch(value.strip()):
        number = int(value.strip())
        if number <= MAX_LINE_QTY:
            return number
    raise DemoError(400, f"qty must be a whole number from 0 to {MAX_LINE_QTY}")


async def remove_from_cart(session: Session, sku: str) -> dict[str, int]:
    """Remove ``sku`` from the cart atomically; return the cart as stored."""
    if session.is_new:
        return {}  # nothing stored, nothing to remove: don't create a session for it
    cart = await session.amodify("cart", lambda c: {k: v for k, v in (c or {}).items() if k != sku}, {})
    return clean_cart(cart)


async def update_settings(session: Session, changes: dict[str, str]) -> dict[str, str]:
    """Merge validated ``changes`` into the settings atomically; return them."""

    def merge(current: Any) -> dict[str, str]:
        base = current if isinstance(current, dict) else {}
        return {**DEFAULT_SETTINGS, **base, **changes}

    await session.amodify("settings", merge, {})
    return settings_of(session)


async def login(demo: Demo, session: Session, username: str, password: str) -> str:
    """Sign in: check the password, bind the user, rotate the ID; return the new CSRF token.

    401 on wrong credentials, with the same message whether or not the user exists.
    """
    if not await password_ok(demo, username, password):
        raise DemoError(401, "wrong username or password")
    session.user = username
    # Rotation defeats session fixation; the cart and settings come along. The
    # reason travels in the ROTATED event, which the audit log listens to.
    session.rotate(reason=demo.audit.reason("sign_in", device_of(session)))
    return session.csrf_token  # read after rotate(): the token changed with the ID


async def password_ok(demo: Demo, username: str, password: str) -> bool:
    """Whether ``password`` is ``username``'s current one (a changed one from the store wins).

    The store is read for any name, known or not, so the answer's timing says nothing
    about which users exist; scrypt blocks for tens of milliseconds: it runs off the loop.
    """
    changed = await demo.passwords.aget(username[:MAX_CREDENTIAL])
    return await asyncio.to_thread(demo.accounts.verify, username, password, changed)


async def reauthenticate(demo: Demo, session: Session, password: str) -> float:
    """The signed-in user proves their password again; return the new authentication time."""
    user = require_user(session)
    if not await password_ok(demo, user, password):
        raise DemoError(401, "wrong password")
    session.reauthenticated()
    at = session.authenticated_at
    return at.timestamp() if at is not None else demo.manager.clock()


async def change_password(demo: Demo, session: Session, new_password: str) -> int:
    """Change the signed-in user's password: needs a recent authentication; this session
    gets a new ID and every other session of the user ends. Return how many ended."""
    user = require_user(session)
    session.require_recent_auth(demo.reauth_window)  # ReauthenticationRequired: 401 with reauth_required
    if not MIN_PASSWORD <= len(new_password) <= MAX_CREDENTIAL:
        raise DemoError(400, f"a password has {MIN_PASSWORD} to {MAX_CREDENTIAL} characters")
    hashed = await asyncio.to_thread(hash_password, new_password)
    await demo.passwords.aset(user, hashed)
    demo.audit.know(await demo.manager.alist_sessions(user))  # so the page can name the devices signed out
    reason = demo.audit.reason("password", device_of(session))
    return await demo.manager.acredential_changed(session, reason=reason)


def logout(demo: Demo, session: Session) -> None:
    """End the session on the server (the response clears the cookie)."""
    session.destroy(reason=demo.audit.reason("sign_out", device_of(session)))


async def end_session(demo: Demo, session: Session, handle: str) -> None:
    """End one of the signed-in user's sessions by public handle; 404 if not theirs."""
    user = require_user(session)
    if handle == session.handle:
        logout(demo, session)
        return
    infos = await demo.manager.alist_sessions(user)
    demo.audit.know(infos)
    target = next((i for i in infos if i.handle == handle), None)
    reason = demo.audit.reason("end_one", device_of(session))
    if target is None or not await demo.manager.arevoke(user, handle, reason=reason):
        raise DemoError(404, "no such session")


async def revoke_others(demo: Demo, session: Session) -> int:
    """End all the user's sessions but this one; return how many ended."""
    user = require_user(session)
    demo.audit.know(await demo.manager.alist_sessions(user))
    reason = demo.audit.reason("revoke_others", device_of(session))
    return await demo.manager.arevoke_user(user, keep=session, reason=reason)


def device_of(session: Session) -> str:
    """The session's device as a person would name it ("Firefox on Windows")."""
    return describe(session.meta.user_agent)
