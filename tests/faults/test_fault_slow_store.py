"""A slow store hits the configured timeout; no worker hangs on it.

Two ways to make Redis slow: a proxy that holds every reply (``DelayProxy``), and
``DEBUG SLEEP`` on the server itself (a blocked event loop, as a long Lua script
or a huge ``KEYS`` would cause). The demo's store calls time out after
``STORE_TIMEOUT`` seconds; requests that need the store answer 503 within a
bound, requests that don't (no session yet) keep answering at once, proving the
worker is not stuck, and everything works again when the store speeds up.
"""

from __future__ import annotations

import threading
import time

import httpx
import redis
from fault_kit import DelayProxy, Load, Shopper, cart_count, healthy, summary, wait_until
from sec_kit import TunedDemo

from servers import RedisServer

STORE_TIMEOUT = 0.5
REQUEST_BOUND = 4 * STORE_TIMEOUT + 1.0
SLEEP = 1.5
MIX = {"add": 2, "cart": 2, "session": 1}


def no_store_latency(demo: TunedDemo, rounds: int = 20) -> float:
    """Worst latency of requests that carry no session (they never touch the store)."""
    worst = 0.0
    with httpx.Client(base_url=demo.url, timeout=10) as client:
        for _ in range(rounds):
            start = time.monotonic()
            assert client.get("/api/cart").json() == {"items": {}, "count": 0}
            worst = max(worst, time.monotonic() - start)
    return worst


def test_a_proxy_that_delays_every_reply(redis_server: RedisServer) -> None:
    with DelayProxy(redis_server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0?socket_timeout={STORE_TIMEOUT}&socket_connect_timeout={STORE_TIMEOUT}"
        with TunedDemo(url) as demo:
            shoppers = [Shopper.anonymous(demo) for _ in range(10)]
            with Load([demo], shoppers, workers=4, mix=MIX) as load:
                time.sleep(0.5)
                slow_from = time.monotonic()
                proxy.delay = 2.0
                time.sleep(0.3)
                worst_unrelated = no_store_latency(demo)
                assert not healthy(demo)
                time.sleep(0.5)
                slow_until = time.monotonic()
                proxy.delay = 0.0
                wait_until(lambda: healthy(demo), 10, "the demo never recovered")
                fast_again = time.monotonic() + 0.5
                time.sleep(1.0)
            outcomes = load.outcomes
            report = summary(outcomes)
            print(f"\nslow proxy: {report}; worst no-store request while slow {worst_unrelated * 1000:.1f} ms")
            assert {o.status for o in outcomes} <= {200, 503}, report
            assert max(o.seconds for o in outcomes) <= REQUEST_BOUND, report
            slow = [o for o in outcomes if o.started > slow_from + 0.1 and o.started + o.seconds < slow_until]
            assert slow and all(o.status == 503 for o in slow), report
            assert all(STORE_TIMEOUT * 0.8 <= o.seconds for o in slow), report  # it waited for the timeout...
            assert worst_unrelated < 0.25  # ...in that request only: the event loop kept serving others
            assert all(o.status == 200 for o in outcomes if o.started > fast_again), report
            for shopper in shoppers:
                status, count = cart_count(demo, shopper)
                assert status == 200 and shopper.acked <= count <= shopper.acked + shopper.unsure


def test_debug_sleep_on_the_server() -> None:
    with RedisServer("--enable-debug-command", "yes") as server:
        url = f"{server.url}?socket_timeout={STORE_TIMEOUT}&socket_connect_timeout={STORE_TIMEOUT}"
        with TunedDemo(url) as demo:
            shoppers = [Shopper.anonymous(demo) for _ in range(10)]
            with Load([demo], shoppers, workers=4, mix=MIX) as load:
                time.sleep(0.5)
                sleeping_from = time.monotonic()

                def sleep_redis() -> None:
                    with redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=10) as r:
                        r.execute_command("DEBUG", "SLEEP", str(SLEEP))

                sleeper = threading.Thread(target=sleep_redis)
                sleeper.start()
                time.sleep(0.2)
                worst_unrelated = no_store_latency(demo, rounds=10)
                sleeper.join(15)
                sleeping_until = sleeping_from + SLEEP
                wait_until(lambda: healthy(demo), 10, "the demo never recovered")
                awake = time.monotonic() + 0.5
                time.sleep(1.0)
            outcomes = load.outcomes
            report = summary(outcomes)
            print(f"\nDEBUG SLEEP: {report}; worst no-store request meanwhile {worst_unrelated * 1000:.1f} ms")
            assert {o.status for o in outcomes} <= {200, 503}, report
            assert max(o.seconds for o in outcomes) <= REQUEST_BOUND, report
            asleep = [o for o in outcomes if o.started > sleeping_from + 0.2 and o.started + o.seconds < sleeping_until]
            assert asleep and all(o.status == 503 for o in asleep), report
            assert worst_unrelated < 0.25
            assert all(o.status == 200 for o in outcomes if o.started > awake), report
            for shopper in shoppers:
                status, count = cart_count(demo, shopper)
                assert status == 200 and shopper.acked <= count <= shopper.acked + shopper.unsure
