"""Litestar specifics: the plugin's dependencies, ``request.session``, route ``opt`` exemption,
the exception handlers (503, 409, 401), WebSocket handshakes and Litestar's own
``set_session`` / ``clear_session``. The lifecycle and the defenses are the
behaviour suite's (``test_behaviour.py`` runs it against ``apps/behaviour_litestar.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from flaky_store import FlakyStore
from litestar import Litestar, Request, Response, Router, WebSocket, asgi, get, post, websocket
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException, WebSocketDisconnect
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.params import FromPath
from litestar.response import Stream
from litestar.security.session_auth import SessionAuth
from litestar.testing import TestClient

from serversession import (
    AsyncSessionManager,
    ConcurrentUpdateError,
    ConfigurationError,
    Session,
    SessionConfig,
    SessionEndedError,
    StoreError,
)
from serversession.integrations.litestar import ServerSessionPlugin, get_session

ORIGIN = "http://testserver.local"  # Litestar's TestClient base URL


@get("/read")
async def read(request: Request[Any, Any, Any], session: NamedDependency[Session]) -> dict[str, Any]:
    assert request.session is session is get_session(request)
    return {"value": session.get("value"), "csrf": session.csrf_token}


@get("/keys")
async def keys(session: NamedDependency[Session]) -> list[str]:
    return sorted(session)


@post("/write", status_code=200)
async def write(request: Request[Any, Any, Any], session: NamedDependency[Session]) -> dict[str, Any]:
    session["value"] = await request.json()
    return {"csrf": session.csrf_token}


@post("/form", status_code=200)
async def form(request: Request[Any, Any, Any], session: NamedDependency[Session]) -> dict[str, Any]:
    session["note"] = (await request.form())["note"]
    return {"note": session["note"]}


@post("/incr", status_code=200)
async def incr(session: NamedDependency[Session]) -> dict[str, Any]:
    return {"value": await session.amodify("n", lambda n: n + 1, 0)}


@post("/hook", status_code=200, opt={"csrf_exempt": True})
async def hook(session: NamedDependency[Session]) -> dict[str, Any]:
    return {"seen": True}


@post("/login/{name:str}", status_code=200)
async def login(name: FromPath[str], session: NamedDependency[Session]) -> dict[str, Any]:
    session.user = name
    session.rotate()
    return {"csrf": session.csrf_token}


@get("/sessions")
async def sessions(
    session: NamedDependency[Session], session_manager: NamedDependency[AsyncSessionManager]
) -> dict[str, Any]:
    infos = await session_manager.alist_sessions(session.user or "", current=session)
    return {"handles": [i.handle for i in infos]}


@post("/sensitive", status_code=200)
async def sensitive(session: NamedDependency[Session]) -> dict[str, Any]:
    session.require_recent_auth(300)
    return {}


@post("/raise/{kind:str}", status_code=200)
async def raise_error(kind: FromPath[str]) -> None:
    raise {"race": ConcurrentUpdateError("lost"), "ended": SessionEndedError("gone")}[kind]


@post("/half-done/{kind:str}", status_code=200)
async def half_done(kind: FromPath[str], session: NamedDependency[Session]) -> None:
    session["half"] = "done"
    if kind == "denied":
        raise NotAuthorizedException("a deliberate answer")
    raise {"bug": ValueError("the app's own bug"), "race": ConcurrentUpdateError("lost")}[kind]


@dataclass
class Profile:
    user_id: int
    name: FromPath[str]


@post("/litestar-login", status_code=200)
async def litestar_login(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.set_session({"user_id": 7})  # what Litestar's SessionAuth examples do at sign-in
    return {}


@post("/litestar-login-model", status_code=200)
async def litestar_login_model(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.set_session(Profile(7, "ada"))
    return {}


@post("/litestar-bad-session", status_code=200)
async def litestar_bad_session(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.set_session(42)  # type: ignore[arg-type]
    return {}


@post("/litestar-logout", status_code=200)
async def litestar_logout(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.clear_session()
    return {}


@websocket("/ws")
async def ws(socket: WebSocket[Any, Any, Any], session: NamedDependency[Session]) -> None:
    await socket.accept()
    session["from_socket"] = True  # read-only: never saved
    await socket.send_json({"value": session.get("value")})
    await socket.close()


@post("/router-hook", status_code=200)
async def router_hook() -> dict[str, Any]:
    return {}


HANDLERS = [read, keys, write, form, incr, hook, login, sessions, sensitive, raise_error, litestar_login,
            litestar_login_model, litestar_bad_session, litestar_logout, ws, half_done,
            Router("/exempt", route_handlers=[router_hook], opt={"csrf_exempt": True})]  # fmt: skip


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


def app_for(store: Any, config: SessionConfig | None = None, **plugin: Any) -> Litestar:
    config = config or SessionConfig(cookie_secure=False)
    return Litestar(route_handlers=HANDLERS, plugins=[ServerSessionPlugin(store, config, **plugin)])


@pytest.fixture
def client(store: FlakyStore) -> Iterator[TestClient[Litestar]]:
    with TestClient(app_for(store)) as client:
        yield client


@contextlib.contextmanager
def another_browser(client: TestClient[Litestar], session_id: str | None = None) -> Iterator[TestClient[Litestar]]:
    """The same client with another cookie jar (empty, or replaying ``session_id``) for a while."""
    saved = httpx.Cookies(client.cookies)
    client.cookies.clear()
    if session_id is not None:
        client.cookies.set("session", session_id)
    try:
        yield client
    finally:
        client.cookies = saved


def start(client: TestClient[Litestar], value: Any = 1) -> str:
    """Store a session holding ``value``; return its CSRF token."""
    csrf = client.get("/read").json()["csrf"]  # the pre-session token: nothing stored yet
    response = client.post("/write", json=value, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf"])


# -- the session as Litestar users expect it ------------------------------------------------


def test_request_session_the_dependency_and_get_session_are_one_session(
    client: TestClient[Litestar], store: FlakyStore
) -> None:
    assert client.get("/read").json()["value"] is None and len(store) == 0  # reading stores nothing
    start(client, {"deep": [1]})
    assert client.get("/read").json()["value"] == {"deep": [1]} and len(store) == 1


def test_the_manager_is_injectable_to_list_a_users_sessions(client: TestClient[Litestar]) -> None:
    csrf = client.get("/read").json()["csrf"]
    assert client.post("/login/ada", headers={"X-CSRF-Token": csrf}).status_code == 200
    with another_browser(client) as phone:
        csrf = phone.get("/read").json()["csrf"]
        assert phone.post("/login/ada", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert len(client.get("/sessions").json()["handles"]) == 2


def test_get_session_raises_lookup_error_without_the_plugin() -> None:
    @get("/")
    async def view(request: Request[Any, Any, Any]) -> str:
        with pytest.raises(LookupError, match="ServerSessionPlugin"):
            get_session(request)
        return "checked"

    with TestClient(Litestar(route_handlers=[view])) as client:
        assert client.get("/").text == "checked"


def nothing() -> None:
    return None


def test_a_taken_dependency_name_or_a_manager_with_a_store_is_a_configuration_error(store: FlakyStore) -> None:
    with pytest.raises(ConfigurationError, match="dependency_key"):
        Litestar(
            route_handlers=[read],
            dependencies={"session": Provide(nothing, sync_to_thread=False)},
            plugins=[ServerSessionPlugin(store)],
        )
    with pytest.raises(ConfigurationError, match="not both"):
        ServerSessionPlugin(store, manager=AsyncSessionManager(store))
    renamed = ServerSessionPlugin(store, dependency_key="web_session")
    Litestar(route_handlers=[], dependencies={"session": Provide(nothing, sync_to_thread=False)}, plugins=[renamed])


def test_a_url_store_is_opened_and_closed_with_the_app(tmp_path: Any) -> None:
    plugin = ServerSessionPlugin(f"sqlite:///{tmp_path / 's.sqlite3'}", SessionConfig(cookie_secure=False))
    with TestClient(Litestar(route_handlers=HANDLERS, plugins=[plugin])) as client:
        start(client, "kept")
        assert client.get("/read").json()["value"] == "kept"
    assert (tmp_path / "s.sqlite3").exists()


@get("/stream")
async def stream(session: NamedDependency[Session]) -> Stream:
    session["streamed"] = session.get("streamed", 0) + 1  # read too: the response varies on the cookie

    async def body() -> AsyncIterator[bytes]:
        for i in range(3):
            yield f"chunk{i}\n".encode()

    return Stream(body(), headers={"Vary": "Accept-Language"})


def test_a_stream_keeps_its_body_and_headers_and_is_saved_before_it(store: FlakyStore) -> None:
    app = Litestar(route_handlers=[*HANDLERS, stream],
                   plugins=[ServerSessionPlugin(store, SessionConfig(cookie_secure=False))])  # fmt: skip
    with TestClient(app) as client:
        response = client.get("/stream")
        assert response.text == "chunk0\nchunk1\nchunk2\n" and "set-cookie" in response.headers
        assert {v.strip().lower() for v in ",".join(response.headers.get_list("vary")).split(",")} >= {
            "accept-language", "cookie"}  # fmt: skip
        assert client.get("/keys").json() == ["streamed"]


# -- CSRF through the guard, exempt by the route's opt ----------------------------------------


def test_unsafe_requests_need_the_token_unless_the_route_opt_exempts_them(client: TestClient[Litestar]) -> None:
    start(client)
    refused = client.post("/write", json=2)
    assert refused.status_code == 403 and refused.json()["error"].startswith("CSRF token missing")
    assert client.post("/hook").status_code == 200  # opt={"csrf_exempt": True} on the handler
    assert client.post("/exempt/router-hook").status_code == 200  # ... or on its router
    assert client.post("/hook", headers={"Origin": "https://evil.example"}).status_code == 200
    assert client.get("/read").json()["value"] == 1


def test_the_exemption_opt_key_is_the_plugins_to_choose(store: FlakyStore) -> None:
    with TestClient(app_for(store, exempt_opt_key="no_csrf")) as client:
        assert client.post("/hook").status_code == 403  # "csrf_exempt" means nothing now


def test_the_csrf_token_may_come_in_a_urlencoded_form_whose_body_the_handler_still_reads(
    client: TestClient[Litestar],
) -> None:
    csrf = start(client)
    saved = client.post("/form", data={"note": "hi", "csrf_token": csrf})
    assert saved.status_code == 200 and saved.json() == {"note": "hi"}
    assert client.post("/form", data={"note": "hi", "csrf_token": "wrong"}).status_code == 403
    huge = client.post("/form", content=b"note=" + b"a" * (1024 * 1024 + 10),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert huge.status_code == 413


def test_paths_the_config_exempts_include_the_mount_prefix(store: FlakyStore) -> None:
    config = SessionConfig(cookie_secure=False, csrf_exempt_paths=["/shop/write"])
    with TestClient(app_for(store, config), root_path="/shop") as client:
        assert client.post("/write", json=1).status_code == 200  # /shop/write: exempt
        assert client.post("/incr").status_code == 403  # /shop/incr: not
    with TestClient(app_for(store, config)) as client:
        assert client.post("/write", json=1).status_code == 403  # /write without the mount: not


@asgi("/mounted", is_mount=True, copy_scope=True)
async def mounted(scope: Any, receive: Any, send: Any) -> None:
    """A mounted ASGI app (its scope's path is the part after /mounted) that writes the session."""
    get_session(scope)["mounted"] = scope["path"]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


def test_paths_under_a_mounted_asgi_app_include_the_mount(store: FlakyStore) -> None:
    config = SessionConfig(cookie_secure=False, csrf_exempt_paths=["/mounted/hook"])
    app = Litestar(route_handlers=[*HANDLERS, mounted], plugins=[ServerSessionPlugin(store, config)])
    with TestClient(app) as client:
        exempt = client.post("/mounted/hook?x=1")
        assert (exempt.status_code, exempt.text) == (200, "/hook/")  # the mount sees its own part
        assert "set-cookie" in exempt.headers  # the mounted app's write was saved
        assert client.post("/mounted/other").status_code == 403
        assert client.get("/keys").json() == ["mounted"]


def test_a_double_slash_under_a_mounted_app_does_not_escape_the_json_only_paths(store: FlakyStore) -> None:
    """Litestar's router collapses "//" before it picks the mount; the guard must see the path it
    matched, not the raw one, or a form post to /mounted//set skips the JSON-only check."""
    config = SessionConfig(cookie_secure=False, json_only_paths=["/mounted/set"])
    app = Litestar(route_handlers=[*HANDLERS, mounted], plugins=[ServerSessionPlugin(store, config)])
    with TestClient(app) as client:
        csrf = start(client)
        for path in ("/mounted/set", "/mounted//set", "/mounted///set/"):
            form = client.post(path, content=b"a=1", headers={"X-CSRF-Token": csrf, "Content-Type": "text/plain"})
            assert form.status_code == 415, (path, form.text)


# -- session errors answer 503, 409 and 401, never 500 -------------------------------------


@pytest.mark.parametrize(("kind", "status"), [("bug", 500), ("race", 409)])
def test_a_handler_that_raises_saves_nothing_of_what_it_half_did(store: FlakyStore, kind: str, status: int) -> None:
    """Litestar answers the exception inside the middleware, which sees an ordinary response start:
    as on ASGI and aiohttp, the error answer must not store the half-done write."""
    with TestClient(app_for(store), raise_server_exceptions=False) as client:
        csrf = start(client)
        assert client.post(f"/half-done/{kind}", headers={"X-CSRF-Token": csrf}).status_code == status
        assert client.get("/keys").json() == ["value"]


def test_a_raised_http_exception_is_a_deliberate_answer_and_is_saved(client: TestClient[Litestar]) -> None:
    csrf = start(client)
    assert client.post("/half-done/denied", headers={"X-CSRF-Token": csrf}).status_code == 401
    assert client.get("/keys").json() == ["half", "value"]


class OutOfStock(Exception):
    """An app's own error, answered by its own exception handler."""


@post("/out-of-stock", status_code=200)
async def out_of_stock(session: NamedDependency[Session]) -> None:
    session["half"] = "done"
    raise OutOfStock


def test_an_error_the_app_answers_with_its_own_handler_is_saved(store: FlakyStore) -> None:
    """As a Starlette app's ExceptionMiddleware answer is on ASGI: the app chose the answer."""

    def sorry(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
        return Response("sold out", status_code=200)

    app = Litestar(route_handlers=[*HANDLERS, out_of_stock], exception_handlers={OutOfStock: sorry},
                   plugins=[ServerSessionPlugin(store, SessionConfig(cookie_secure=False))])  # fmt: skip
    with TestClient(app) as client:
        csrf = start(client)
        assert client.post("/out-of-stock", headers={"X-CSRF-Token": csrf}).text == "sold out"
        assert client.get("/keys").json() == ["half", "value"]


def test_a_store_down_while_the_handler_modifies_answers_503_with_retry_after(
    client: TestClient[Litestar], store: FlakyStore
) -> None:
    csrf = start(client)
    store.fail.add("commit")
    response = client.post("/incr", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 503, response.text
    assert response.json() == {"error": "session store unavailable, please retry"}
    assert response.headers["retry-after"] == "1" and response.headers["cache-control"] == "no-store"
    store.fail.clear()
    assert client.post("/incr", headers={"X-CSRF-Token": csrf}).json() == {"value": 1}


def test_a_store_down_on_load_or_save_is_503_and_no_fresh_session(
    client: TestClient[Litestar], store: FlakyStore
) -> None:
    csrf = start(client)
    store.fail.add("load")
    down = client.get("/read")
    assert down.status_code == 503 and "set-cookie" not in down.headers
    store.fail = {"commit"}
    assert client.post("/write", json=5, headers={"X-CSRF-Token": csrf}).status_code == 503
    store.fail.clear()
    assert client.get("/read").json()["value"] == 1


@pytest.mark.parametrize("kind", ["race", "ended"])
def test_a_lost_race_or_an_ended_session_answers_409(client: TestClient[Litestar], kind: FromPath[str]) -> None:
    csrf = start(client)
    response = client.post(f"/raise/{kind}", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 409 and response.json() == {"error": "the session changed meanwhile, please retry"}


def test_a_sign_in_refused_by_the_cap_answers_409(store: FlakyStore) -> None:
    config = SessionConfig(cookie_secure=False, max_sessions_per_user=1, on_limit="refuse")
    app = app_for(store, config)
    with TestClient(app) as laptop:
        csrf = laptop.get("/read").json()["csrf"]
        assert laptop.post("/login/ada", headers={"X-CSRF-Token": csrf}).status_code == 200
        with another_browser(laptop) as phone:
            csrf = phone.get("/read").json()["csrf"]
            refused = phone.post("/login/ada", headers={"X-CSRF-Token": csrf})
        assert refused.status_code == 409, refused.text
        assert "signed in on the most devices allowed" in refused.json()["error"]


def test_a_missing_reauthentication_answers_401_with_reauth_required(client: TestClient[Litestar]) -> None:
    csrf = start(client)
    response = client.post("/sensitive", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 401 and response.json()["reauth_required"] is True


def test_an_apps_own_handler_for_a_session_error_wins(store: FlakyStore) -> None:
    def own(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
        return Response("ours", status_code=502)

    app = Litestar(route_handlers=HANDLERS, exception_handlers={StoreError: own},
                   plugins=[ServerSessionPlugin(store, SessionConfig(cookie_secure=False))])  # fmt: skip
    with TestClient(app) as client:
        csrf = start(client)
        store.fail.add("commit")
        response = client.post("/incr", headers={"X-CSRF-Token": csrf})
    assert (response.status_code, response.text) == (502, "ours")


# -- WebSockets: screened handshake, read-only session ----------------------------------------


def test_a_websocket_of_our_origin_sees_the_session_read_only(client: TestClient[Litestar]) -> None:
    start(client)
    with client.websocket_connect("/ws", headers={"Origin": ORIGIN}) as socket:
        assert socket.receive_json() == {"value": 1}
    with client.websocket_connect("/ws") as socket:  # no Origin: not a browser, nothing to hijack
        assert socket.receive_json() == {"value": 1}
    assert client.get("/keys").json() == ["value"]  # "from_socket" was never saved


def test_a_cross_site_websocket_handshake_is_refused(client: TestClient[Litestar], store: FlakyStore) -> None:
    start(client)
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/ws", headers={"Origin": "https://evil.example"}) as socket:
            socket.receive_json()
    assert refused.value.code == 1008
    store.fail.add("load")
    with pytest.raises(WebSocketDisconnect) as down:
        with client.websocket_connect("/ws", headers={"Origin": ORIGIN}) as socket:
            socket.receive_json()
    assert down.value.code == 1011


# -- Litestar's own set_session / clear_session ----------------------------------------------


def test_set_session_replaces_the_data_under_a_new_id(client: TestClient[Litestar]) -> None:
    csrf = start(client, "old data")
    old = client.cookies["session"]
    response = client.post("/litestar-login", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200, response.text
    assert client.cookies["session"] != old  # rotated: a planted ID is worth nothing
    assert client.get("/keys").json() == ["user_id"]
    with another_browser(client, old) as replay:
        assert replay.get("/read").json()["value"] is None


def test_set_session_takes_a_model_as_litestar_does(client: TestClient[Litestar]) -> None:
    csrf = start(client)
    assert client.post("/litestar-login-model", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.get("/keys").json() == ["name", "user_id"]


def test_set_session_with_something_that_is_not_a_mapping_fails_loudly(store: FlakyStore) -> None:
    with TestClient(app_for(store), raise_server_exceptions=False) as client:
        csrf = start(client)
        assert client.post("/litestar-bad-session", headers={"X-CSRF-Token": csrf}).status_code == 500
        assert client.get("/read").json()["value"] == 1  # the session was left as it was


def test_clear_session_ends_the_session(client: TestClient[Litestar], store: FlakyStore) -> None:
    csrf = start(client)
    old = client.cookies["session"]
    response = client.post("/litestar-logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert "max-age=0" in response.headers["set-cookie"].lower() and len(store) == 0
    with another_browser(client, old) as replay:
        assert replay.get("/read").json()["value"] is None


# -- Litestar's SessionAuth over our session; Litestar's own session middleware refused ---------


async def user_of(session: dict[str, Any], connection: Any) -> dict[str, Any] | None:
    return {"id": session["user_id"]} if "user_id" in session else None


@get("/me")
async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"user": request.user}


def session_auth_app(store: FlakyStore) -> Litestar:
    plugin = ServerSessionPlugin(store, SessionConfig(cookie_secure=False))
    auth = SessionAuth[Any, Any](
        retrieve_user_handler=user_of,
        session_backend_config=plugin.session_auth_backend(),
        exclude=["/read", "/write", "/litestar-login"],
    )
    return Litestar(route_handlers=[*HANDLERS, me], on_app_init=[auth.on_app_init], plugins=[plugin])


def test_litestar_session_auth_signs_in_and_out_over_our_session(store: FlakyStore) -> None:
    with TestClient(session_auth_app(store)) as client:
        assert client.get("/me").status_code == 401  # no session: SessionAuth refuses
        csrf = start(client, "before")
        assert client.post("/litestar-login", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert client.get("/me").json() == {"user": {"id": 7}}
        csrf = client.get("/read").json()["csrf"]  # the sign-in rotated the session, and its token
        assert client.post("/litestar-logout", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert client.get("/me").status_code == 401


def test_litestar_own_session_middleware_beside_the_plugin_is_refused_at_start_up(store: FlakyStore) -> None:
    plugin = ServerSessionPlugin(store, SessionConfig(cookie_secure=False))
    with pytest.raises(ConfigurationError, match="would replace request"):
        Litestar(route_handlers=[read], middleware=[ServerSideSessionConfig().middleware], plugins=[plugin])
    auth = SessionAuth[Any, Any](retrieve_user_handler=user_of, session_backend_config=ServerSideSessionConfig())
    with pytest.raises(ConfigurationError, match="session_auth_backend"):
        Litestar(route_handlers=[read], on_app_init=[auth.on_app_init], plugins=[plugin])
