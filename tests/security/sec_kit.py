"""Helpers shared by the security, fault, fuzz and soak tests (they all drive the demo).

The demo process is started by ``tests/demo/demo_client.py``'s :class:`DemoServer`
and plain clients come from its ``bare``; :class:`TunedDemo` only spells out the
settings these tests turn (absolute timeout, signing key) as the environment
variables the demo reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from demo_client import COOKIE, PASSWORDS, DemoServer, bare, error_of

#: The demo's pre-session CSRF cookie (``__Host-session-csrf``: Secure, like the session cookie).
CSRF_COOKIE = f"{COOKIE}-csrf"
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
#: A client that keeps no cookies: what it sends is exactly what the test says
#: (``raw_client(server, cookie, **headers)``).
raw_client = bare
#: Assert a JSON ``{"error": ...}`` answer with a status; return the message.
json_error = error_of


class TunedDemo(DemoServer):
    """A :class:`DemoServer` with an absolute timeout and/or a signing key (seconds, text).

    ``pid`` is the demo's process (for signals and /proc).
    """

    def __init__(
        self,
        store_url: str,
        *,
        absolute_timeout: float | None = None,
        secret_key: str | None = None,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        env = dict(env or {})
        if absolute_timeout is not None:
            env["SERVERSESSION_ABSOLUTE_TIMEOUT"] = str(absolute_timeout)
        if secret_key:
            env["SERVERSESSION_SECRET_KEY"] = secret_key
        super().__init__(store_url, env=env, **options)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the demo is not running"
        return self.proc.pid


def set_cookies(response: httpx.Response) -> dict[str, str]:
    """The response's ``Set-Cookie`` headers by cookie name (whole header values)."""
    return {value.split("=", 1)[0]: value for value in response.headers.get_list("set-cookie")}


def issued_id(response: httpx.Response) -> str | None:
    """The session ID a response hands out (cookie or ``Session-Id`` header), if any."""
    header = response.headers.get("session-id")
    if header:
        return header
    value = response.cookies.get(COOKIE)
    return value or None


def start_session(server: DemoServer, **headers: str) -> tuple[str, str]:
    """GET /api/session without cookies; return (session ID, CSRF token)."""
    with raw_client(server, **headers) as client:
        response = client.get("/api/session")
    assert response.status_code == 200, response.text
    session_id = issued_id(response)
    assert session_id, response.headers
    return session_id, response.json()["csrf_token"]


def sign_in(server: DemoServer, user: str = "alice", password: str | None = None) -> tuple[str, str]:
    """A fresh session signed in as ``user``; return (session ID, CSRF token) after rotation."""
    session_id, csrf = start_session(server)
    with raw_client(server, session_id, **{"X-CSRF-Token": csrf}) as client:
        credentials = {"username": user, "password": password or PASSWORDS[user]}
        response = client.post("/api/login", json=credentials)
    assert response.status_code == 200, response.text
    new_id = issued_id(response)
    assert new_id and new_id != session_id
    return new_id, response.json()["csrf_token"]


def me_status(server: DemoServer, session_id: str) -> int:
    """Status of GET /api/me with this session ID: 200 signed in, 401 not (or no longer)."""
    with raw_client(server, session_id) as client:
        return client.get("/api/me").status_code


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def store_has(store_url: str, session_id: str, prefix: str = "ss:") -> bool:
    """Whether the store behind a demo holds a live record for this ID (looked up by its hash)."""
    import sqlite3
    import time

    import redis
    import redis.cluster

    from serversession.core.ids import storage_key

    key = storage_key(session_id)
    if store_url.startswith("sqlite:///"):
        with sqlite3.connect(store_url[len("sqlite:///") :]) as conn:
            row = conn.execute(
                "SELECT 1 FROM serversession WHERE key = ? AND expires_at > ? AND moved_to IS NULL", (key, time.time())
            ).fetchone()
        return row is not None
    if store_url.startswith("redis+cluster://"):
        client = redis.cluster.RedisCluster.from_url("redis://" + store_url.split("://", 1)[1])
        try:
            return bool(client.exists(f"{prefix}s:{key}")) and not client.hexists(f"{prefix}s:{key}", "m")
        finally:
            client.close()
    with redis.Redis.from_url(store_url) as r:
        return bool(r.exists(f"{prefix}s:{key}")) and not r.hexists(f"{prefix}s:{key}", "m")


def store_url(kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store URL of ``kind`` (memory, sqlite, redis, redis-cluster); Redis kinds use the shared servers."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('security-' + kind) / 'sessions.sqlite3'}"
    if kind == "redis":
        return str(request.getfixturevalue("redis_server").url)
    if kind == "redis-cluster":
        return str(request.getfixturevalue("redis_cluster").url)
    raise ValueError(kind)
