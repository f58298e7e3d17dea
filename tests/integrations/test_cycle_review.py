"""Regression tests from a review of the kit's request cycle and its ASGI and WSGI ports (2026-12).

Each test pins one finding, fixed in ``kit.py``, ``asgi.py`` or ``wsgi.py``. The method check runs against the
behaviour-suite apps under their real servers (uvicorn, waitress) over a raw
socket, since only a raw request can carry an arbitrary method.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
from flaky_store import FlakyStore
from live_apps import SERVERS, serve

from serversession import AsyncSessionManager, MemoryStore, SessionConfig, SessionManager, StoreUnavailableError
from serversession.integrations import asgi, kit, wsgi

CONFIG = SessionConfig(cookie_secure=False)


def raw_request(url: str, request: bytes) -> str:
    """Send ``request`` as is and return the status line of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode("latin-1").split("\r\n", 1)[0]


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def behaviour_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kind = request.param
    workdir = tmp_path_factory.mktemp(f"review-{kind}")
    env = {"SS_STORE": f"sqlite:///{workdir / 'sessions.sqlite3'}"}
    with serve(f"behaviour_{kind}:app", workdir, server=SERVERS[kind], env=env) as url:
        yield url


def test_an_http_request_whose_method_is_websocket_still_needs_the_csrf_token(behaviour_url: str) -> None:
    """Only the integration knows a WebSocket handshake; a client may spell any HTTP method
    ``WEBSOCKET`` (h11 and waitress accept it), and before the port to the kit such a
    request was checked like any unsafe one. The behaviour app has no route for the method,
    so its 404/405 shows the request reached the app without a token: it should be the 403."""
    with httpx.Client(base_url=behaviour_url) as client:
        token = client.get("/csrf").json()["csrf"]
        assert client.post("/set/a", json=1, headers={"X-CSRF-Token": token}).status_code == 200
        cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
    host = behaviour_url.removeprefix("http://")
    for method in ("POST", "WEBSOCKET"):
        request = (f"{method} /rotate HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\nContent-Length: 0\r\n"
                   "Connection: close\r\n\r\n")  # fmt: skip
        assert raw_request(behaviour_url, request.encode()).split(" ")[1] == "403", method


# -- WSGI: an error page started with exc_info -----------------------------------------------


def test_a_wsgi_error_page_started_again_with_exc_info_keeps_no_store_beside_its_cookie() -> None:
    """PEP 3333 lets an app call ``start_response`` again with ``exc_info`` (its error page)
    before the headers are sent. The save is not repeated, but the ``Cache-Control`` choice
    depends on that call's own headers: 753d98c added ``no-store`` to an error page that sets
    the cookie and has none of its own; since the port, it keeps the first call's choice."""
    calls: list[list[tuple[str, str]]] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        wsgi.get_session(environ)["cart"] = 1  # a first visit: the response hands out an ID
        start_response("200 OK", [("Cache-Control", "public, max-age=3600")])
        try:
            raise RuntimeError("the template failed")
        except RuntimeError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"error"]

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        calls.append(headers)
        return lambda data: None

    middleware = wsgi.SessionMiddleware(app, MemoryStore(), CONFIG)
    list(middleware({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": None}, start_response))
    error_page = dict(calls[-1])
    assert "Set-Cookie" in error_page
    assert error_page.get("Cache-Control") == "no-store"


# -- ASGI: a refused save, then a session error from the app ---------------------------------


@pytest.mark.anyio
async def test_an_asgi_app_failing_after_its_save_was_refused_gets_one_response_only() -> None:
    """The save at ``http.response.start`` failed (store down: the 503 is sent in its place);
    a streaming body then hits the store too and lets the ``StoreError`` escape. The client
    already has its 503: a second ``http.response.start`` is a protocol error the server
    logs (uvicorn: "Unexpected ASGI message"). The WSGI middleware checks ``failed`` here."""
    store = FlakyStore()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        asgi.get_session(scope)["cart"] = 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise StoreUnavailableError("down", store="memory", operation="commit")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    starts: list[int] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            starts.append(message["status"])

    store.fail.add("create")
    middleware = asgi.SessionMiddleware(app, store, CONFIG)
    try:
        await middleware({"type": "http", "method": "GET", "path": "/", "headers": [], "scheme": "http"}, receive, send)
    except StoreUnavailableError:
        pass  # re-raised for the server to log, as the WSGI middleware does: fine
    assert starts == [503]


# -- the kit: a multipart form that was searched ----------------------------------------------


def test_a_searched_multipart_form_without_a_token_is_not_told_its_fields_were_not_searched() -> None:
    """Quart, aiohttp and Litestar pass ``multipart=True`` (they parse multipart forms, and did
    search this one); the message meant for the ASGI/WSGI middleware then sends the user to
    the header for the wrong reason. Fix: pass ``facts`` to ``check_csrf`` only when
    ``form_may_carry_token(facts, multipart=multipart)`` was false for a multipart body."""
    m = SessionManager(MemoryStore(), CONFIG)
    first = kit.begin(m, "GET", "/", "http", {"host": "shop.test"}, None)
    assert isinstance(first, kit.Opened)
    first.session["cart"] = 1
    added = kit.finish(m, first)
    assert isinstance(added, list)
    cookie = next(v for n, v in added if n == "Set-Cookie").split(";", 1)[0]
    headers = {"host": "shop.test", "cookie": cookie, "content-type": "multipart/form-data; boundary=b",
               "content-length": "40"}  # fmt: skip
    read: list[str] = []

    def form_token() -> None:
        read.append("searched")
        return None

    refused = kit.begin(m, "POST", "/upload", "http", headers, None, form_token=form_token, multipart=True)
    assert isinstance(refused, kit.Refusal) and refused.status == 403 and read == ["searched"]
    assert "not searched" not in refused.message


# -- ASGI: a client that leaves while its form is read ----------------------------------------


@pytest.mark.anyio
async def test_a_form_cut_short_by_a_disconnect_is_not_handed_to_the_app_as_complete() -> None:
    """The middleware reads a urlencoded body to find its ``csrf_token`` field, then replays
    it to the app. A client that goes away mid-body (``http.disconnect``) leaves a prefix:
    ``amount=1000`` cut to ``amount=10``. Without the middleware the app sees the disconnect
    (Starlette's ``request.form()`` raises ``ClientDisconnect``); replayed as the whole body,
    the app acts on the prefix. Fix: replay what arrived with ``more_body=True`` and then the
    disconnect message itself (or answer without calling the app)."""
    manager = AsyncSessionManager(MemoryStore(), CONFIG)
    first = await kit.abegin(manager, "GET", "/", "http", {"host": "shop.test"}, None)
    assert isinstance(first, kit.Opened)
    first.session["cart"] = 1
    token = first.session.csrf_token
    added = await kit.afinish(manager, first)
    assert isinstance(added, list)
    cookie = next(v for n, v in added if n == "Set-Cookie").split(";", 1)[0]
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # what an app does when its client left: nothing
            body += message.get("body", b"")
            more = message.get("more_body", False)
        seen.append(body)  # the app acts on a body it believes complete
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"paid"})

    arrived = f"csrf_token={token}&amount=10".encode()  # the client meant amount=1000
    messages = [{"type": "http.request", "body": arrived, "more_body": True}, {"type": "http.disconnect"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        return None

    headers = [(b"host", b"shop.test"), (b"cookie", cookie.encode()),
               (b"content-type", b"application/x-www-form-urlencoded"), (b"content-length", b"47")]  # fmt: skip
    middleware = asgi.SessionMiddleware(app, manager=manager)
    await middleware({"type": "http", "method": "POST", "path": "/pay", "scheme": "http", "headers": headers},
                     receive, send)  # fmt: skip
    assert seen == []


def test_a_wsgi_form_shorter_than_its_content_length_is_refused_not_handed_on() -> None:
    """The WSGI twin: a short read of ``wsgi.input`` (the client left mid-body) is a 400,
    not a prefix passed to the app with ``CONTENT_LENGTH`` rewritten to match it."""
    import io

    manager = SessionManager(MemoryStore(), CONFIG)
    first = kit.begin(manager, "GET", "/", "http", {"host": "shop.test"}, None)
    assert isinstance(first, kit.Opened)
    first.session["cart"] = 1
    token = first.session.csrf_token
    added = kit.finish(manager, first)
    assert isinstance(added, list)
    cookie = next(v for n, v in added if n == "Set-Cookie").split(";", 1)[0]
    called: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        called.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b"paid"]

    statuses: list[str] = []
    arrived = f"csrf_token={token}&amount=10".encode()
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/pay", "HTTP_HOST": "shop.test", "HTTP_COOKIE": cookie,
               "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(arrived) + 2),
               "wsgi.input": io.BytesIO(arrived), "wsgi.url_scheme": "http"}  # fmt: skip
    body = b"".join(wsgi.SessionMiddleware(app, manager=manager)(environ, lambda s, h, e=None: statuses.append(s)))
    assert statuses[0].startswith("400") and b"shorter than its Content-Length" in body
    assert called == []
