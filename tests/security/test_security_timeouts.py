"""Idle and absolute timeouts are enforced by the server, whatever the client replays
(OWASP: idle and absolute timeouts enforced on the server; ASVS V3.3.2 / V7.3.1, V7.3.2).

A demo with a 2 s idle and a 4 s absolute timeout. One session is left idle; a
second one is used every 0.3 s, so it never idles but reaches its absolute
deadline. Both clients keep replaying their cookies (and the pre-sign-in cookie)
long after: nothing ever brings either session back, and the store itself no
longer holds them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from sec_kit import TunedDemo, me_status, raw_client, sign_in, start_session, store_has, store_url

from serversession.core.ids import storage_key

IDLE, ABSOLUTE = 2.0, 4.0
MARGIN = 0.4  # seconds around each deadline in which either answer is fine


@pytest.fixture(scope="module")
def short_demos(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[TunedDemo]]:
    """One short-timeout demo on SQLite (expiry checked in SQL) and one on Redis (native TTLs)."""
    urls = [store_url(kind, request, tmp_path_factory) for kind in ("sqlite", "redis")]
    with (
        TunedDemo(urls[0], idle_timeout=IDLE, absolute_timeout=ABSOLUTE) as on_sqlite,
        TunedDemo(urls[1], idle_timeout=IDLE, absolute_timeout=ABSOLUTE) as on_redis,
    ):
        yield [on_sqlite, on_redis]


def redis_ttl(demo: TunedDemo, session_id: str) -> float | None:
    if not demo.store_url.startswith("redis://"):
        return None
    with redis.Redis.from_url(demo.store_url) as r:
        return float(r.pttl(f"ss:s:{storage_key(session_id)}")) / 1000


def test_idle_and_absolute_timeouts_hold_against_replayed_cookies(short_demos: list[TunedDemo]) -> None:
    with ThreadPoolExecutor(len(short_demos)) as pool:  # both timelines at once: half the wall time
        for future in [pool.submit(timeline, demo) for demo in short_demos]:
            future.result()


def timeline(short_demo: TunedDemo) -> None:
    start = time.monotonic()
    pre_sign_in, _ = start_session(short_demo)
    idle_id, _ = sign_in(short_demo, "alice")
    created_lo = time.monotonic() - start
    busy_id, _ = sign_in(short_demo, "bob")
    created_hi = time.monotonic() - start  # the busy session was created in between: its deadline too
    deadline_lo, deadline_hi = created_lo + ABSOLUTE, created_hi + ABSOLUTE
    assert me_status(short_demo, busy_id) == 200 and me_status(short_demo, idle_id) == 200
    idle_from = time.monotonic() - start  # the last use of the idle session: its idle clock runs from here
    busy_ended_at = None
    busy_done = time.monotonic() - start  # when the busy session's last use came back
    stalled = False  # the machine stalled longer than the idle timeout between two uses
    with raw_client(short_demo, busy_id) as busy, raw_client(short_demo, idle_id) as idle:
        while time.monotonic() - start < deadline_hi + 1.5:
            began = time.monotonic() - start  # judge by when the request was sent, not when it came back
            status = busy.get("/api/me").status_code
            ended = time.monotonic() - start
            if status != 200 and began - busy_done > IDLE - MARGIN:
                stalled = True  # it idled out, rightly: the absolute deadline can't be judged this run
            busy_done = ended
            if ended < deadline_lo - MARGIN and not stalled:
                assert status == 200, f"busy session refused at {ended:.2f}s, before its absolute deadline"
                ttl = redis_ttl(short_demo, busy_id)
                if ttl is not None:  # the store's own expiry never passes the absolute deadline
                    assert ttl <= deadline_hi - ended + MARGIN
            elif began > deadline_hi + MARGIN:
                assert status == 401, f"busy session still served at {began:.2f}s, past its absolute deadline"
            if status == 401 and busy_ended_at is None:
                busy_ended_at = began
            if busy_ended_at is not None:
                assert status == 401, "a session came back after it ended"
            idle_over = time.monotonic() - start > idle_from + IDLE + MARGIN
            if idle_over:
                assert idle.get("/api/me").status_code == 401, "idle session served past its idle timeout"
            for old in (pre_sign_in, idle_id if idle_over else None):
                if old is not None:
                    assert me_status(short_demo, old) == 401
            time.sleep(0.3)
    assert busy_ended_at is not None
    if not stalled:
        assert deadline_lo - 2 * MARGIN <= busy_ended_at <= deadline_hi + 1.0
    for session_id in (pre_sign_in, idle_id, busy_id):
        assert me_status(short_demo, session_id) == 401
        assert not store_has(short_demo.store_url, session_id)
        with raw_client(short_demo, session_id) as client:
            assert client.get("/api/cart").json() == {"items": {}, "count": 0}
    if stalled:
        pytest.skip("the machine stalled past the idle timeout between two uses: absolute deadline not judged")
