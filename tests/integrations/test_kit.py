"""The kit's request cycle (begin/finish/answer_for and their async twins), called directly
as an integration outside this repository would, over a real memory store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from flaky_store import FlakyStore

from serversession import (
    AsyncSessionManager,
    MemoryStore,
    ReauthenticationRequired,
    SessionConfig,
    SessionManager,
    StoreUnavailableError,
)
from serversession.integrations import kit

CONFIG = SessionConfig(cookie_secure=False, cookie_name="session")
HOST = {"host": "shop.test"}


def manager(store: Any = None) -> SessionManager:
    return SessionManager(store if store is not None else MemoryStore(), CONFIG)


def opened(result: kit.Opened | kit.Refusal) -> kit.Opened:
    assert isinstance(result, kit.Opened), result
    return result


def cookie_of(added: list[tuple[str, str]] | kit.Refusal) -> str:
    assert isinstance(added, list), added
    cookies = [value for name, value in added if name == "Set-Cookie" and value.startswith("session=")]
    assert len(cookies) == 1, added
    return cookies[0].split(";", 1)[0].split("=", 1)[1]


def signed_in(m: SessionManager) -> tuple[str, str]:
    """A stored session's cookie value and its CSRF token."""
    first = opened(kit.begin(m, "GET", "/", "http", HOST, "10.0.0.1"))
    first.session["user"] = "ana"
    token = first.session.csrf_token
    return cookie_of(kit.finish(m, first)), token


def test_pick_headers_keeps_what_the_cycle_reads_and_joins_repeated_cookies() -> None:
    picked = kit.pick_headers([("Cookie", "a=1"), ("X-Other", "x"), ("cookie", "session=2"),
                               ("Host", "one"), ("host", "two"), ("X-CSRF-Token", "t")])  # fmt: skip
    assert picked == {"cookie": "a=1; session=2", "host": "one", "x-csrf-token": "t"}


def test_a_first_visit_opens_a_new_session_and_saving_it_sets_the_cookie() -> None:
    m = manager()
    first = opened(kit.begin(m, "GET", "/", "http", HOST, "10.0.0.1"))
    assert first.facts is None  # a safe method gathers no facts
    assert first.session.is_new
    first.session["n"] = 1
    value = cookie_of(kit.finish(m, first))
    again = opened(kit.begin(m, "GET", "/", "http", {**HOST, "cookie": f"session={value}"}, "10.0.0.1"))
    assert again.session["n"] == 1


def test_an_untouched_session_adds_no_header() -> None:
    m = manager()
    assert kit.finish(m, opened(kit.begin(m, "GET", "/", "http", HOST, None))) == []


def test_an_unsafe_request_needs_the_csrf_token_from_the_header_or_the_form() -> None:
    m = manager()
    value, token = signed_in(m)
    headers = {**HOST, "cookie": f"session={value}", "content-type": "application/json", "content-length": "2"}
    refused = kit.begin(m, "POST", "/buy", "http", headers, "10.0.0.1")
    assert isinstance(refused, kit.Refusal) and refused.status == 403
    assert opened(kit.begin(m, "POST", "/buy", "http", {**headers, "x-csrf-token": token}, "10.0.0.1"))
    calls: list[str] = []

    def form_token() -> str:
        calls.append("read")
        return token

    form = {**headers, "content-type": "application/x-www-form-urlencoded"}
    assert opened(kit.begin(m, "POST", "/buy", "http", form, "10.0.0.1", form_token=form_token))
    assert calls == ["read"]
    # A JSON body is no form: the callback is not called, and the request is refused.
    refused = kit.begin(m, "POST", "/buy", "http", headers, "10.0.0.1", form_token=form_token)
    assert isinstance(refused, kit.Refusal) and calls == ["read"]
    # The callback may refuse (a body too large to look into).
    too_large = kit.begin(m, "POST", "/buy", "http", form, "10.0.0.1", form_token=lambda: kit.body_too_large(10))
    assert isinstance(too_large, kit.Refusal) and too_large.status == 413


def test_the_frameworks_own_exemption_skips_the_csrf_and_cross_site_checks_of_that_route_only() -> None:
    m = manager()
    value, _ = signed_in(m)
    headers = {**HOST, "cookie": f"session={value}", "origin": "https://payments.test"}
    # A webhook signed another way: like Django's csrf_exempt, no token and no Origin check.
    assert opened(kit.begin(m, "POST", "/hook", "http", headers, None, exempt=True))
    cross = kit.begin(m, "POST", "/hook", "http", headers, None)
    assert isinstance(cross, kit.Refusal) and cross.status == 403


def test_a_websocket_handshake_is_screened_but_asks_no_csrf_token() -> None:
    m = manager()
    value, _ = signed_in(m)
    headers = {**HOST, "cookie": f"session={value}"}
    assert opened(kit.begin(m, "GET", "/ws", "ws", {**headers, "origin": "http://shop.test"}, None, websocket=True))
    hijack = kit.begin(m, "GET", "/ws", "ws", {**headers, "origin": "https://evil.test"}, None, websocket=True)
    assert isinstance(hijack, kit.Refusal) and hijack.status == 403
    # Only the integration knows a handshake: an HTTP method spelled WEBSOCKET is checked as unsafe.
    spelled = kit.begin(m, "WEBSOCKET", "/ws", "http", {**headers, "origin": "http://shop.test"}, None)
    assert isinstance(spelled, kit.Refusal) and spelled.reason == "csrf_missing"


def test_a_session_cookie_sent_twice_opens_no_session() -> None:
    m = manager()
    value, _ = signed_in(m)
    headers = {**HOST, "cookie": kit.pick_headers([("cookie", f"session={value}"), ("cookie", "session=x")])["cookie"]}
    result = opened(kit.begin(m, "GET", "/", "http", headers, None))
    assert result.session.get("user") is None


def test_a_store_down_is_a_503_refusal_on_load_and_on_save() -> None:
    store = FlakyStore()
    m = manager(store)
    value, _ = signed_in(m)
    store.fail.add("load")
    down = kit.begin(m, "GET", "/", "http", {**HOST, "cookie": f"session={value}"}, None)
    assert isinstance(down, kit.Refusal) and down.status == 503 and ("Retry-After", "1") in down.headers()
    store.fail = {"commit"}
    fresh = opened(kit.begin(m, "GET", "/", "http", HOST, None))
    fresh.session["x"] = 1
    store.fail.add("create")
    refused = kit.finish(m, fresh)
    assert isinstance(refused, kit.Refusal) and refused.status == 503


def test_answer_for_answers_session_errors_and_leaves_the_apps_own() -> None:
    down = kit.answer_for(StoreUnavailableError("down", store="memory", operation="load"))
    assert down is not None and down.status == 503
    reauth = kit.answer_for(ReauthenticationRequired("sign in again", max_age=300, authenticated_at=None))
    assert reauth is not None and reauth.status == 401 and b'"reauth_required": true' in reauth.body()
    assert kit.answer_for(ValueError("the app's")) is None
    assert kit.answer_for(KeyboardInterrupt()) is None


def test_the_async_cycle_matches_the_blocking_one() -> None:
    async def scenario() -> None:
        m = AsyncSessionManager(MemoryStore(), CONFIG)
        first = opened(await kit.abegin(m, "GET", "/", "http", HOST, "10.0.0.1"))
        first.session["n"] = 2
        token = first.session.csrf_token
        value = cookie_of(await kit.afinish(m, first))
        headers = {**HOST, "cookie": f"session={value}", "content-type": "application/x-www-form-urlencoded",
                   "content-length": "20"}  # fmt: skip

        async def form_token() -> str:
            return token

        again = opened(await kit.abegin(m, "POST", "/", "http", headers, None, form_token=form_token))
        assert again.session["n"] == 2
        refused = await kit.abegin(m, "POST", "/", "http", headers, None)
        assert isinstance(refused, kit.Refusal) and refused.status == 403

    asyncio.run(scenario())


@pytest.mark.parametrize("name", sorted(kit.__all__))
def test_every_exported_name_exists(name: str) -> None:
    assert hasattr(kit, name)


# -- lazy: the store is read at the session's first use, once --------------------------------


def test_a_lazy_session_is_read_at_its_first_use_and_only_once() -> None:
    store = FlakyStore()
    m = manager(store)
    cookie, _ = signed_in(m)
    headers = {**HOST, "cookie": f"session={cookie}"}
    loads = store.loads
    untouched = opened(kit.begin(m, "GET", "/health", "http", headers, "10.0.0.1", lazy=True))
    assert not untouched.session.loaded and kit.finish(m, untouched, (), 200) == [] and store.loads == loads
    used = opened(kit.begin(m, "GET", "/", "http", headers, "10.0.0.1", lazy=True))
    assert store.loads == loads and used.session["user"] == "ana" and store.loads == loads + 1
    assert used.session.get("user") == "ana" and used.session.user is None and store.loads == loads + 1
    assert ("Vary", "Cookie") in kit.finish(m, used, (), 200)


def test_a_lazy_unsafe_request_is_read_before_the_view_to_check_csrf() -> None:
    store = FlakyStore()
    m = manager(store)
    cookie, token = signed_in(m)
    headers = {**HOST, "cookie": f"session={cookie}", "origin": "http://shop.test", "content-length": "2"}
    loads = store.loads
    refused = kit.begin(m, "POST", "/set", "http", headers, "10.0.0.1", lazy=True)
    assert isinstance(refused, kit.Refusal) and refused.status == 403 and store.loads == loads + 1
    accepted = opened(kit.begin(m, "POST", "/set", "http", {**headers, "x-csrf-token": token}, "10.0.0.1", lazy=True))
    assert accepted.session.loaded and store.loads == loads + 2


class TryCounting(FlakyStore):
    """Counts every read asked for, failed ones too."""

    tries = 0

    def load(self, key: str) -> Any:
        self.tries += 1
        return super().load(key)


def test_a_failed_lazy_read_raises_at_each_use_without_reading_again() -> None:
    store = TryCounting()
    m = manager(store)
    cookie, _ = signed_in(m)
    store.fail.add("load")
    tries = store.tries
    for status, answer in ((500, kit.STORE_UNAVAILABLE), (503, []), (200, [])):
        request = opened(kit.begin(m, "GET", "/", "http", {**HOST, "cookie": f"session={cookie}"}, "10.0.0.1",
                                   lazy=True))  # fmt: skip
        for _ in range(2):
            with pytest.raises(StoreUnavailableError):
                request.session.get("user")
        # A framework's own 500 made of the failure is the 503; an answer the app chose stands.
        assert kit.finish(m, request, (), status) == answer
    assert store.tries == tries + 3  # once per request, however often the session was used
    assert kit.answer_for(StoreUnavailableError("down")) == kit.STORE_UNAVAILABLE


def test_an_async_lazy_session_says_to_await_it_and_reads_once_for_all_tasks() -> None:
    store = FlakyStore()
    sync, am = manager(store), AsyncSessionManager(store, CONFIG)
    cookie, _ = signed_in(sync)
    headers = {**HOST, "cookie": f"session={cookie}"}

    async def cycle() -> None:
        loads = store.loads
        request = opened(await kit.abegin(am, "GET", "/", "http", headers, "10.0.0.1", lazy=True))
        with pytest.raises(kit.SessionNotLoadedError, match=r"await session\.aload\(\)"):
            request.session.get("user")
        sessions = await asyncio.gather(*(request.session.aload() for _ in range(3)))
        assert all(s is request.session for s in sessions) and request.session["user"] == "ana"
        assert store.loads == loads + 1
        worker = opened(await kit.abegin(am, "GET", "/", "http", headers, "10.0.0.1", lazy=True))
        assert await asyncio.to_thread(worker.session.get, "user") == "ana"  # a worker thread may block
        assert store.loads == loads + 2 and worker.session.loaded
        assert await kit.afinish(am, worker, (), 200) == [("Vary", "Cookie")]

    asyncio.run(cycle())


def test_one_csrf_exempt_marker_for_every_integration() -> None:
    from serversession.integrations import aiohttp as ss_aiohttp
    from serversession.integrations import flask as ss_flask
    from serversession.integrations import quart as ss_quart

    def view() -> None: ...

    for mark in (kit.csrf_exempt, ss_flask.csrf_exempt, ss_quart.csrf_exempt, ss_aiohttp.csrf_exempt):
        def fresh() -> None: ...

        assert not kit.is_csrf_exempt(fresh) and kit.is_csrf_exempt(mark(fresh))
    assert not kit.is_csrf_exempt(view) and not kit.is_csrf_exempt(None)
