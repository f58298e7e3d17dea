"""A bounded soak: many sessions, mixed traffic, the demo on Redis; error rate, p99 latency
and the app's memory must stay flat.

Length: ``SERVERSESSION_SOAK_SECONDS`` (default 30, CI's). A long run by hand::

    SERVERSESSION_SOAK_SECONDS=600 SERVERSESSION_SOAK_REPORT=soak.json \\
        .venv/bin/python -m pytest tests/soak -s -p no:cacheprovider

``VIRTUAL_USERS`` asyncio tasks each own a slice of ``SESSIONS`` sessions and keep
sending a weighted mix of requests: read the cart and the session, add to and
remove from the cart, change settings, list and read the account, start new
sessions (churn), sign in and out. Every answer is checked against what that
user knows (a user owns its sessions, so any other status is an error).
Figures are taken per window of a sixth of the run; the first window is warm-up.
Flat means: no errors at all; every later window's p99 within 2.5x (+50 ms) of
the first measured window's; throughput in the last window at least 40% of the
early windows'; the RSS peak of the last two windows within 10% (+8 MiB) of the
peak of the first two after warm-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from demo_client import COOKIE, PASSWORDS
from sec_kit import TunedDemo, percentile, rss_bytes

from servers import RedisServer

SECONDS = float(os.environ.get("SERVERSESSION_SOAK_SECONDS", "30"))
REPORT = os.environ.get("SERVERSESSION_SOAK_REPORT")
VIRTUAL_USERS = 16
SESSIONS = 480
WINDOWS = 6
MIX = {
    "cart": 30, "session": 10, "add": 22, "remove": 5, "settings": 10,
    "me": 6, "sessions": 5, "churn": 8, "login": 1, "logout": 1,
}  # fmt: skip
SKUS = ["tea-sencha", "mug-classic", "cookie-box"]
#: Signed-in sessions per virtual user at most: keeps alice's and bob's session lists (and so the cost of
#: listing them) the same size all run long, so the traffic is stationary after warm-up.
MAX_SIGNED_IN = 2


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def cookie(self, name: str) -> str:
        for key, value in self.headers:
            if key == "set-cookie" and value.startswith(f"{name}="):
                return value.split(";", 1)[0].split("=", 1)[1]
        raise KeyError(name)


class Connection:
    """A minimal HTTP/1.1 keep-alive client on one socket.

    The load generator shares two cores with the demo and Redis; httpx's async
    pool spends more CPU per request than the demo does, so its queueing would
    dominate the latencies measured. This client costs a few microseconds.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> Reply:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(data)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
        status_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        parsed = [(k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in header_lines)]
        length = int(next((v for k, v in parsed if k == "content-length"), "0"))
        payload = await asyncio.wait_for(self.reader.readexactly(length), 30)
        if any(k == "connection" and v.lower() == "close" for k, v in parsed):
            await self.close()
        return Reply(int(status_line.split()[1]), parsed, payload)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class Owned:
    session_id: str
    csrf: str
    user: str | None = None
    cart: Counter[str] = field(default_factory=Counter)


@dataclass
class Sample:
    at: float
    op: str
    seconds: float
    ok: bool
    detail: str = ""


class VirtualUser:
    def __init__(self, http: Connection, rng: random.Random) -> None:
        self.http = http
        self.rng = rng
        self.sessions: list[Owned] = []

    async def new_session(self) -> Owned:
        response = await self.http.request("GET", "/api/session", {})
        assert response.status == 200, response.text
        return Owned(response.cookie(COOKIE), response.json()["csrf_token"])

    def headers(self, s: Owned) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={s.session_id}", "X-CSRF-Token": s.csrf}

    async def step(self, op: str) -> tuple[bool, str]:
        """One request; (as expected?, detail)."""
        i = self.rng.randrange(len(self.sessions))
        s = self.sessions[i]
        h = self.headers(s)
        if op == "cart":
            r = await self.http.request("GET", "/api/cart", h)
            return r.status == 200 and r.json()["items"] == dict(s.cart), r.text
        if op == "session":
            r = await self.http.request("GET", "/api/session", h)
            return r.status == 200 and r.json()["csrf_token"] == s.csrf, r.text
        if op == "add":
            sku = self.rng.choice(SKUS)
            if s.cart[sku] >= 900:
                return True, ""
            r = await self.http.request("POST", "/api/cart/items", h, {"sku": sku, "qty": 1})
            s.cart[sku] += r.status == 200
            return r.status == 200 and r.json()["items"] == dict(s.cart), r.text
        if op == "remove":
            sku = self.rng.choice(SKUS)
            r = await self.http.request("DELETE", f"/api/cart/items/{sku}", h)
            if r.status == 200:
                s.cart.pop(sku, None)
            return r.status == 200 and r.json()["items"] == dict(s.cart), r.text
        if op == "settings":
            r = await self.http.request("PUT", "/api/settings", h, {"theme": self.rng.choice(["light", "dark"])})
            return r.status == 200, r.text
        if op in ("me", "sessions"):
            r = await self.http.request("GET", f"/api/{op}", h)
            return r.status == (200 if s.user else 401), r.text
        if op == "churn":  # a visitor leaves (signing out first, so users' session lists stay bounded)
            ok, detail = True, ""
            if s.user is not None:
                r = await self.http.request("POST", "/api/logout", h)
                ok, detail = r.status == 200, r.text
            self.sessions[i] = await self.new_session()
            return ok, detail
        if op == "login" and s.user is None and sum(o.user is not None for o in self.sessions) < MAX_SIGNED_IN:
            user = self.rng.choice(list(PASSWORDS))
            r = await self.http.request("POST", "/api/login", h, {"username": user, "password": PASSWORDS[user]})
            if r.status == 200:
                self.sessions[i] = Owned(r.cookie(COOKIE), r.json()["csrf_token"], user, s.cart)
            return r.status == 200, r.text
        if op == "logout" and s.user is not None:
            r = await self.http.request("POST", "/api/logout", h)
            self.sessions[i] = await self.new_session()
            return r.status == 200, r.text
        return True, ""


async def warm_up(host: str, port: int, parallel: int = 8) -> None:
    """Sign in and out on ``parallel`` connections at once, twice: every worker thread of the
    demo then has run scrypt (16 MiB each), so that one-time growth happens before measuring."""
    async def cycle(conn: Connection) -> None:
        user = VirtualUser(conn, random.Random(0))
        s = await user.new_session()
        r = await conn.request("POST", "/api/login", user.headers(s), {"username": "bob", "password": "builder"})
        assert r.status == 200, r.text
        s = Owned(r.cookie(COOKIE), r.json()["csrf_token"], "bob")
        assert (await conn.request("POST", "/api/logout", user.headers(s))).status == 200

    conns = [Connection(host, port) for _ in range(parallel)]
    try:
        for _ in range(2):
            await asyncio.gather(*(cycle(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()


async def soak(demo: TunedDemo, seconds: float) -> tuple[list[Sample], list[tuple[float, int]], float]:
    host, port = demo.url.split("//")[1].split(":")
    await warm_up(host, int(port))
    users = [VirtualUser(Connection(host, int(port)), random.Random(n)) for n in range(VIRTUAL_USERS)]
    try:
        async def populate(user: VirtualUser) -> None:  # one connection each: its requests go one at a time
            user.sessions = [await user.new_session() for _ in range(SESSIONS // VIRTUAL_USERS)]

        await asyncio.gather(*(populate(u) for u in users))
        samples: list[Sample] = []
        rss: list[tuple[float, int]] = []
        start = time.monotonic()
        deadline = start + seconds
        ops, weights = zip(*MIX.items(), strict=True)

        async def run(user: VirtualUser) -> None:
            while time.monotonic() < deadline:
                op = user.rng.choices(ops, weights)[0]
                began = time.monotonic()
                try:
                    ok, detail = await user.step(op)
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, KeyError, ValueError,
                        AssertionError) as exc:  # fmt: skip
                    ok, detail = False, repr(exc)
                samples.append(Sample(began - start, op, time.monotonic() - began, ok, "" if ok else detail[:200]))

        async def sample_memory() -> None:
            while time.monotonic() < deadline:
                rss.append((time.monotonic() - start, rss_bytes(demo.pid)))
                await asyncio.sleep(0.5)

        await asyncio.gather(sample_memory(), *(run(u) for u in users))
        return samples, rss, time.monotonic() - start
    finally:
        for user in users:
            await user.http.close()


def windows(samples: list[Sample], rss: list[tuple[float, int]], seconds: float) -> Iterator[dict[str, Any]]:
    width = seconds / WINDOWS
    for n in range(WINDOWS):
        lo, hi = n * width, (n + 1) * width
        inside = [s for s in samples if lo <= s.at < hi]
        memory = [b for t, b in rss if lo <= t < hi] or [0]
        yield {
            "window": f"{lo:.0f}-{hi:.0f}s",
            "requests": len(inside),
            "rps": round(len(inside) / width),
            "errors": sum(not s.ok for s in inside),
            "p50_ms": round(percentile([s.seconds for s in inside], 50) * 1000, 1),
            "p99_ms": round(percentile([s.seconds for s in inside], 99) * 1000, 1),
            "rss_mib": round(max(memory) / 2**20, 1),
        }


@pytest.fixture
def soak_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def test_soak(soak_redis: RedisServer) -> None:
    with TunedDemo(soak_redis.url) as demo:
        samples, rss, elapsed = asyncio.run(soak(demo, SECONDS))
        with redis.Redis.from_url(soak_redis.url) as r:
            keys, used = r.dbsize(), r.info("memory")["used_memory"]
    table = list(windows(samples, rss, elapsed))
    errors = [s for s in samples if not s.ok]
    first, last = table[1], table[-1]  # table[0] is warm-up
    after_warmup = [b for t, b in rss if t >= elapsed / WINDOWS]
    # Growth: the last two windows' peak against the first two measured windows' peak. A plateau (scrypt's
    # 16 MiB buffers, pools filling up) reaches its level early; a leak keeps climbing window after window.
    early = [b for t, b in rss if elapsed / WINDOWS <= t < 3 * elapsed / WINDOWS]
    late = [b for t, b in rss if t >= (WINDOWS - 2) * elapsed / WINDOWS]
    growth = max(late) - max(early)
    result = {
        "seconds": round(elapsed, 1), "requests": len(samples), "errors": len(errors),
        "rps": round(len(samples) / elapsed), "p99_ms": round(percentile([s.seconds for s in samples], 99) * 1000, 1),
        "rss_start_mib": round(after_warmup[0] / 2**20, 1),
        "rss_growth_mib": round(growth / 2**20, 2), "redis_keys": keys, "redis_used_mib": round(used / 2**20, 1),
        "ops": dict(Counter(s.op for s in samples)), "windows": table,
    }  # fmt: skip
    lines = [f"{w['window']:>10} {w['requests']:>7} req {w['rps']:>5}/s  err {w['errors']}  "
             f"p50 {w['p50_ms']:>6} ms  p99 {w['p99_ms']:>6} ms  rss {w['rss_mib']} MiB" for w in table]  # fmt: skip
    print(f"\nsoak {json.dumps({k: v for k, v in result.items() if k not in ('windows', 'ops')})}\n" + "\n".join(lines))
    if REPORT:
        Path(REPORT).write_text(json.dumps(result, indent=2))

    assert not errors, [(e.op, e.detail) for e in errors[:5]]
    assert len(samples) > 200 * SECONDS  # the load really ran
    # Loose enough for a shared 2-core machine, tight enough for a trend: a leak or an O(n) path shows
    # as a p99 or RSS that climbs window after window, or throughput that sinks.
    for window in table[2:]:
        assert window["p99_ms"] <= 2.5 * first["p99_ms"] + 50, table
    assert growth <= 0.10 * max(early) + 8 * 2**20, table
    assert last["rps"] >= 0.4 * max(w["rps"] for w in table[1:3]), table
