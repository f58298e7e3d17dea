"""A stalled PostgreSQL: every server process SIGSTOPped, so the kernel still accepts
and acknowledges, TCP keepalives and ``tcp_user_timeout`` never fire, and
``statement_timeout`` cannot run. Each store call must still fail with
StoreUnavailableError once its deadline (the store's ``timeout``) has passed, on
both faces, with the stuck connection closed rather than handed to the next caller;
the ASGI and WSGI middleware answer 503 within that bound, and so does the demo
under load; and after SIGCONT the same store works again at once.

Bounds are generous (``TIMEOUT + 3`` s): the point is "fails near the deadline",
not "hangs until the server wakes up". Each test starts and freezes its own server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fault_kit import Load, Shopper, frozen_postgres, healthy, per_second, summary, wait_until
from sec_kit import TunedDemo, raw_client

from servers import PostgresServer
from serversession.core.codec import SessionMeta, encode_meta
from serversession.core.config import SessionConfig
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit
from serversession.exceptions import StoreUnavailableError
from serversession.integrations import asgi, wsgi
from serversession.stores.postgres import NoAnswerError, PostgresStore

TIMEOUT = 1.0
#: One store call: its deadline plus room for a slow machine, never "until the server wakes up".
CALL_BOUND = TIMEOUT + 3.0
#: One request: a load and a commit, each bounded by TIMEOUT.
REQUEST_BOUND = 2 * TIMEOUT + 3.0
MAX_SIZE = 3


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer() as started:
        yield started


@pytest.fixture
def store(server: PostgresServer) -> Iterator[PostgresStore]:
    built = PostgresStore(server.url, table=f"t_{uuid.uuid4().hex}", timeout=TIMEOUT, max_size=MAX_SIZE)
    try:
        yield built
    finally:
        built.close()


def new_row(store: PostgresStore) -> str:
    key, now = storage_key(new_session_id()), time.time()
    meta = encode_meta(SessionMeta(created_at=now, last_seen_at=now))
    assert store.create(key, Commit(set_data={"a": "1"}, meta=meta, expires_at=now + 600))
    return key


def timed_failure(call: Callable[[], Any]) -> float:
    """Seconds until ``call`` raised StoreUnavailableError (a NoAnswerError or the pool's wait)."""
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        call()
    assert "NoAnswerError" in str(info.value) or "PoolTimeout" in str(info.value), info.value
    return time.monotonic() - start


def test_sync_calls_fail_by_the_deadline_and_the_store_recovers(server: PostgresServer, store: PostgresStore) -> None:
    key = new_row(store)
    with frozen_postgres(server.data):
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            store.load(key)
        first = time.monotonic() - start
        assert isinstance(info.value.__cause__, NoAnswerError) and info.value.operation == "load"
        # More callers than connections: the pool's wait ends by the same deadline.
        with ThreadPoolExecutor(max_workers=2 * MAX_SIZE) as pool:
            crowd = list(pool.map(lambda _: timed_failure(lambda: store.load(key)), range(2 * MAX_SIZE)))
        commit = timed_failure(lambda: store.commit(key, Commit(set_data={"a": "2"})))
    print(f"\nstalled PostgreSQL, sync: load failed after {first:.2f}s, {2 * MAX_SIZE} concurrent loads "
          f"after at most {max(crowd):.2f}s, a commit after {commit:.2f}s (timeout {TIMEOUT}s)")  # fmt: skip
    assert 0.9 * TIMEOUT <= first <= CALL_BOUND  # it waited for the deadline, and no longer
    assert max(crowd) <= CALL_BOUND and commit <= CALL_BOUND
    assert store._pool is not None and store._pool.get_stats().get("returns_bad", 0) >= 1  # closed, not reused

    loaded = store.load(key)  # the first call after SIGCONT works: nothing broken was left in the pool
    assert loaded is not None and loaded.data == {"a": "1"}  # the stalled commit never applied
    lost = store._pool.get_stats().get("connections_lost", 0)
    store._pool.check()  # tries every idle connection
    assert store._pool.get_stats().get("connections_lost", 0) == lost
    for _ in range(2 * MAX_SIZE):
        assert store.load(key) is not None


@pytest.mark.anyio
async def test_async_calls_fail_by_the_deadline_and_the_store_recovers(
    server: PostgresServer, store: PostgresStore, anyio_backend: str
) -> None:
    key = new_row(store)
    await store.aping()
    try:
        with frozen_postgres(server.data):
            start = time.monotonic()
            with pytest.raises(StoreUnavailableError) as info:
                await store.aload(key)
            first = time.monotonic() - start
            assert isinstance(info.value.__cause__, NoAnswerError)
            ticks = 0

            async def ticker() -> None:  # the event loop keeps serving while calls wait
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            beat = asyncio.ensure_future(ticker())
            start = time.monotonic()
            results = await asyncio.gather(*(store.aload(key) for _ in range(2 * MAX_SIZE)), return_exceptions=True)
            crowd = time.monotonic() - start
            beat.cancel()
            assert all(isinstance(r, StoreUnavailableError) for r in results), results
        print(f"\nstalled PostgreSQL, async: load failed after {first:.2f}s, {2 * MAX_SIZE} concurrent loads "
              f"after {crowd:.2f}s, the loop ticked {ticks} times meanwhile")  # fmt: skip
        assert 0.9 * TIMEOUT <= first <= CALL_BOUND and crowd <= CALL_BOUND
        assert ticks >= crowd / 0.05 / 2  # no blocking wait on the event loop
        assert store._apool is not None and store._apool.get_stats().get("returns_bad", 0) >= 1

        loaded = await store.aload(key)
        assert loaded is not None and loaded.data == {"a": "1"}
        lost = store._apool.get_stats().get("connections_lost", 0)
        await store._apool.check()
        assert store._apool.get_stats().get("connections_lost", 0) == lost
        for _ in range(2 * MAX_SIZE):
            assert await store.aload(key) is not None
    finally:
        await store.aclose()


# -- through the middleware: a tiny counting app on each face ------------------------------
CONFIG = SessionConfig(cookie_secure=False)


async def asgi_counter(scope: dict[str, Any], receive: Any, send: Any) -> None:
    session = asgi.get_session(scope)
    session["n"] = session.get("n", 0) + 1
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(session["n"]).encode()})


def wsgi_counter(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = wsgi.get_session(environ)
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


def cookie_of(response: httpx.Response) -> str:
    return response.headers["set-cookie"].split(";", 1)[0]


@pytest.mark.anyio
async def test_asgi_answers_503_by_the_deadline(server: PostgresServer, store: PostgresStore,
                                                anyio_backend: str) -> None:  # fmt: skip
    app = asgi.SessionMiddleware(asgi_counter, store, CONFIG)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            first = await client.get("/")
            assert first.status_code == 200 and first.text == "1"
            headers = {"cookie": cookie_of(first)}
            with frozen_postgres(server.data):
                start = time.monotonic()
                stalled = await client.get("/", headers=headers)
                took = time.monotonic() - start
            print(f"\nstalled PostgreSQL under ASGI: {stalled.status_code} after {took:.2f}s")
            assert stalled.status_code == 503 and stalled.headers["retry-after"] == "1"
            assert took <= REQUEST_BOUND
            again = await client.get("/", headers=headers)
            assert (again.status_code, again.text) == (200, "2")  # the same session, nothing lost
    finally:
        await store.aclose()


def test_wsgi_answers_503_by_the_deadline(server: PostgresServer, store: PostgresStore) -> None:
    app = wsgi.SessionMiddleware(wsgi_counter, store, CONFIG)
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://app") as client:
        first = client.get("/")
        assert first.status_code == 200 and first.text == "1"
        headers = {"cookie": cookie_of(first)}
        with frozen_postgres(server.data):
            start = time.monotonic()
            stalled = client.get("/", headers=headers)
            took = time.monotonic() - start
        print(f"\nstalled PostgreSQL under WSGI: {stalled.status_code} after {took:.2f}s")
        assert stalled.status_code == 503 and stalled.headers["retry-after"] == "1"
        assert took <= REQUEST_BOUND
        again = client.get("/", headers=headers)
        assert (again.status_code, again.text) == (200, "2")


# -- the demo under load, as the report that found this ran it --------------------------------
DEMO_TIMEOUT = 0.5
MIX = {"add": 3, "cart": 3, "me": 1, "session": 1}


def test_the_demo_under_load(server: PostgresServer) -> None:
    """``/api/me``, ``/healthz`` and cart requests had no answer after 20 s, or a 503 after the
    pool's 5 s; now every request answers 200 or 503 within a few timeouts, and all 200 after."""
    url = f"{server.url}?timeout={DEMO_TIMEOUT}"
    bound = 2 * DEMO_TIMEOUT + 3.0
    with TunedDemo(url) as demo:
        shoppers = [Shopper.anonymous(demo) for _ in range(12)] + [Shopper.signed_in(demo, "bob")]
        load = Load([demo], shoppers, workers=6, mix=MIX).start()
        start = time.monotonic()
        time.sleep(1.0)
        with frozen_postgres(server.data):
            down_at = time.monotonic()
            time.sleep(1.0)
            with httpx.Client(base_url=demo.url, timeout=20) as client:
                probe = time.monotonic()
                health = client.get("/healthz").status_code
                health_took = time.monotonic() - probe
            time.sleep(1.0)
            up_at = time.monotonic()
        recovered = wait_until(lambda: healthy(demo), 10, "the demo never saw PostgreSQL come back")
        settled_at = time.monotonic() + 0.5
        time.sleep(1.0)
        outcomes = load.stop()
        seconds = "\n".join(f"  t={sec}s {dict(c)}" for sec, c in per_second(outcomes, start))
        report = (f"{summary(outcomes)}; /healthz {health} in {health_took:.2f}s while stalled; "
                  f"served again {recovered:.2f}s after SIGCONT\n{seconds}")  # fmt: skip
        print(f"\nstalled PostgreSQL, demo: {report}")
        assert health == 503 and health_took <= bound, report
        served = {o.op: {200, 401} if o.op == "me" else {200} for o in outcomes}  # /api/me: 401 when anonymous
        assert all(o.status in served[o.op] | {503} for o in outcomes), report  # never a 500, never a hang
        assert max(o.seconds for o in outcomes) <= bound, report
        during = [o for o in outcomes if o.started > down_at + 0.1 and o.started + o.seconds < up_at]
        assert during and all(o.status == 503 for o in during), report
        after = [o for o in outcomes if o.started > settled_at]
        assert after and all(o.status in served[o.op] for o in after), report
        for shopper in shoppers:
            with raw_client(demo, shopper.session_id) as client:
                cart = client.get("/api/cart")
                assert cart.status_code == 200
                assert shopper.acked <= cart.json()["count"] <= shopper.acked + shopper.unsure, (shopper, cart.json())
        with raw_client(demo, shoppers[-1].session_id) as client:
            assert client.get("/api/me").json() == {"user": "bob"}
