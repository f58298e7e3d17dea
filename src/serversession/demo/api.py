"""The demo's JSON API under ``/api``, exactly as ``docs/demo-api.md`` specifies.

Handlers here only translate: parse and validate JSON (strictly: unknown fields,
wrong types and malformed text are 400), call :mod:`.shop`, and shape the answer.
CSRF is not checked here: :class:`~serversession.integrations.asgi.SessionMiddleware`
has already refused unsafe requests without a valid ``X-CSRF-Token`` (403).
Errors become ``{"error": message}`` in :mod:`.app`'s exception handlers.

Choices the contract leaves open: an unknown SKU is 404 (it names a thing that
does not exist; a SKU that is not a string is 400); removing a SKU that is not
in the cart is 200 (the cart is already as asked); bodies are capped at 16 KB
(413, checked from ``Content-Length`` and while reading); a cart line holds at
most 999 (400); the ``Content-Type`` of a JSON body is not checked, its content
is. Beyond the contract: 409 when an atomic update lost too many races or the
session was ended meanwhile (retry), and ``device`` in each ``/api/sessions``
entry ("Firefox on Windows").
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..core.session import Session
from ..exceptions import StoreError
from ..integrations.asgi import get_session
from . import catalog, shop
from .devices import describe
from .shop import Demo, DemoError

NO_STORE = {"Cache-Control": "no-store"}


def reply(body: dict[str, Any], status: int = 200) -> JSONResponse:
    """A JSON answer that no cache keeps: the bodies here are per-session (all but the small catalogue)."""
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def demo_of(request: Request) -> Demo:
    """The app's shared :class:`Demo` (store, manager, accounts, audit log)."""
    demo: Demo = request.app.state.demo
    return demo


async def read_json(
    request: Request, required: dict[str, type], optional: dict[str, type] | None = None
) -> dict[str, Any]:
    """Read a JSON object with exactly these fields and types; 400 for anything else.

    The body is capped at :data:`shop.MAX_BODY` (413).
    """
    raw = await shop.read_body(request)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DemoError(400, "the body must be valid JSON") from None
    if not isinstance(body, dict):
        raise DemoError(400, "the body must be a JSON object")
    fields = {**required, **(optional or {})}
    for name in body:
        if name not in fields:
            raise DemoError(400, f"unexpected field {name[:64]!r}")
    for name, kind in fields.items():
        if name not in body:
            if name in required:
                raise DemoError(400, f"missing field {name!r}")
            continue
        value = body[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise DemoError(400, f"field {name!r} must be {'a string' if kind is str else 'an integer'}")
    return body


async def healthz(request: Request) -> JSONResponse:
    """Whether the session store answers: 200, or 503 with the reason."""
    try:
        await demo_of(request).store.aping()
    except StoreError:
        return reply({"error": "session store unavailable"}, 503)
    return reply({"status": "ok"})


async def session_info(request: Request) -> JSONResponse:
    """Start a session if there is none (the one GET that stores one) and describe it."""
    session = get_session(request)
    session.ensure_stored()
    return reply(
        {
            "authenticated": session.user is not None,
            "user": session.user,
            "csrf_token": session.csrf_token,
            "idle_expires_at": shop.iso(session.idle_expires_at),
            "absolute_expires_at": shop.iso(session.absolute_expires_at),
            "authenticated_at": iso_or_none(session),
        }
    )


def iso_or_none(session: Session) -> str | None:
    """When the session's user last proved who they are, as ISO-8601, or None."""
    at = session.authenticated_at
    return shop.iso(at.timestamp()) if at is not None else None


async def login(request: Request) -> JSONResponse:
    """Sign in with ``{"username", "password"}``; the session ID is replaced (rotation)."""
    body = await read_json(request, {"username": str, "password": str})
    session = get_session(request)
    csrf_token = await shop.login(demo_of(request), session, body["username"], body["password"])
    return reply({"user": session.user, "csrf_token": csrf_token})


async def reauth(request: Request) -> JSONResponse:
    """``{"password"}``: the signed-in user proves their password again (recent authentication)."""
    body = await read_json(request, {"password": str})
    at = await shop.reauthenticate(demo_of(request), get_session(request), body["password"])
    return reply({"ok": True, "authenticated_at": shop.iso(at)})


async def password(request: Request) -> JSONResponse:
    """``{"new_password"}``: change the password (needs a recent authentication); other sessions end."""
    body = await read_json(request, {"new_password": str})
    session = get_session(request)
    revoked = await shop.change_password(demo_of(request), session, body["new_password"])
    return reply({"ok": True, "revoked": revoked, "csrf_token": session.csrf_token})


async def logout(request: Request) -> JSONResponse:
    """End the session on the server; the response clears the cookie."""
    shop.logout(demo_of(request), get_session(request))
    return reply({"ok": True})


async def me(request: Request) -> JSONResponse:
    """Who is signed in; 401 when nobody."""
    return reply({"user": shop.require_user(get_session(request))})


async def products(request: Request) -> JSONResponse:
    """The catalogue: ``{"products": [{"sku", "name", "price"}]}``, price a decimal string.

    Reads no session, so it creates none and sets no cookie.
    """
    listed = [{"sku": p.sku, "name": p.name, "price": p.price_text} for p in catalog.PRODUCTS]
    return reply({"products": listed})


async def cart(request: Request) -> JSONResponse:
    """This session's cart."""
    return reply(shop.cart_view(shop.cart_of(get_session(request))))


async def add_item(request: Request) -> JSONResponse:
    """Add ``{"sku", "qty"}`` (qty 1..99) atomically; unknown sku is 404."""
    body = await read_json(request, {"sku": str, "qty": int})
    sku, qty = shop.parse_sku(body["sku"]), shop.parse_qty(body["qty"])
    return reply(shop.cart_view(await shop.add_to_cart(get_session(request), sku, qty)))


async def remove_item(request: Request) -> JSONResponse:
    """Remove one product from the cart; unknown sku is 404, one not in the cart is fine."""
    sku = shop.parse_sku(request.path_params["sku"])
    return reply(shop.cart_view(await shop.remove_from_cart(get_session(request), sku)))


async def settings(request: Request) -> JSONResponse:
    """GET reads the settings; PUT changes ``{"theme"?, "language"?}``."""
    session = get_session(request)
    if request.method == "PUT":
        body = await read_json(request, {}, {"theme": str, "language": str})
        return reply(await shop.update_settings(session, shop.parse_settings(body)))
    return reply(shop.settings_of(session))


async def sessions(request: Request) -> JSONResponse:
    """The signed-in user's live sessions, by public handle (never the ID)."""
    session = get_session(request)
    user = shop.require_user(session)
    infos = await demo_of(request).manager.alist_sessions(user, current=session)
    return reply(
        {
            "sessions": [
                {
                    "id": info.handle,
                    "current": info.current,
                    "created_at": shop.iso(info.created_at),
                    "last_seen_at": shop.iso(info.last_seen_at),
                    "user_agent": info.user_agent,
                    "ip": info.ip,
                    "device": describe(info.user_agent),
                }
                for info in infos
            ]
        }
    )


async def end_session(request: Request) -> JSONResponse:
    """End one of the user's own sessions by handle; 404 for any other handle."""
    await shop.end_session(demo_of(request), get_session(request), request.path_params["handle"])
    return reply({"ok": True})


async def revoke_others(request: Request) -> JSONResponse:
    """End every session of the user but this one."""
    return reply({"revoked": await shop.revoke_others(demo_of(request), get_session(request))})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/api/session", session_info, methods=["GET"]),
    Route("/api/login", login, methods=["POST"]),
    Route("/api/logout", logout, methods=["POST"]),
    Route("/api/reauth", reauth, methods=["POST"]),
    Route("/api/password", password, methods=["PUT"]),
    Route("/api/me", me, methods=["GET"]),
    Route("/api/products", products, methods=["GET"]),
    Route("/api/cart", cart, methods=["GET"]),
    Route("/api/cart/items", add_item, methods=["POST"]),
    Route("/api/cart/items/{sku}", remove_item, methods=["DELETE"]),
    Route("/api/settings", settings, methods=["GET", "PUT"]),
    Route("/api/sessions", sessions, methods=["GET"]),
    Route("/api/sessions/revoke-others", revoke_others, methods=["POST"]),
    Route("/api/sessions/{handle}", end_session, methods=["DELETE"]),
]
