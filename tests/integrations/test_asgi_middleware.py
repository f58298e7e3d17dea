"""ASGI specifics: streaming, WebSockets, form CSRF, store failures on load and save."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from serversession import (
    ConcurrentUpdateError,
    MemoryStore,
    SessionConfig,
    SessionEndedError,
    StoreUnavailableError,
)
from serversession.integrations.asgi import SessionMiddleware, exception_handlers, get_session


class FlakyStore(MemoryStore):
    """A memory store whose load or commit can be made to fail like a dead server."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: set[str] = set()

    async def aload(self, key: str) -> Any:
        if "load" in self.fail:
            raise StoreUnavailableError("down", store="memory", operation="load")
        return await super().aload(key)

    async def acommit(self, key: str, commit: Any) -> Any:
        if "commit" in self.fail:
            raise StoreUnavailableError("down", store="memory", operation="commit")
        return await super().acommit(key, commit)


async def set_value(request: Request) -> JSONResponse:
    session = get_session(request)
    session["value"] = (await request.json())["value"]
    return JSONResponse({"csrf": session.csrf_token})


async def form(request: Request) -> PlainTextResponse:
    data = await request.form()
    get_session(request)["note"] = str(data["note"])
    return PlainTextResponse("saved")


async def read(request: Request) -> JSONResponse:
    return JSONResponse({"value": request.session.get("value"), "csrf": get_session(request).csrf_token})


async def stream(request: Request) -> StreamingResponse:
    get_session(request)["streamed"] = True

    async def body() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"chunk{i}\n".encode()

    return StreamingResponse(body())


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"value": get_session(websocket).get("value")})
    await websocket.close()


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def client(store: FlakyStore) -> TestClient:
    routes = [
        Route("/set", set_value, methods=["POST"]),
        Route("/form", form, methods=["POST"]),
        Route("/read", read),
        Route("/stream", stream),
        WebSocketRoute("/ws", ws),
    ]
    app = SessionMiddleware(Starlette(routes=routes), store, SessionConfig(cookie_secure=False))
    return TestClient(app)


def start(client: TestClient) -> str:
    csrf = client.get("/read").json()["csrf"]  # pre-session token, nothing stored
    response = client.post("/set", json={"value": 1}, headers={"x-csrf-token": csrf})
    assert response.status_code == 200
    return str(response.json()["csrf"])


def test_session_works_through_request_session_and_accessor(client: TestClient, store: FlakyStore) -> None:
    assert len(store) == 0
    start(client)
    assert client.get("/read").json()["value"] == 1 and len(store) == 1


def test_unsafe_method_without_token_is_403_json(client: TestClient) -> None:
    response = client.post("/set", json={"value": 2})
    assert response.status_code == 403 and response.json()["error"].startswith("CSRF token missing: send it in")
    response = client.post("/set", json={"value": 2}, headers={"x-csrf-token": "nope"})
    assert response.status_code == 403 and response.json()["error"].startswith("CSRF token invalid:")


def test_form_field_token_is_read_and_the_body_replayed(client: TestClient) -> None:
    csrf = start(client)
    assert client.post("/form", data={"note": "hi", "csrf_token": csrf}).text == "saved"
    assert client.post("/form", data={"note": "hi", "csrf_token": "bad"}).status_code == 403


def test_huge_form_without_header_token_is_413(client: TestClient) -> None:
    start(client)
    response = client.post("/form", content=b"x=" + b"a" * (1024 * 1024 + 10),
                           headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413


def test_streaming_response_keeps_its_body_and_saves_before_it(client: TestClient) -> None:
    response = client.get("/stream")
    assert response.text == "chunk0\nchunk1\nchunk2\n" and "set-cookie" in response.headers


def test_websocket_scope_sees_the_session(client: TestClient) -> None:
    start(client)
    with client.websocket_connect("/ws") as socket:
        assert socket.receive_json() == {"value": 1}


def test_websocket_handshakes_are_screened_for_their_origin(client: TestClient) -> None:
    """Browsers send Origin on every WebSocket handshake: a page of our own origin connects,
    another site's (cross-site WebSocket hijacking rides on the cookie) is refused."""
    from starlette.websockets import WebSocketDisconnect

    start(client)
    with client.websocket_connect("/ws", headers={"Origin": "http://testserver"}) as socket:
        assert socket.receive_json() == {"value": 1}
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws", headers={"Origin": "https://evil.example"}) as socket:
            socket.receive_json()
    assert refused.value.code == 1008


def test_store_failure_on_load_is_503_not_a_fresh_session(client: TestClient, store: FlakyStore) -> None:
    start(client)
    store.fail.add("load")
    response = client.get("/read")
    assert response.status_code == 503 and "error" in response.json()
    assert "set-cookie" not in response.headers
    store.fail.clear()
    assert client.get("/read").json()["value"] == 1


def test_store_failure_on_save_replaces_the_response_with_503(client: TestClient, store: FlakyStore) -> None:
    csrf = start(client)
    store.fail.add("commit")
    response = client.post("/set", json={"value": 5}, headers={"x-csrf-token": csrf})
    assert response.status_code == 503
    store.fail.clear()
    assert client.get("/read").json()["value"] == 1


@pytest.mark.parametrize(
    ("error", "status"),
    [(ConcurrentUpdateError("lost"), 409), (SessionEndedError("gone"), 409), (StoreUnavailableError("down"), 503)],
)
def test_a_session_error_escaping_a_plain_asgi_app_is_a_json_4xx_5xx_not_a_crash(
    store: FlakyStore, error: Exception, status: int
) -> None:
    async def plain_app(scope: Any, receive: Any, send: Any) -> None:
        raise error

    client = TestClient(SessionMiddleware(plain_app, store, SessionConfig(cookie_secure=False)))
    response = client.get("/")
    assert response.status_code == status and "error" in response.json()


def test_a_missing_reauthentication_escaping_a_plain_asgi_app_is_401_with_reauth_required(
    store: FlakyStore,
) -> None:
    async def plain_app(scope: Any, receive: Any, send: Any) -> None:
        get_session(scope).require_recent_auth(300)  # anonymous: nobody authenticated

    client = TestClient(SessionMiddleware(plain_app, store, SessionConfig(cookie_secure=False)))
    response = client.get("/")
    assert response.status_code == 401 and response.json()["reauth_required"] is True
    assert "password" in response.json()["error"] and response.headers["cache-control"] == "no-store"


def test_a_session_error_raised_by_the_save_itself_is_still_answered(
    store: FlakyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save runs as the response starts, before anything is sent: an error it
    raises can still become a clean 409, not a half-sent response."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = SessionMiddleware(app, store, SessionConfig(cookie_secure=False))

    async def ended(*args: Any, **kwargs: Any) -> Any:
        raise SessionEndedError("ended while the view ran")

    monkeypatch.setattr(middleware.manager, "asave", ended)
    response = TestClient(middleware).get("/")
    assert response.status_code == 409 and "error" in response.json()


def test_an_error_after_the_response_started_is_left_to_the_server(store: FlakyStore) -> None:
    async def half_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ConcurrentUpdateError("too late to answer 409")

    client = TestClient(SessionMiddleware(half_app, store, SessionConfig(cookie_secure=False)))
    with pytest.raises(ConcurrentUpdateError):
        client.get("/")


@pytest.mark.parametrize(("error", "status"), [(ConcurrentUpdateError("lost"), 409), (StoreUnavailableError("x"), 503)])
def test_starlette_apps_get_handlers_that_turn_session_errors_into_json(
    store: FlakyStore, error: Exception, status: int
) -> None:
    async def view(request: Request) -> JSONResponse:
        raise error

    inner = Starlette(routes=[Route("/", view)], exception_handlers=exception_handlers())
    client = TestClient(SessionMiddleware(inner, store, SessionConfig(cookie_secure=False)))
    response = client.get("/")
    assert response.status_code == status and "error" in response.json()


# -- lazy=True: the store is read at the session's first use -----------------------------------


class CountingStore(FlakyStore):
    reads = 0

    async def aload(self, key: str) -> Any:
        self.reads += 1
        return await super().aload(key)


def lazy_client(store: CountingStore, *, handlers: bool = True) -> TestClient:
    from serversession.integrations.asgi import aget_session

    async def untouched(request: Request) -> PlainTextResponse:
        return PlainTextResponse("static")

    async def awaited(request: Request) -> JSONResponse:
        return JSONResponse({"value": (await aget_session(request)).get("value")})

    async def csrf(request: Request) -> JSONResponse:
        return JSONResponse({"csrf": (await aget_session(request)).csrf_token})

    async def unawaited(request: Request) -> JSONResponse:
        return JSONResponse({"value": get_session(request).get("value")})

    def threaded(request: Request) -> JSONResponse:  # Starlette runs a plain def in a worker thread
        return JSONResponse({"value": get_session(request).get("value")})

    routes = [Route("/untouched", untouched), Route("/awaited", awaited), Route("/unawaited", unawaited),
              Route("/csrf", csrf),
              Route("/threaded", threaded), Route("/set", set_value, methods=["POST"])]  # fmt: skip
    inner = Starlette(routes=routes, exception_handlers=exception_handlers() if handlers else None)
    app = SessionMiddleware(inner, store=store, config=SessionConfig(cookie_secure=False), lazy=True)
    return TestClient(app, raise_server_exceptions=False)


def _csrf_of(client: TestClient) -> str:
    token: str = client.get("/csrf").json()["csrf"]
    return token


def test_lazy_reads_only_for_endpoints_that_use_the_session() -> None:
    store = CountingStore()
    app = lazy_client(store)
    token = _csrf_of(app)  # no cookie yet: nothing to read, read at once
    assert app.post("/set", json={"value": 7}, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert app.post("/set", json={"value": 7}, headers={"X-CSRF-Token": token}).status_code == 200
    reads = store.reads
    untouched = app.get("/untouched")
    assert untouched.text == "static" and store.reads == reads
    assert "set-cookie" not in untouched.headers and "vary" not in untouched.headers
    assert app.get("/awaited").json() == {"value": 7} and store.reads == reads + 1
    assert app.get("/threaded").json() == {"value": 7} and store.reads == reads + 2  # read on the loop, waited for
    refused = app.get("/unawaited")  # a synchronous first use on the event loop: a loud programming error
    assert refused.status_code == 500 and store.reads == reads + 2


def test_lazy_store_outage_at_first_use_is_503_with_or_without_the_handlers() -> None:
    for handlers in (True, False):
        store = CountingStore()
        app = lazy_client(store, handlers=handlers)
        token = _csrf_of(app)
        assert app.post("/set", json={"value": 7}, headers={"X-CSRF-Token": token}).status_code == 200
        store.fail.add("load")
        assert app.get("/untouched").status_code == 200
        down = app.get("/awaited")
        assert down.status_code == 503 and down.headers["retry-after"] == "1", (handlers, down.text)
