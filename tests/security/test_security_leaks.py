"""Session IDs never appear in logs, error messages or the store
(OWASP: logging, "session ID exposure"; ASVS V3.1.1 / V7.1.x, V8.3.x).

A demo with signed cookies on a Redis server of its own runs a full flow (every
endpoint, header transport, every error status, a store outage), while Redis
``MONITOR`` records every command the store receives. Every secret handed out
(session IDs, signed cookie values and their tags, CSRF tokens, pre-session
secrets) is then looked for in: the MONITOR stream, every key and value left in
Redis, the demo's own output, and every response body. The SQLite file and the
library's log records get the same search.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from demo_client import browser_client
from sec_kit import COOKIE, CSRF_COOKIE, TunedDemo, sign_in

from servers import RedisServer
from serversession import MemoryStore, SessionConfig, SessionManager
from serversession.core.transport import IncomingToken
from serversession.exceptions import StoreUnavailableError
from serversession.observability import log_event

ISSUING_HEADERS = {"set-cookie", "session-id"}


class Secrets:
    """Records every response and every secret in it."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        #: Pre-session CSRF secrets: the one secret the store does keep, as the session's CSRF secret.
        self.csrf_secrets: set[str] = set()
        self.responses: list[httpx.Response] = []

    def record(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)
        if response.cookies.get(COOKIE):
            self.add(response.cookies[COOKIE])
        if response.cookies.get(CSRF_COOKIE):
            self.csrf_secrets.add(response.cookies[CSRF_COOKIE])
        if response.headers.get("session-id"):
            self.add(response.headers["session-id"])
        for token in csrf_tokens_in(response):
            self.add(token)

    def add(self, value: str) -> None:
        self.values.add(value)
        session_id, dot, tag = value.rpartition(".")
        if dot:  # a signed cookie: the bare ID and the signature are secrets on their own
            self.values.update((session_id, tag))

    def found_in(self, text: str, *, csrf_secrets: bool = True) -> set[str]:
        """The secrets that occur in ``text`` (pre-session CSRF secrets too unless told not to)."""
        wanted = self.values | self.csrf_secrets if csrf_secrets else self.values
        return {secret for secret in wanted if secret in text}

    def client(self, demo: TunedDemo, **headers: str) -> httpx.Client:
        # keeps the Secure cookies over http://127.0.0.1 as a browser does (demo_client.LoopbackJar)
        return browser_client(demo, headers=headers, event_hooks={"response": [self.record]})


class Monitor:
    """Every command a Redis server receives, as text, until stopped."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.commands: list[str] = []
        self._client = server.client()
        self._monitor = self._client.monitor().__enter__()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            command = self._monitor.next_command()["command"]
            if command == "ECHO __monitor_end__":
                return
            self.commands.append(command)

    def stop(self) -> str:
        with self.server.client() as r:
            r.echo("__monitor_end__")
        self._thread.join(timeout=10)
        self._monitor.__exit__(None, None, None)
        self._client.close()
        return "\n".join(self.commands)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def store_dump(server: RedisServer) -> str:
    with redis.Redis.from_url(server.url, decode_responses=True) as r:
        parts = []
        for key in r.scan_iter(count=500):
            parts.append(key)
            kind = r.type(key)
            if kind == "hash":
                parts.extend(f"{f}={v}" for f, v in r.hgetall(key).items())
            elif kind == "zset":
                parts.extend(r.zrange(key, 0, -1))
            else:
                parts.append(str(r.dump(key)))
    return "\n".join(parts)


def exercise(demo: TunedDemo, secrets: Secrets) -> None:
    """Every endpoint and every error status, through cookies and the Authorization header."""
    with secrets.client(demo) as browser:
        page = browser.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        browser.post("/cart/add", data={"csrf_token": token, "sku": "tea-sencha", "qty": "2"})
        browser.post("/login", data={"csrf_token": token, "username": "alice", "password": "wonderland"})
        csrf = browser.get("/api/session").json()["csrf_token"]
        headers = {"X-CSRF-Token": csrf}
        browser.get("/api/sessions")
        browser.put("/api/settings", json={"theme": "dark"}, headers=headers)
        browser.get("/sessions")
        browser.get("/cart")
        # errors, each carrying the session cookie
        browser.post("/api/cart/items", json={"sku": "tea-sencha", "qty": 1}, headers={"X-CSRF-Token": "wrong"})
        browser.post("/api/cart/items", content=b"{", headers={**headers, "Content-Type": "application/json"})
        browser.post("/api/cart/items", json={"sku": "unicorn", "qty": 1}, headers=headers)
        browser.post("/api/cart/items", content=b"x" * 20_000, headers={**headers, "Content-Type": "application/json"})
        browser.get("/api/nope")
        browser.get("/api/login")
        browser.delete("/api/sessions/not-a-handle", headers=headers)
        other = secrets.client(demo)
        with other:
            other.get("/api/session")
            other_csrf = other.get("/api/session").json()["csrf_token"]
            other.post("/api/login", json={"username": "alice", "password": "wonderland"},
                       headers={"X-CSRF-Token": other_csrf})
        handles = [s["id"] for s in browser.get("/api/sessions").json()["sessions"] if not s["current"]]
        for handle in handles[:1]:
            browser.delete(f"/api/sessions/{handle}", headers=headers)
        browser.post("/api/sessions/revoke-others", headers=headers)
        browser.post("/api/logout", headers=headers)
        browser.get("/api/me")
    with secrets.client(demo, Authorization="Session new") as api_client:
        session_id = api_client.get("/api/session").headers["session-id"]
    with secrets.client(demo, Authorization=f"Session {session_id}") as api_client:
        csrf = api_client.get("/api/session").json()["csrf_token"]
        api_client.post("/api/login", json={"username": "bob", "password": "builder"}, headers={"X-CSRF-Token": csrf})
        api_client.post("/api/login", json={"username": "bob", "password": "nope"}, headers={"X-CSRF-Token": csrf})
        api_client.get("/api/me")


def test_no_secret_reaches_the_store_the_logs_or_an_error_message(own_redis: RedisServer) -> None:
    secrets = Secrets()
    with TunedDemo(own_redis.url, secret_key="s" * 32) as demo:
        monitor = Monitor(own_redis)
        exercise(demo, secrets)
        last_id, last_csrf = sign_in(demo, "bob")
        secrets.add(last_id)
        secrets.add(last_csrf)
        commands = monitor.stop()
        dump = store_dump(own_redis)
        # A store outage: the 503 path logs the store's error; it must not name the session.
        own_redis.kill()
        with secrets.client(demo, Cookie=f"{COOKIE}={last_id}", **{"X-CSRF-Token": last_csrf}) as client:
            assert client.get("/api/me").status_code == 503
            assert client.post("/api/cart/items", json={"sku": "tea-sencha", "qty": 1}).status_code == 503
        time.sleep(0.2)
    log = demo.log()
    assert len(secrets.values) > 20 and any("." in s for s in secrets.values)  # signed values were seen
    assert "EVALSHA" in commands.upper() and "HGETALL" in commands.upper()  # the monitor really saw the store
    assert secrets.csrf_secrets, "the flow used a pre-session CSRF secret"
    assert secrets.found_in(commands, csrf_secrets=False) == set(), "a secret was sent to Redis"
    assert secrets.found_in(dump, csrf_secrets=False) == set(), "a secret is stored in Redis"
    assert secrets.found_in(log) == set(), "a secret is in the demo's output"
    assert "session store failed" in log  # the outage was logged, so the search above covered that path
    for response in secrets.responses:  # a body holds at most the CSRF token it hands out, never an ID
        assert secrets.found_in(response.text) <= csrf_tokens_in(response), (response.request.url, response.text)
        for name, value in response.headers.multi_items():
            if name.lower() not in ISSUING_HEADERS:
                assert not secrets.found_in(value), (name, value)
    assert {r.status_code for r in secrets.responses} >= {200, 303, 400, 401, 403, 404, 405, 413, 503}


def test_no_secret_reaches_the_sqlite_file(sqlite_demo_file: TunedDemo) -> None:
    secrets = Secrets()
    exercise(sqlite_demo_file, secrets)
    for _ in range(3):
        for value in sign_in(sqlite_demo_file, "alice"):
            secrets.add(value)
    path = sqlite_demo_file.db_path
    for file in (path, Path(f"{path}-wal")):
        if file.exists():
            data = file.read_bytes().decode("latin-1")
            assert secrets.found_in(data, csrf_secrets=False) == set(), file


def test_library_logs_name_sessions_by_handle_only(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(MemoryStore):
        def commit(self, key: str, commit: Any) -> Any:
            raise StoreUnavailableError("down", store="memory", operation="commit")

    caplog.set_level(logging.DEBUG)
    ids: set[str] = set()
    manager = SessionManager(MemoryStore(), SessionConfig())
    manager.add_listener(log_event)
    manager.add_listener(lambda event: (_ for _ in ()).throw(RuntimeError("listener bug")))  # logged, not raised
    session = manager.load(IncomingToken(None, via_header=True))
    session["cart"] = {"tea": 1}
    ids.add(manager.save(session).header_token or "")
    session = manager.load(IncomingToken(next(iter(ids)), via_header=True))
    session.user = "alice"
    session.rotate()
    ids.add(manager.save(session).header_token or "")
    ids.add(session.csrf_token)
    assert "alice" in repr(manager.list_sessions("alice")) and not any(i in repr(session) for i in ids)
    manager.revoke_user("alice")
    manager.load(IncomingToken(session.session_id, via_header=True))  # an ended ID: UNKNOWN_ID event
    failing = SessionManager(Failing(), SessionConfig())
    failing.add_listener(log_event)
    with pytest.raises(StoreUnavailableError) as raised:
        live = failing.load(IncomingToken(None, via_header=True))
        live.ensure_stored()
        ids.add(failing.save(live).header_token or "")
        live = failing.load(IncomingToken(live.session_id, via_header=True))
        live["x"] = 1
        failing.save(live)
    ids.discard("")
    assert len(ids) == 4
    text = "\n".join(
        f"{r.getMessage()} {r.__dict__} {r.exc_text or ''}" for r in caplog.records
    ) + str(raised.value)
    assert "session created" in text and "session rotated" in text and "session revoked" in text
    assert not any(i in text for i in ids)


def csrf_tokens_in(response: httpx.Response) -> set[str]:
    """The CSRF tokens a response hands out on purpose: the JSON field or the forms' hidden field."""
    found = set(re.findall(r'name="csrf_token" value="([^"]+)"', response.text))
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("csrf_token"), str):
            found.add(body["csrf_token"])
    return found
