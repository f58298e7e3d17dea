"""The demo on SQLite, killed with SIGKILL in the middle of writes, several times over.

After each crash the demo is started again on the same file: every session whose
creation was acknowledged is there, every acknowledged cart addition is there
(and no addition was applied twice), and ``PRAGMA integrity_check`` says ``ok``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import httpx
from fault_kit import Load, Shopper, cart_count, summary
from sec_kit import COOKIE, TunedDemo, issued_id

ROUNDS = int(os.environ.get("SERVERSESSION_CRASH_ROUNDS", "3"))
MIX = {"add": 6, "settings": 1, "cart": 1}


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


class Newcomers:
    """A thread that keeps starting sessions and remembers the ones acknowledged (ID, CSRF token)."""

    def __init__(self, demo: TunedDemo) -> None:
        self.demo = demo
        self.acked: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.demo.url, timeout=5) as client:
            while not self._stop.is_set():
                try:
                    response = client.get("/api/session")
                except httpx.HTTPError:
                    continue
                session_id = issued_id(response)
                if response.status_code == 200 and session_id:
                    self.acked.append((session_id, response.json()["csrf_token"]))
                client.cookies.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_sigkill_during_writes_loses_no_acknowledged_session(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    url = f"sqlite:///{path}"
    rng = random.Random(7)
    shoppers: list[Shopper] = []
    created: list[tuple[str, str]] = []
    for round_ in range(ROUNDS + 1):
        demo = TunedDemo(url).start()
        try:
            for shopper in shoppers:  # what the previous process acknowledged survived its death
                status, count = cart_count(demo, shopper)
                assert status == 200 and shopper.acked <= count <= shopper.acked + shopper.unsure, (round_, shopper)
            with httpx.Client(base_url=demo.url, timeout=10) as client:
                for session_id, csrf in created:
                    answer = client.get("/api/session", headers={"Cookie": f"{COOKIE}={session_id}"}).json()
                    assert answer["csrf_token"] == csrf, "an acknowledged session was lost"
            assert integrity(path) == "ok"
            if round_ == ROUNDS:
                break
            if not shoppers:
                shoppers = [Shopper.anonymous(demo) for _ in range(16)] + [Shopper.signed_in(demo, "alice")]
            load = Load([demo], shoppers, workers=6, mix=MIX, timeout=5, seed=round_).start()
            newcomers = Newcomers(demo)
            time.sleep(rng.uniform(0.8, 1.4))
            demo.kill()  # SIGKILL: no shutdown, no flush, mid-transaction
            outcomes = load.stop()
            newcomers.stop()
            created += newcomers.acked
            print(f"\nround {round_}: {summary(outcomes)}; {len(newcomers.acked)} sessions created")
            assert {o.status for o in outcomes} <= {0, 200}, summary(outcomes)
            assert sum(o.status == 200 for o in outcomes) > 100
        finally:
            demo.kill()
    assert integrity(path) == "ok"
    assert sum(s.acked for s in shoppers) > 300 and len(created) > 50
