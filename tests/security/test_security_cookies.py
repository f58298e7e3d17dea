"""Cookie attributes and where the ID may travel (OWASP: cookies; ASVS V3.4 / V7 cookie rules).

Over HTTP against the demo (which keeps the library's cookie, ``Secure`` included,
over plain http://127.0.0.1: browsers accept Secure cookies from localhost), and
in-process for the library's production defaults:
``__Host-session; Path=/; HttpOnly; Secure; SameSite=Lax``, no ``Domain``, no
expiry unless the session is persistent.
"""

from __future__ import annotations

import pytest
from sec_kit import COOKIE, CSRF_COOKIE, TunedDemo, issued_id, json_error, raw_client, set_cookies, sign_in
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serversession import ConfigurationError, MemoryStore, SessionConfig
from serversession.integrations.asgi import SessionMiddleware, get_session


def attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    """(value, {lower-case attribute: value}) of one Set-Cookie header."""
    first, *rest = [part.strip() for part in set_cookie.split(";")]
    attrs = {}
    for part in rest:
        name, _, value = part.partition("=")
        attrs[name.lower()] = value
    return first.split("=", 1)[1], attrs


def test_the_demo_session_cookie(redis_demo: TunedDemo) -> None:
    with raw_client(redis_demo) as client:
        response = client.get("/api/session")
    value, attrs = attributes(set_cookies(response)[COOKIE])
    assert value == issued_id(response)
    assert COOKIE == "__Host-session"
    assert attrs == {"path": "/", "httponly": "", "secure": "", "samesite": "Lax"}  # no Domain, no Max-Age/Expires
    assert response.headers["cache-control"] == "no-store"


def test_the_cookie_set_at_sign_in_and_cleared_at_logout(redis_demo: TunedDemo) -> None:
    session_id, csrf = sign_in(redis_demo)
    with raw_client(redis_demo, session_id, **{"X-CSRF-Token": csrf}) as client:
        logout = client.post("/api/logout")
    value, attrs = attributes(set_cookies(logout)[COOKIE])
    assert value == ""
    assert attrs["max-age"] == "0" and attrs["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert {"path", "httponly", "secure", "samesite"} <= set(attrs) and "domain" not in attrs
    assert logout.headers["cache-control"] == "no-store"


def test_the_pre_session_csrf_cookie_is_httponly_too(redis_demo: TunedDemo) -> None:
    with raw_client(redis_demo) as client:
        page = client.get("/login")
    cookies = set_cookies(page)
    assert COOKIE not in cookies  # a GET page stores no session
    _, attrs = attributes(cookies[CSRF_COOKIE])
    assert CSRF_COOKIE == "__Host-session-csrf"
    assert attrs == {"path": "/", "httponly": "", "secure": "", "samesite": "Lax"}


def test_the_id_is_never_taken_from_the_url(redis_demo: TunedDemo) -> None:
    session_id, _ = sign_in(redis_demo)
    with raw_client(redis_demo) as client:
        for query in (f"session={session_id}", f"{COOKIE}={session_id}", f"session_id={session_id}",
                      f"sid={session_id}", f"Authorization=Session%20{session_id}"):
            json_error(client.get(f"/api/me?{query}"), 401)
        json_error(client.get(f"/api/me;{COOKIE}={session_id}"), 404)


# -- the library's production defaults, in-process over https://testserver ---------------------

async def start(request: Request) -> JSONResponse:
    session = get_session(request)
    session.ensure_stored()
    if request.query_params.get("remember"):
        session.persistent = True
    return JSONResponse({"csrf": session.csrf_token})


async def form(request: Request) -> JSONResponse:
    return JSONResponse({"csrf": get_session(request).csrf_token})  # a sign-in form: no session stored


def client_for(config: SessionConfig) -> TestClient:
    app = Starlette(routes=[Route("/start", start), Route("/form", form)])
    app.add_middleware(SessionMiddleware, store=MemoryStore(), config=config)
    return TestClient(app, base_url="https://testserver")


def test_production_defaults() -> None:
    with client_for(SessionConfig()) as client:
        response = client.get("/start")
    value, attrs = attributes(set_cookies(response)["__Host-session"])
    assert len(value) == 43
    assert attrs == {"path": "/", "httponly": "", "secure": "", "samesite": "Lax"}
    assert response.headers["cache-control"] == "no-store"


def test_the_pre_session_csrf_cookie_carries_the_host_prefix_too() -> None:
    # __Host- is what keeps a sibling subdomain or a network attacker from planting this secret
    # (which would let them compute the pre-session CSRF token: see docs/security.md).
    with client_for(SessionConfig()) as client:
        response = client.get("/form")
    cookies = set_cookies(response)
    assert list(cookies) == ["__Host-session-csrf"]
    _, attrs = attributes(cookies["__Host-session-csrf"])
    assert attrs == {"path": "/", "httponly": "", "secure": "", "samesite": "Lax"}


def test_a_persistent_cookie_never_outlives_the_absolute_timeout() -> None:
    with client_for(SessionConfig(idle_timeout=600, absolute_timeout=3600)) as client:
        response = client.get("/start?remember=1")
    _, attrs = attributes(set_cookies(response)["__Host-session"])
    assert 3590 <= int(attrs["max-age"]) <= 3600


@pytest.mark.parametrize(
    "options",
    [
        {"cookie_name": "__Host-session", "cookie_domain": "example.com"},
        {"cookie_name": "__Host-session", "cookie_secure": False},
        {"cookie_name": "__Host-session", "cookie_path": "/app"},
        {"cookie_samesite": "none", "cookie_secure": False},
        {"cookie_samesite": "sideways"},
    ],
)
def test_unsafe_cookie_settings_fail_at_start_up(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SessionConfig(**options)  # type: ignore[arg-type]


def test_strict_samesite_and_a_domain_drop_the_host_prefix() -> None:
    config = SessionConfig(cookie_samesite="strict", cookie_domain="example.com")
    assert config.cookie_name == "session"
    with client_for(config) as client:
        _, attrs = attributes(set_cookies(client.get("/start"))["session"])
    assert attrs["samesite"] == "Strict" and attrs["domain"] == "example.com" and "secure" in attrs
