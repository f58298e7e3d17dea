"""The demo as an operator runs it: timeouts, restarts, several processes, a store outage.

Each test starts servers of its own, since it changes or kills them.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
from demo_client import COOKIE, ApiClient, DemoServer, bare, error_of

from servers import RedisServer

SKU = "tea-sencha"


def test_idle_timeout_ends_the_session() -> None:
    with DemoServer("memory://", idle_timeout=2) as demo, ApiClient(demo) as client:
        client.signed_in("alice")
        cookie = client.cookie
        assert client.get("/api/me").status_code == 200
        time.sleep(3)
        error_of(client.get("/api/me"), 401)
        with bare(demo, cookie) as browser:  # a person coming back gets told why
            assert (
                "Your session has ended (timed out or signed out elsewhere). Please sign in again."
                in browser.get("/").text
            )


def test_signed_cookies_with_a_secret_key() -> None:
    with DemoServer("memory://", env={"SERVERSESSION_SECRET_KEY": "s3cret-for-tests-only"}) as demo:
        with ApiClient(demo) as client:
            client.signed_in("alice")
            cookie = client.cookie or ""
            assert "." in cookie  # ID.signature
        with bare(demo, cookie) as same:
            assert same.get("/api/me").json() == {"user": "alice"}
        session_id, _, tag = cookie.rpartition(".")
        forged = f"{session_id}.{'A' * len(tag)}"
        with bare(demo, forged) as forger:
            error_of(forger.get("/api/me"), 401)


def test_insecure_cookie_flag_drops_secure_in_every_worker() -> None:
    """``--insecure-cookie`` (for plain HTTP on another host): a plain ``session`` cookie
    without Secure, which any cookie jar sends back over http://; with two workers
    every answer comes from a worker process, so the setting crossed to them."""
    with DemoServer("memory://", workers=2, insecure_cookie=True) as demo:
        for _ in range(6):
            with httpx.Client(base_url=demo.url, timeout=15) as plain:  # the default jar: no Secure over http
                started = plain.get("/api/session")
                (set_cookie,) = started.headers.get_list("set-cookie")
                name, _, rest = set_cookie.partition("=")
                assert name == "session" != COOKIE
                attributes = sorted(part.strip().split("=")[0].lower() for part in rest.split(";")[1:])
                assert attributes == ["httponly", "path", "samesite"], set_cookie
                csrf = started.json()["csrf_token"]
                login = plain.post(
                    "/api/login", json={"username": "bob", "password": "builder"}, headers={"X-CSRF-Token": csrf}
                )
                assert login.status_code == 200, login.text
                assert plain.get("/api/me").json() == {"user": "bob"}


def test_two_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    with DemoServer(url) as first, DemoServer(url) as second, ApiClient(first) as client:
        client.signed_in("alice")
        client.post("/api/cart/items", json={"sku": SKU, "qty": 1})
        with bare(second, client.cookie, **{"X-CSRF-Token": client.csrf or ""}) as other:
            assert other.get("/api/me").json() == {"user": "alice"}
            assert other.post("/api/cart/items", json={"sku": SKU, "qty": 4}).json()["count"] == 5
        assert client.get("/api/cart").json()["count"] == 5


def test_sessions_survive_a_restart_and_both_signals_stop_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'restart.sqlite3'}"
    demo = DemoServer(url).start()
    try:
        with ApiClient(demo) as client:
            client.signed_in("bob")
            cookie = client.cookie
    finally:
        assert demo.stop(signal.SIGINT) == 0, demo.log()
    with DemoServer(url) as again, bare(again, cookie) as client:
        assert client.get("/api/me").json() == {"user": "bob"}


def test_several_workers_share_sessions(tmp_path: Path) -> None:
    with DemoServer(f"sqlite:///{tmp_path / 'workers.sqlite3'}", workers=2) as demo, ApiClient(demo) as client:
        client.signed_in("alice")
        for _ in range(10):  # whichever worker answers knows the session
            assert client.get("/api/me").json() == {"user": "alice"}


def test_store_outage_is_503_and_recovers() -> None:
    with RedisServer() as redis_server, DemoServer(redis_server.url) as demo, ApiClient(demo) as client:
        client.start()
        client.post("/api/cart/items", json={"sku": SKU, "qty": 1})
        redis_server.kill()
        error_of(httpx.get(f"{demo.url}/healthz", timeout=15), 503)
        error_of(client.get("/api/cart"), 503)
        error_of(client.post("/api/cart/items", json={"sku": SKU, "qty": 1}), 503)
        with bare(demo) as newcomer:
            error_of(newcomer.get("/api/session"), 503)

        redis_server.restart()
        deadline = time.monotonic() + 10
        while httpx.get(f"{demo.url}/healthz", timeout=15).status_code != 200:
            assert time.monotonic() < deadline, "the demo never saw Redis come back"
            time.sleep(0.1)
        with ApiClient(demo) as fresh:  # Redis kept nothing (no persistence in tests): start over
            assert fresh.start()["authenticated"] is False
            assert fresh.post("/api/cart/items", json={"sku": SKU, "qty": 2}).json()["count"] == 2
        assert client.get("/api/cart").json() == {"items": {}, "count": 0}
