"""Quart specifics: the classic app under uvicorn, ``quart.session`` idioms, CSRF, 503s, no thread hop.

What every integration must do is checked once, over a real server, by
``test_behaviour.py`` (``apps/behaviour_quart.py``); this file covers what only
Quart has: its ``SessionMixin`` idioms, ``@csrf_exempt``, forms parsed by Quart,
its error handlers and hooks, its WebSockets, and that an async store is used
from the event loop.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flaky_store import FlakyStore
from live_apps import serve, session_cookie
from quart import (
    Quart,
    flash,
    get_flashed_messages,
    render_template_string,
    request,
    request_finished,
    session,
    websocket,
)
from quart.testing import QuartClient, WebsocketResponseError

from servers import RedisServer
from serversession import ConfigurationError, MemoryStore, SessionConfig, SessionEndedError
from serversession.core.ids import is_well_formed, storage_key
from serversession.integrations import kit
from serversession.integrations import quart as serversession_quart
from serversession.stores.redis import RedisStore
from serversession.stores.sqlite import SQLiteStore

ours: Any = session  # the QuartSession behind the proxy
DOCS = Path(__file__).parents[2] / "docs" / "frameworks" / "quart.md"
HOST = "localhost"  # the test client's server name


def make_app(store: Any, **options: Any) -> Quart:
    app = Quart(__name__)
    serversession_quart.init_app(app, store=store, **{"cookie_secure": False, **options})

    @app.post("/set")
    async def set_value() -> str:
        session.update((await request.form).to_dict(flat=True))
        session.pop("csrf_token", None)
        return "ok"

    @app.get("/show")
    async def show() -> dict[str, Any]:
        return {"data": dict(session), "new": ours.new, "modified": ours.modified, "permanent": session.permanent}

    @app.post("/remember")
    async def remember() -> str:
        session.permanent = True
        session["remembered"] = True
        return f"modified={ours.modified}"

    @app.get("/cached")
    async def cached() -> Any:
        return {"a": session.get("a")}, {"Vary": "Accept-Encoding", "Cache-Control": "private, max-age=60"}

    @app.post("/count")
    async def count() -> str:
        return str(await ours.amodify("n", lambda n: n + 1, 0))

    @app.get("/form")
    async def form() -> str:
        return await render_template_string('<input name="csrf_token" value="{{ csrf_token() }}">')

    @app.post("/hook")
    @serversession_quart.csrf_exempt
    async def hook() -> str:
        return "hooked"

    @app.post("/flash")
    async def add_flash() -> str:
        await flash("saved", "info")
        return "ok"

    @app.get("/flashes")
    async def flashes() -> Any:
        return list(get_flashed_messages(with_categories=True))

    @app.post("/clear")
    async def clear() -> str:
        session.clear()
        return "cleared"

    @app.get("/static-ish")
    async def no_session() -> str:
        return "plain"

    @app.post("/sensitive")
    async def sensitive() -> str:
        ours.require_recent_auth(60)
        return "fine"

    @app.post("/ended")
    async def ended() -> str:
        raise SessionEndedError("ended by another request")

    @app.websocket("/ws")
    async def ws() -> None:
        await websocket.accept()
        await websocket.send(str(session.get("a")))
        session["from_ws"] = True  # read-only: never saved

    return app


def cookie(client: QuartClient, name: str = "session") -> str | None:
    assert client.cookie_jar is not None
    return next((c.value for c in client.cookie_jar if c.name == name), None)


async def csrf(client: QuartClient) -> str:
    page = await (await client.get("/form")).get_data(as_text=True)
    return page.split('value="')[1].split('"')[0]


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def client(store: FlakyStore) -> QuartClient:
    return make_app(store).test_client()


# -- the classic app, as Quart's docs port Flask's, under uvicorn ------------------------------


@pytest.fixture(scope="module")
def classic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path_factory.mktemp("classic-quart")
    db = workdir / "sessions.sqlite3"
    with serve("classic_quart:app", workdir, server="uvicorn", env={"SS_STORE": f"sqlite:///{db}"}) as url:
        yield url, db


def test_the_classic_app_signs_in_and_out_unchanged(classic: tuple[str, Path]) -> None:
    url, db = classic
    with httpx.Client(base_url=url) as browser, httpx.Client(base_url=url) as replay:
        first = browser.get("/")
        assert first.text == "You are not logged in" and "set-cookie" not in first.headers
        signed_in = browser.post("/login", data={"username": "alice"})
        assert signed_in.status_code == 302 and signed_in.headers["location"] == "/"
        set_cookie = session_cookie(signed_in, "session")
        assert set_cookie is not None and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
        session_id = browser.cookies["session"]
        assert is_well_formed(session_id) and "alice" not in set_cookie  # an ID, not signed data
        assert browser.get("/").text == "Logged in as alice"

        stored_in = SQLiteStore(db)
        try:
            stored = stored_in.load(storage_key(session_id))
            assert stored is not None and stored.data == {"username": '"alice"'}
        finally:
            stored_in.close()

        replay.cookies.set("session", session_id, domain="127.0.0.1")
        assert replay.get("/").text == "Logged in as alice"
        assert browser.get("/logout").status_code == 302
        assert browser.get("/").text == "You are not logged in"
        assert replay.get("/").text == "You are not logged in"  # the old cookie gets nothing


@pytest.mark.anyio
async def test_the_docs_example_runs_as_written() -> None:
    """docs/frameworks/quart.md's getting-started block, its store swapped for memory://."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert code is not None
    source = code.group(1).replace('"redis://127.0.0.1:6379/0"', '"memory://"')
    namespace: dict[str, Any] = {"__name__": "quart_docs_example"}
    exec(compile(source, str(DOCS), "exec"), namespace)
    app: Quart = namespace["app"]

    @app.get("/")
    async def index() -> str:
        return await render_template_string('{{ csrf_token() }}|{{ session.get("username") }}')

    client = app.test_client()
    token = (await (await client.get("/", scheme="https")).get_data(as_text=True)).split("|")[0]
    signed_in = await client.post("/login", form={"username": "alice", "csrf_token": token}, scheme="https")
    assert signed_in.status_code == 302, await signed_in.get_data(as_text=True)
    set_cookie = signed_in.headers["Set-Cookie"]
    assert set_cookie.startswith("__Host-session=") and "Secure" in set_cookie  # the defaults, over HTTPS
    assert (await (await client.get("/", scheme="https")).get_data(as_text=True)).endswith("|alice")


# -- quart.session idioms --------------------------------------------------------------------


@pytest.mark.anyio
async def test_session_mixin_semantics(client: QuartClient) -> None:
    assert await (await client.get("/show")).get_json() == {"data": {}, "new": True, "modified": False,
                                                            "permanent": False}  # fmt: skip
    response = await client.post("/set", form={"a": "1", "csrf_token": await csrf(client)})
    assert response.status_code == 200 and "Max-Age" not in response.headers["Set-Cookie"]
    assert response.headers["Cache-Control"] == "no-store"
    shown = await client.get("/show")
    assert await shown.get_json() == {"data": {"a": "1"}, "new": False, "modified": False, "permanent": False}
    assert shown.headers.getlist("Vary") == ["Cookie"]
    remembered = await client.post("/remember", headers={"X-CSRF-Token": await csrf(client)})
    assert "Max-Age=" in remembered.headers["Set-Cookie"] and await remembered.get_data(as_text=True) == "modified=True"
    app_headers = await client.get("/cached")  # the app's Vary and Cache-Control are kept
    assert app_headers.headers.getlist("Vary") == ["Accept-Encoding", "Cookie"]
    assert app_headers.headers.getlist("Cache-Control") == ["private, max-age=60"]
    assert (await (await client.get("/show")).get_json())["permanent"] is True
    assert "Vary" not in (await client.get("/static-ish")).headers


@pytest.mark.anyio
async def test_amodify_flash_and_session_transaction(client: QuartClient) -> None:
    token = await csrf(client)
    counts = [await (await client.post("/count", headers={"X-CSRF-Token": token})).get_data(as_text=True)
              for _ in range(3)]  # fmt: skip
    assert counts == ["1", "2", "3"]
    await client.post("/flash", headers={"X-CSRF-Token": token})
    assert await (await client.get("/flashes")).get_json() == [["info", "saved"]]
    assert await (await client.get("/flashes")).get_json() == []
    async with client.session_transaction() as sess:
        sess["injected"] = "yes"
    assert (await (await client.get("/show")).get_json())["data"]["injected"] == "yes"


@pytest.mark.anyio
async def test_clear_signs_out_and_kills_the_old_id(client: QuartClient, store: FlakyStore) -> None:
    token = await csrf(client)
    await client.post("/set", form={"user_id": "7", "csrf_token": token})
    old = cookie(client)
    cleared = await client.post("/clear", headers={"X-CSRF-Token": token})
    assert cleared.status_code == 200 and cookie(client) not in (None, old)
    assert (await (await client.get("/show")).get_json())["data"] == {}
    replay = make_app(store).test_client()
    replay.set_cookie(HOST, "session", old or "")
    assert (await (await replay.get("/show")).get_json())["data"] == {}


# -- CSRF ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_csrf_from_the_header_or_a_form_field_and_csrf_exempt(client: QuartClient, store: FlakyStore) -> None:
    missing = await client.post("/set", form={"a": "1"})
    assert missing.status_code == 403
    assert (await missing.get_json())["error"].startswith("CSRF token missing: send it in")
    wrong = await client.post("/set", form={"a": "1", "csrf_token": "x"})
    assert (await wrong.get_json())["error"].startswith("CSRF token invalid:")
    token = await csrf(client)
    assert (await client.post("/set", form={"a": "1", "csrf_token": token})).status_code == 200  # urlencoded
    boundary = "ssboundary"
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in (("a", "2"), ("csrf_token", token))) + f"--{boundary}--\r\n"  # fmt: skip
    as_multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    multipart = await client.post("/set", data=body.encode(), headers=as_multipart)
    assert multipart.status_code == 200, await multipart.get_data(as_text=True)
    assert (await (await client.get("/show")).get_json())["data"] == {"a": "2"}
    assert await (await client.post("/hook")).get_data(as_text=True) == "hooked"  # @csrf_exempt
    assert (await client.post("/hook", headers={"Origin": "https://evil.example"})).status_code == 200

    huge = await client.post("/set", form={"a": "x" * (kit.MAX_FORM_BODY + 1)})  # the kit's limit
    assert huge.status_code == 413, await huge.get_data(as_text=True)
    assert (await huge.get_json())["error"].startswith("request body too large to check its csrf_token field")
    app = make_app(store)
    app.config["MAX_FORM_MEMORY_SIZE"] = 100  # Quart's own limit on a multipart field
    field = body.replace("\r\n\r\n2\r\n", "\r\n\r\n" + "x" * 1000 + "\r\n").encode()
    big = await app.test_client().post("/set", data=field, headers=as_multipart)
    assert big.status_code == 413 and "(limit 100 bytes)" in (await big.get_json())["error"]

    app = Quart(__name__)
    app.config["SERVERSESSION_CSRF"] = False
    serversession_quart.init_app(app, store=store, cookie_secure=False)

    @app.post("/w")
    async def write() -> str:
        return "written"

    off = app.test_client()
    assert await (await off.post("/w")).get_data(as_text=True) == "written"
    assert (await off.post("/w", headers={"Origin": "https://evil.example"})).status_code == 403  # screen stays


# -- failures and errors -------------------------------------------------------------------


@pytest.mark.anyio
async def test_store_outages_answer_503(client: QuartClient, store: FlakyStore) -> None:
    await client.post("/set", form={"a": "1", "csrf_token": await csrf(client)})
    store.fail.add("load")
    for response in (await client.get("/static-ish"), await client.get("/show")):
        assert response.status_code == 503
        assert await response.get_json() == {"error": "session store unavailable, please retry"}
        assert response.headers["Retry-After"] == "1" and "Set-Cookie" not in response.headers
    store.fail = {"commit"}
    token = await csrf(client)
    in_view = await client.post("/count", headers={"X-CSRF-Token": token})  # amodify() in the view
    assert in_view.status_code == 503 and in_view.headers["Retry-After"] == "1"
    at_save = await client.post("/set", form={"b": "2", "csrf_token": token})  # the save
    assert at_save.status_code == 503
    assert await at_save.get_json() == {"error": "session store unavailable, please retry"}
    store.fail.clear()
    assert (await (await client.get("/show")).get_json())["data"] == {"a": "1"}


@pytest.mark.anyio
async def test_session_errors_in_views_answer_401_and_409(client: QuartClient) -> None:
    token = await csrf(client)
    reauth = await client.post("/sensitive", headers={"X-CSRF-Token": token})
    assert reauth.status_code == 401 and (await reauth.get_json())["reauth_required"] is True
    assert reauth.headers["Cache-Control"] == "no-store"
    ended = await client.post("/ended", headers={"X-CSRF-Token": token})
    assert ended.status_code == 409 and "error" in await ended.get_json()


@pytest.mark.anyio
async def test_an_after_request_hook_reading_the_session_keeps_the_guards_answer() -> None:
    """A hook reading the session on every response (as Flask-Login's does) sees an empty
    one on a refused request: the refusal stays the answer, not a 500."""
    store = FlakyStore()
    app = make_app(store, guess_limit=2)

    @app.after_request
    async def peek(response: Any) -> Any:
        _ = "_user_id" in session
        session.pop("_remember", None)
        return response

    client = app.test_client()
    await client.get("/show")
    store.fail.add("load")
    client.set_cookie(HOST, "session", secrets.token_urlsafe(32))
    assert (await client.get("/show")).status_code == 503
    store.fail.discard("load")
    codes = []
    for _ in range(5):
        client.set_cookie(HOST, "session", secrets.token_urlsafe(32))
        codes.append((await client.get("/show")).status_code)
    assert codes[-1] == 429, codes


# -- WebSockets ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_websocket_gets_the_session_read_only_and_a_cross_site_handshake_is_refused(
    client: QuartClient, store: FlakyStore
) -> None:
    await client.post("/set", form={"a": "1", "csrf_token": await csrf(client)})
    async with client.websocket("/ws", headers={"Origin": f"http://{HOST}"}) as ws:
        assert await ws.receive() == "1"
    assert "from_ws" not in (await (await client.get("/show")).get_json())["data"]
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/ws", headers={"Origin": "https://evil.example"}) as ws:
            await ws.receive()
    assert refused.value.response.status_code == 403


@pytest.mark.anyio
async def test_csrf_exempt_on_a_websocket_leaves_its_handshake_screened(store: FlakyStore) -> None:
    """``@csrf_exempt`` turns off the CSRF and cross-site checks of an HTTP view (a webhook).
    A handshake has no CSRF token to skip, so on a WebSocket the mark would only turn off
    the Origin screen, letting any site open the socket with the user's cookie: it is not
    taken there."""
    app = make_app(store)

    @app.websocket("/exempt-ws")
    @serversession_quart.csrf_exempt
    async def exempt_ws() -> None:
        await websocket.accept()
        await websocket.send(str(session.get("a")))

    client = app.test_client()
    await client.post("/set", form={"a": "1", "csrf_token": await csrf(client)})
    async with client.websocket("/exempt-ws", headers={"Origin": f"http://{HOST}"}) as ws:
        assert await ws.receive() == "1"
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/exempt-ws", headers={"Origin": "https://evil.example"}) as ws:
            await ws.receive()
    assert refused.value.response.status_code == 403


@pytest.mark.anyio
async def test_an_http_request_whose_method_is_websocket_still_needs_the_csrf_token(store: FlakyStore) -> None:
    """A client may spell an HTTP method ``WEBSOCKET`` (uvicorn's h11 passes it on); only the
    ASGI scope's type says what a handshake is, and a route that takes the method is written
    to like any other."""
    app = make_app(store)

    @app.route("/anything", methods=["POST", "WEBSOCKET"])
    async def anything() -> str:
        session["written"] = True
        return "written"

    client = app.test_client()
    await client.post("/set", form={"a": "1", "csrf_token": await csrf(client)})
    assert (await client.post("/anything")).status_code == 403
    assert (await client.open("/anything", method="WEBSOCKET")).status_code == 403


# -- saved once --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_failure_after_the_save_gives_the_500_page_the_saved_cookie_without_saving_again() -> None:
    """Quart runs ``process_response`` again for its 500 page when something after the save
    fails (here a ``request_finished`` receiver), and so ``save_session`` twice. The session
    is written once; the 500 page carries the cookie of that save, so a sign-in that rotated
    the ID does not leave the browser on the old, deleted one."""
    store = CountingStore()
    app = make_app(store)
    failing = {"on": False}

    @app.post("/sign-in")
    async def sign_in() -> str:
        session["user"] = "ana"
        ours.rotate()
        return "signed in"

    async def receiver(sender: Any, response: Any, **extra: Any) -> None:
        if failing["on"]:
            raise RuntimeError("a receiver failed")

    request_finished.connect(receiver, app)
    client = app.test_client()
    await client.post("/set", form={"a": "1", "csrf_token": await csrf(client)})
    before, token = cookie(client), await csrf(client)
    failing["on"] = True
    writes = store.writes
    page = await client.post("/sign-in", headers={"X-CSRF-Token": token})
    assert page.status_code == 500
    assert store.writes == writes + 1  # one save, not two
    assert session_cookie_of(page) not in (None, before)
    assert page.headers["Cache-Control"] == "no-store"
    failing["on"] = False
    assert (await (await client.get("/show")).get_json())["data"] == {"a": "1", "user": "ana"}


class CountingStore(FlakyStore):
    """Counts the writes (create, commit, rotate) the saves make."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def create(self, key: str, commit: Any) -> Any:
        self.writes += 1
        return super().create(key, commit)

    def commit(self, key: str, commit: Any) -> Any:
        self.writes += 1
        return super().commit(key, commit)

    def rotate(self, old_key: str, new_key: str, commit: Any, grace: float) -> Any:
        self.writes += 1
        return super().rotate(old_key, new_key, commit, grace)


def session_cookie_of(response: Any) -> str | None:
    found = [v for v in response.headers.get_all("Set-Cookie") if v.startswith("session=")]
    return found[0].split(";", 1)[0].split("=", 1)[1] if found else None


# -- async all the way -----------------------------------------------------------------------


class FaceWatchingRedisStore(RedisStore):
    """The real Redis store, noting which face each call came through and on which thread."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.sync_calls: list[str] = []
        self.async_threads: set[int] = set()

    def load(self, key: str) -> Any:
        self.sync_calls.append("load")
        return super().load(key)

    def create(self, key: str, commit: Any) -> Any:
        self.sync_calls.append("create")
        return super().create(key, commit)

    def commit(self, key: str, commit: Any) -> Any:
        self.sync_calls.append("commit")
        return super().commit(key, commit)

    async def aload(self, key: str) -> Any:
        self.async_threads.add(threading.get_ident())
        return await super().aload(key)

    async def acreate(self, key: str, commit: Any) -> Any:
        self.async_threads.add(threading.get_ident())
        return await super().acreate(key, commit)

    async def acommit(self, key: str, commit: Any) -> Any:
        self.async_threads.add(threading.get_ident())
        return await super().acommit(key, commit)


@pytest.mark.anyio
async def test_an_async_store_is_awaited_on_the_event_loop_thread(fresh_redis: RedisServer) -> None:
    store = FaceWatchingRedisStore(fresh_redis.url)
    try:
        client = make_app(store).test_client()
        token = await csrf(client)
        assert (await client.post("/set", form={"a": "1", "csrf_token": token})).status_code == 200
        assert (await client.post("/count", headers={"X-CSRF-Token": token})).status_code == 200
        assert (await (await client.get("/show")).get_json())["data"] == {"a": "1", "n": 1}
        assert store.sync_calls == []  # no blocking call, so no thread to run it in
        assert store.async_threads == {threading.get_ident()}
        with fresh_redis.client() as redis:
            assert redis.dbsize() > 0  # the session is in Redis
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_the_hooks_run_on_the_event_loop(client: QuartClient, store: FlakyStore) -> None:
    """Quart runs a plain function hook in a thread: every hook of ours is a coroutine."""
    await client.post("/set", form={"a": "1", "csrf_token": await csrf(client)})
    await client.get("/show")
    assert store.threads == {threading.get_ident()}


# -- settings -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_settings_lookups_and_misuse() -> None:
    app = Quart(__name__)
    app.config.update(SESSION_COOKIE_NAME="sid", SESSION_COOKIE_SAMESITE="Strict")
    serversession_quart.init_app(app, store=MemoryStore(), cookie_secure=False)
    manager = serversession_quart.get_manager(app)
    assert (manager.config.cookie_name, manager.config.cookie_samesite) == ("sid", "strict")
    with pytest.raises(ConfigurationError):
        serversession_quart.init_app(Quart(__name__), store=MemoryStore(), config=SessionConfig(), csrf=False)
    with pytest.raises(LookupError):
        serversession_quart.get_manager(Quart(__name__))
    with pytest.raises(LookupError):
        serversession_quart.get_session()
    async with app.test_request_context("/"):
        assert serversession_quart.get_session().is_new
