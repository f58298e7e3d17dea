"""aiohttp specifics: saving at prepare time (streams, raised redirects), store failures, new_session,
the CSRF exemption and form fields, WebSocket handshakes, and an aiohttp-session app ported over.

Every test runs the app under aiohttp's own test server (a real socket on 127.0.0.1) and talks to it
with aiohttp's client, whose cookie jar plays the browser.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from flaky_store import FlakyStore

from serversession import ConcurrentUpdateError, MemoryStore, ReauthenticationRequired, SessionConfig, SessionError
from serversession.integrations.aiohttp import (
    MANAGER_KEY,
    csrf_exempt,
    get_manager,
    get_session,
    new_session,
    session_middleware,
    setup,
)

pytestmark = pytest.mark.anyio
CONFIG = SessionConfig(cookie_secure=False)
STORE_DOWN = {"error": "session store unavailable, please retry"}
routes = web.RouteTableDef()


@routes.get("/get")
async def read(request: web.Request) -> web.Response:
    session = await get_session(request)
    return web.json_response({"value": session.get("value"), "csrf": session.csrf_token})


@routes.post("/set")
async def write(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["value"] = (await request.json())["value"]
    return web.json_response({"csrf": session.csrf_token})


@routes.post("/form")
async def form(request: web.Request) -> web.Response:
    data = await request.post()  # read again after the middleware looked for csrf_token
    (await get_session(request))["note"] = str(data["note"])
    return web.Response(text="saved")


@routes.post("/upload")
async def upload(request: web.Request) -> web.Response:
    """Streams the form as aiohttp's upload examples do (``request.multipart()``, not ``post()``)."""
    names = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        names.append(f"{part.name}={len(await part.read())}")  # type: ignore[union-attr]
    (await get_session(request))["parts"] = names
    return web.Response(text=" ".join(names))


@routes.post("/raw-stream")
async def raw_stream(request: web.Request) -> web.Response:
    return web.Response(text=(await request.content.read()).decode())


@routes.post("/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    session["streamed"] = "before prepare"
    response = web.StreamResponse()
    await response.prepare(request)
    session["late"] = "after prepare"  # the headers are out: not saved, as documented
    for chunk in (b"one ", b"two"):
        await response.write(chunk)
    return response


@routes.post("/stream-swallowing/{how}")
async def stream_swallowing(request: web.Request) -> web.StreamResponse:
    (await get_session(request))["streamed"] = True
    response = web.StreamResponse()
    try:
        await response.prepare(request)
    except SessionError:  # a handler that hides the failure: the 503 is answered all the same
        if request.match_info["how"] == "redirect":
            raise web.HTTPFound("/get") from None
        return web.Response(text="fallback")
    await response.write(b"streamed")
    return response


@routes.post("/file")
async def file(request: web.Request) -> web.FileResponse:
    (await get_session(request))["sent"] = "a file"
    return web.FileResponse(__file__)


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    session = await new_session(request)
    session.user = "ada"
    raise web.HTTPFound("/get")  # aiohttp-session's idiom: the redirect carries the new cookie


@routes.post("/fresh")
async def fresh(request: web.Request) -> web.Response:
    session = await new_session(request)
    return web.json_response({"keys": sorted(session), "user": session.user, "csrf": session.csrf_token})


@routes.post("/hook")
@csrf_exempt
async def hook(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def logged(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    return wrapper


@routes.post("/wrapped-hook")
@logged
@csrf_exempt
async def wrapped_hook(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@routes.view("/view-hook")
@csrf_exempt
class ViewHook(web.View):
    async def post(self) -> web.Response:
        return web.Response(text="ok")


@routes.post("/error/{kind}")
async def error(request: web.Request) -> web.Response:
    session = await get_session(request)
    if request.match_info["kind"] == "conflict":
        raise ConcurrentUpdateError("lost every race")
    if request.match_info["kind"] == "reauth":
        session.require_recent_auth(60)
        raise ReauthenticationRequired("never reached: an anonymous session has no sign-in")
    raise ValueError("the app's own bug")


@routes.get("/headers")
async def own_headers(request: web.Request) -> web.Response:
    (await get_session(request)).get("value")
    return web.Response(text="x", headers={"Vary": "Accept-Encoding", "Cache-Control": "private, max-age=5"})


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    session = await get_session(request)
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_json({"value": session.get("value")})
    session["from_ws"] = True  # read-only: never saved
    await ws.close()
    return ws


@pytest.fixture
async def store() -> FlakyStore:
    return FlakyStore()


def build(store: MemoryStore, config: SessionConfig = CONFIG) -> web.Application:
    app = web.Application()
    setup(app, store, config)
    app.add_routes(routes)
    return app


@pytest.fixture
async def client(store: FlakyStore) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(build(store))) as client:
        yield client


Client = TestClient[web.Request, web.Application]


def session_id(client: Client) -> str | None:
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/")).get("session")
    return None if cookie is None else cookie.value


async def token(client: Client) -> str:
    response = await client.get("/get")
    return str((await response.json())["csrf"])


async def post_value(client: Client, value: Any) -> aiohttp.ClientResponse:
    return await client.post("/set", json={"value": value}, headers={"X-CSRF-Token": await token(client)})


async def value(client: Client) -> Any:
    return (await (await client.get("/get")).json())["value"]


def replay(sid: str) -> dict[str, str]:
    return {"Cookie": f"session={sid}"}


# -- saving at prepare time -------------------------------------------------------------------


async def test_a_returned_response_is_saved_before_it_is_prepared(client: Client) -> None:
    response = await post_value(client, 1)
    assert response.status == 200
    assert "no-store" in response.headers["Cache-Control"] and "Cookie" in response.headers.getall("Vary")
    assert await value(client) == 1


async def test_a_streamed_response_gets_its_cookie_and_what_was_set_before_prepare(
    client: Client, store: FlakyStore
) -> None:
    response = await client.post("/stream", headers={"X-CSRF-Token": await token(client)})
    assert response.status == 200 and await response.read() == b"one two"
    assert any(c.startswith("session=") for c in response.headers.getall("Set-Cookie"))
    sid = session_id(client)
    assert sid is not None
    [stored] = store.scan()
    assert "streamed" in stored.data and "late" not in stored.data


@pytest.mark.parametrize("path", ["/stream", "/stream-swallowing/response", "/stream-swallowing/redirect"])
async def test_a_store_failure_while_a_stream_prepares_answers_503_instead(
    client: Client, store: FlakyStore, path: str
) -> None:
    csrf = await token(client)
    store.fail.add("create")
    response = await client.post(path, headers={"X-CSRF-Token": csrf}, allow_redirects=False)
    assert response.status == 503
    assert await response.json() == STORE_DOWN  # well framed: the stream's own framing was overridden
    assert response.headers["Retry-After"] == "1" and "Set-Cookie" not in response.headers
    store.fail.clear()
    assert (await client.post(path, headers={"X-CSRF-Token": csrf})).status == 200


async def test_a_file_response_gets_its_cookie(client: Client, store: FlakyStore) -> None:
    response = await client.post("/file", headers={"X-CSRF-Token": await token(client)})
    assert response.status == 200 and b"ported" in await response.read()
    assert session_id(client) is not None
    [stored] = store.scan()
    assert "sent" in stored.data


async def test_a_raised_redirect_carries_the_cookie(client: Client) -> None:
    response = await client.post("/login", headers={"X-CSRF-Token": await token(client)}, allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/get"
    assert any(c.startswith("session=") for c in response.headers.getall("Set-Cookie"))
    assert session_id(client) is not None


async def test_the_apps_own_vary_and_cache_control_are_kept(client: Client) -> None:
    await post_value(client, 1)
    response = await client.get("/headers")
    assert response.headers.getall("Vary") == ["Accept-Encoding", "Cookie"]
    assert response.headers["Cache-Control"] == "private, max-age=5"


async def test_without_the_prepare_hook_a_stream_is_not_saved_and_that_is_logged(
    store: FlakyStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = web.Application(middlewares=[session_middleware(store, CONFIG)])
    app.add_routes(routes)
    async with TestClient(TestServer(app)) as client:
        with caplog.at_level(logging.WARNING, "serversession"):
            response = await client.post("/stream", headers={"X-CSRF-Token": await token(client)})
        assert response.status == 200 and "Set-Cookie" not in response.headers
        assert "on_response_prepare is not installed" in caplog.text
        assert (await post_value(client, 2)).status == 200  # returned responses are saved all the same
        assert await value(client) == 2


# -- store failures and session errors ------------------------------------------------------


async def test_a_store_failure_on_load_is_503_and_no_fresh_session(client: Client, store: FlakyStore) -> None:
    await post_value(client, 1)
    store.fail.add("load")
    for response in (await client.get("/get"), await client.post("/set", json={"value": 2})):
        assert response.status == 503 and await response.json() == STORE_DOWN
        assert "Set-Cookie" not in response.headers and response.headers["Cache-Control"] == "no-store"
    store.fail.clear()
    assert await value(client) == 1


async def test_a_store_failure_on_save_replaces_the_response(client: Client, store: FlakyStore) -> None:
    await post_value(client, 1)
    csrf = await token(client)
    store.fail.add("commit")
    response = await client.post("/set", json={"value": 2}, headers={"X-CSRF-Token": csrf})
    assert response.status == 503 and await response.json() == STORE_DOWN
    store.fail.clear()
    assert await value(client) == 1


@pytest.mark.parametrize(("kind", "status"), [("conflict", 409), ("reauth", 401)])
async def test_session_errors_in_a_handler_are_answered(client: Client, kind: str, status: int) -> None:
    response = await client.post(f"/error/{kind}", headers={"X-CSRF-Token": await token(client)})
    assert response.status == status
    body = await response.json()
    assert "error" in body and body.get("reauth_required", False) is (kind == "reauth")


async def test_the_apps_own_errors_stay_500_and_save_nothing(client: Client, store: FlakyStore) -> None:
    response = await client.post("/error/bug", headers={"X-CSRF-Token": await token(client)})
    assert response.status == 500 and "Set-Cookie" not in response.headers
    assert not list(store.scan())


# -- new_session, exemption, forms -----------------------------------------------------------


async def test_new_session_rotates_and_empties_the_session(client: Client) -> None:
    await post_value(client, "before sign-in")
    anonymous = session_id(client)
    signed_in = await client.post("/login", headers={"X-CSRF-Token": await token(client)})
    assert signed_in.status == 200 and await signed_in.json() == {"value": None, "csrf": await token(client)}
    ada = session_id(client)
    assert ada not in (None, anonymous)  # no fixation: the ID from before the sign-in is dead
    again = await client.post("/fresh", headers={"X-CSRF-Token": await token(client)})
    body = await again.json()
    assert again.status == 200 and (body["keys"], body["user"]) == ([], None)
    assert session_id(client) not in (None, ada)
    for old in (anonymous, ada):
        async with aiohttp.ClientSession() as other:
            stale = await other.get(client.make_url("/get"), headers=replay(old or ""))
            assert (await stale.json())["value"] is None and "Set-Cookie" in stale.headers  # cleared


async def test_new_session_on_a_visitor_without_one_stores_nothing(client: Client, store: FlakyStore) -> None:
    response = await client.post("/fresh", headers={"X-CSRF-Token": await token(client)})
    assert response.status == 200 and session_id(client) is None and not list(store.scan())


@pytest.mark.parametrize("path", ["/hook", "/wrapped-hook", "/view-hook"])
async def test_an_exempt_handler_takes_posts_without_a_token(client: Client, path: str) -> None:
    await post_value(client, 1)
    response = await client.post(path, headers={"Origin": "https://elsewhere.example"})
    assert response.status == 200 and await response.text() == "ok"
    refused = await client.post("/set", json={"value": 2})
    assert refused.status == 403 and (await refused.json())["error"].startswith("CSRF token missing")


@pytest.mark.parametrize("multipart", [False, True])
async def test_the_token_may_come_in_a_form_field(client: Client, multipart: bool) -> None:
    await post_value(client, 1)
    csrf = await token(client)
    data: Any = {"csrf_token": csrf, "note": "hello"}
    if multipart:
        data = aiohttp.FormData(data)
        data.add_field("file", b"\x00\x01", filename="f.bin")
    response = await client.post("/form", data=data)
    assert response.status == 200 and await response.text() == "saved", await response.text()
    wrong = await client.post("/form", data={"csrf_token": "nope", "note": "x"})
    assert wrong.status == 403 and (await wrong.json())["error"].startswith("CSRF token invalid")


@pytest.mark.parametrize("multipart", [False, True])
async def test_a_form_whose_token_was_found_is_still_whole_for_a_handler_that_streams_it(
    client: Client, multipart: bool
) -> None:
    """A ``request.post()`` in the middleware left ``request.multipart()`` and ``request.content``
    nothing to read: an upload form with its hidden csrf_token field failed with a 500."""
    await post_value(client, 1)
    csrf = await token(client)
    if multipart:
        data = aiohttp.FormData({"csrf_token": csrf})
        data.add_field("file", b"x" * 70_000, filename="f.bin")
        response = await client.post("/upload", data=data)
        assert (response.status, await response.text()) == (200, f"csrf_token={len(csrf)} file=70000")
    else:
        response = await client.post("/raw-stream", data={"csrf_token": csrf, "note": "kept"})
        assert (response.status, await response.text()) == (200, f"csrf_token={csrf}&note=kept")


@pytest.mark.parametrize("body", [
    b"note=1",
    b'--b\r\nContent-Disposition: form-data; name="note"\r\nContent-Type: text/plain; charset=bogus\r\n\r\n'
    b"x\r\n--b--\r\n",
])  # fmt: skip
async def test_a_form_in_an_unknown_charset_is_a_missing_token_not_a_500(client: Client, body: bytes) -> None:
    await post_value(client, 1)
    kind = "multipart/form-data; boundary=b" if body.startswith(b"--") else "application/x-www-form-urlencoded"
    response = await client.post("/form", data=body, headers={"Content-Type": f"{kind}; charset=bogus"})
    assert response.status == 403 and (await response.json())["error"].startswith("CSRF token missing")


async def test_a_form_beyond_client_max_size_is_413_not_a_missing_token(store: FlakyStore) -> None:
    app = web.Application(client_max_size=1024)
    setup(app, store, CONFIG)
    app.add_routes(routes)
    async with TestClient(TestServer(app)) as client:
        await post_value(client, 1)
        response = await client.post("/form", data={"note": "x" * 2048, "csrf_token": await token(client)})
        assert response.status == 413
        assert (await response.json())["error"].startswith("request body too large")


async def test_get_session_without_setup_is_a_lookup_error() -> None:
    async def handler(request: web.Request) -> web.Response:
        with pytest.raises(LookupError, match="setup"):
            await get_session(request)
        return web.Response(text="checked")

    app = web.Application()
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/")).text() == "checked"


async def test_a_sub_app_shares_the_session_and_the_manager(store: FlakyStore) -> None:
    async def same_manager(request: web.Request) -> web.Response:
        return web.json_response(get_manager(request) is request.config_dict[MANAGER_KEY])

    sub = web.Application()
    sub.add_routes(routes)
    sub.router.add_get("/manager", same_manager)
    app = web.Application()
    setup(app, store, CONFIG)
    app.add_subapp("/sub/", sub)
    async with TestClient(TestServer(app)) as client:
        assert await (await client.get("/sub/manager")).json() is True
        csrf = str((await (await client.get("/sub/get")).json())["csrf"])
        response = await client.post("/sub/stream", headers={"X-CSRF-Token": csrf})
        assert response.status == 200 and session_id(client) is not None


# -- WebSocket handshakes ------------------------------------------------------------------


async def test_a_websocket_gets_the_session_read_only(client: Client, store: FlakyStore) -> None:
    await post_value(client, "seen by the socket")
    async with client.ws_connect("/ws", headers={"Origin": str(client.make_url("")).rstrip("/")}) as ws:
        assert await ws.receive_json() == {"value": "seen by the socket"}
    [stored] = store.scan()
    assert "from_ws" not in stored.data


async def test_a_cross_site_websocket_handshake_is_refused_before_the_upgrade(client: Client) -> None:
    await post_value(client, 1)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403


# -- an aiohttp-session app, ported -------------------------------------------------------------
# Written the way aiohttp-session's documentation and demos use it (a login form, a
# login_required decorator, flash messages in an inner middleware, a redirect after sign-in).
# Lines marked "ported:" are the changes docs/frameworks/aiohttp.md lists; nothing else changed.

USERS = {"admin": "admin"}
FLASH_IN = web.RequestKey("flash_incoming", list[str])
FLASH_OUT = web.RequestKey("flash_outgoing", list[str])
LOGIN_FORM = """<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{csrf}">
<input name="name"><input type="password" name="password"><input type="submit">
</form>"""  # ported: the hidden csrf_token field is new (aiohttp-session has no CSRF protection)


def login_required(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = await get_session(request)
        if "user_id" not in session:
            raise web.HTTPFound(request.app.router["login"].url_for())
        return await handler(request)

    return wrapped


@web.middleware
async def flash_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    session = await get_session(request)
    request[FLASH_IN] = session.pop("flash", [])
    try:
        return await handler(request)
    finally:
        outgoing = request.get(FLASH_OUT, [])
        if outgoing:
            session["flash"] = outgoing


@login_required
async def home(request: web.Request) -> web.Response:
    session = await get_session(request)
    messages = request[FLASH_IN]
    return web.Response(text=f"User {session['user_id']} authorized; messages: {','.join(messages) or 'none'}")


async def login_page(request: web.Request) -> web.Response:
    session = await get_session(request)
    return web.Response(content_type="text/html", text=LOGIN_FORM.format(csrf=session.csrf_token))  # ported


async def login_post(request: web.Request) -> web.Response:
    form = await request.post()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    if USERS.get(name) != password:
        return web.Response(text="No such user", status=403)
    session = await new_session(request)  # against session fixation, as aiohttp-session advises
    session["user_id"] = name
    raise web.HTTPFound("/")


async def flash_page(request: web.Request) -> web.Response:
    request.setdefault(FLASH_OUT, []).append("you visited the flash page")
    raise web.HTTPFound("/")


async def logout(request: web.Request) -> web.Response:
    (await get_session(request)).destroy()  # ported: was session.invalidate()
    raise web.HTTPFound("/login")


def ported_app(store: MemoryStore) -> web.Application:
    app = web.Application()
    setup(app, store, CONFIG)  # ported: was setup(app, EncryptedCookieStorage(secret_key))
    app.middlewares.append(flash_middleware)  # after setup, as with aiohttp-session
    app.router.add_get("/", home, name="restricted")
    app.router.add_get("/login", login_page, name="login")
    app.router.add_post("/login", login_post)
    app.router.add_get("/flash", flash_page)
    app.router.add_post("/logout", logout)
    return app


async def test_an_aiohttp_session_app_ported_with_the_documented_changes(store: FlakyStore) -> None:
    async with TestClient(TestServer(ported_app(store))) as client:
        first = await client.get("/", allow_redirects=False)
        assert first.status == 302 and first.headers["Location"] == "/login"
        csrf = await csrf_from_login_page(client)
        forged = await client.post("/login", data={"name": "admin", "password": "admin"})
        assert forged.status == 403  # a login CSRF the original app would have let through

        signed_in = await client.post("/login", data={"name": "admin", "password": "admin", "csrf_token": csrf})
        assert signed_in.status == 200 and await signed_in.text() == "User admin authorized; messages: none"
        flashed = await (await client.get("/flash")).text()
        assert flashed == "User admin authorized; messages: you visited the flash page"
        assert await (await client.get("/")).text() == "User admin authorized; messages: none"  # shown once

        sid = session_id(client)
        out = await client.post("/logout", data={"csrf_token": await csrf_from_login_page(client)},
                                allow_redirects=False)  # fmt: skip
        assert out.status == 302 and session_id(client) is None
        async with aiohttp.ClientSession() as replayed:
            stale = await replayed.get(client.make_url("/"), headers=replay(sid or ""), allow_redirects=False)
            assert stale.status == 302  # the old cookie signs nobody in


async def csrf_from_login_page(client: Client) -> str:
    """The CSRF token the login page renders into its form."""
    page = await (await client.get("/login")).text()
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
