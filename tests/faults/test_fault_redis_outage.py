"""Redis stopped in the middle of a load: 503s, bounded latency, nothing corrupt, and the
same sessions work again when it is back, without restarting the app.

A Redis server of our own with ``appendfsync always`` (so what it acknowledged
survives its own crash) serves one demo process whose store calls time out after
``STORE_TIMEOUT`` seconds (``?socket_timeout=`` in the store URL). Two faults:
``kill`` (SIGKILL, then a restart on the same port) and ``freeze`` (SIGSTOP, then
SIGCONT: the server accepts connections and never answers, the worst case for a
client). The load never stops while that happens.
"""

from __future__ import annotations

import signal
import time

import pytest
from fault_kit import Load, Shopper, cart_count, healthy, per_second, summary, wait_until
from sec_kit import TunedDemo, raw_client

from servers import RedisServer

STORE_TIMEOUT = 0.5
#: A request makes at most a few store calls, each bounded by STORE_TIMEOUT.
REQUEST_BOUND = 4 * STORE_TIMEOUT + 1.0
MIX = {"add": 4, "cart": 3, "settings": 1, "session": 1}


@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_redis_outage_under_load(fault: str) -> None:
    with RedisServer("--appendonly", "yes", "--appendfsync", "always") as server:
        url = f"{server.url}?socket_timeout={STORE_TIMEOUT}&socket_connect_timeout={STORE_TIMEOUT}"
        with TunedDemo(url) as demo:
            shoppers = [Shopper.anonymous(demo) for _ in range(24)] + [Shopper.signed_in(demo, "bob")]
            load = Load([demo], shoppers, workers=6, mix=MIX).start()
            start = time.monotonic()
            time.sleep(1.0)
            down_at = time.monotonic()
            if fault == "kill":
                server.kill()
            else:
                assert server.proc is not None
                server.proc.send_signal(signal.SIGSTOP)
            time.sleep(1.5)
            up_at = time.monotonic()
            if fault == "kill":
                server.restart()  # same port, same directory: the AOF brings the data back
            else:
                assert server.proc is not None
                server.proc.send_signal(signal.SIGCONT)
            recovered = wait_until(lambda: healthy(demo), 10, "the demo never saw Redis come back")
            settled_at = time.monotonic() + 0.5
            time.sleep(1.0)
            outcomes = load.stop()

            report = summary(outcomes) + f"; recovered {recovered:.2f}s after the restart\n" + "\n".join(
                f"  t={sec}s {dict(c)}" for sec, c in per_second(outcomes, start)
            )
            print(f"\n{fault}: {report}")
            assert {o.status for o in outcomes} <= {200, 503}, report  # never a 500, never a fresh session
            assert max(o.seconds for o in outcomes) <= REQUEST_BOUND, report  # nothing hung
            during = [o for o in outcomes if o.started > down_at + 0.1 and o.started + o.seconds < up_at]
            assert during and all(o.status == 503 for o in during), report
            after = [o for o in outcomes if o.started > settled_at]
            assert after and all(o.status == 200 for o in after), report

            for shopper in shoppers:  # the same sessions, intact: every acknowledged addition is there
                status, count = cart_count(demo, shopper)
                assert status == 200
                assert shopper.acked <= count <= shopper.acked + shopper.unsure, (shopper, count)
                with raw_client(demo, shopper.session_id) as client:
                    assert client.get("/api/settings").json()["theme"] in ("light", "dark")
            with raw_client(demo, shoppers[-1].session_id) as client:
                assert client.get("/api/me").json() == {"user": "bob"}
