"""One HTTP request built from arbitrary bytes, run through the real demo app in-process.

Shared by the atheris target (``fuzz_request.py``) and the hypothesis tests. The
bytes choose a method, a route of the demo and which real credentials to attach
(a live session cookie, its CSRF token), and supply raw header values (Cookie,
Authorization, X-CSRF-Token, Content-Type) and a body. The app is the demo's own
Starlette app with the session middleware over a memory store, called as ASGI
with no server in between, so header bytes no HTTP parser would let through
reach the session code too.

Invariant (:meth:`Harness.check`): the answer is a clean status (never 5xx, never
an exception), every ``/api`` error is a JSON ``{"error": ...}``, and a request
that carried no genuine session is never treated as signed in or as owning one.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from serversession import MemoryStore
from serversession.demo.app import create_app

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "G\x00T", "")
PATHS = (
    "/api/session", "/api/login", "/api/logout", "/api/me", "/api/cart", "/api/cart/items",
    "/api/cart/items/tea-sencha", "/api/settings", "/api/sessions", "/api/sessions/revoke-others",
    "/api/sessions/AAAAAAAAAAAAAAAAAAAAAA", "/healthz", "/", "/login", "/logout", "/cart", "/cart/add",
    "/settings", "/sessions", "/sessions/x/end", "/nowhere",
)  # fmt: skip
ALLOWED = frozenset({200, 303, 400, 401, 403, 404, 405, 413, 415, 429})  # 429: a fuzzer guesses IDs
SECRET_KEY = "fuzz-signing-key-0123456789abcdef"
COOKIE = "__Host-session"  # the demo keeps the library's Secure cookie


@dataclass
class Request:
    """A request decoded from bytes; ``real_*`` say which genuine credentials it carries."""

    method: str
    path: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    real_session: bool = False
    real_csrf: bool = False


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name]


class Harness:
    """The demo app over a memory store, plus one genuine anonymous session to mix in."""

    def __init__(self, *, signed: bool = False) -> None:
        self.app = create_app(MemoryStore(), secret_key=SECRET_KEY if signed else None)
        self.loop = asyncio.new_event_loop()
        self.session_token = ""
        self.csrf_token = ""
        self.runs = 0
        self._renew_session()

    def close(self) -> None:
        self.loop.close()

    def _renew_session(self) -> None:
        response = self.call(Request("GET", "/api/session", [], b""))
        assert response.status == 200, response
        cookies = [v.decode("latin-1") for v in response.header(b"set-cookie")]
        self.session_token = next(c.split(";")[0].split("=", 1)[1] for c in cookies if c.startswith(f"{COOKIE}="))
        self.csrf_token = json.loads(response.body)["csrf_token"]

    def decode(self, data: bytes) -> Request:
        """Turn arbitrary bytes into a request (total: every byte string is some request)."""
        head, rest = data[:3].ljust(3, b"\x00"), data[3:]
        method = METHODS[head[0] % len(METHODS)]
        path = PATHS[head[1] % len(PATHS)]
        flags = head[2]
        parts = rest.split(b"\xff", 4) + [b""] * 5
        cookie, authorization, csrf, content_type, body = parts[:5]
        real_session, real_csrf = bool(flags & 1), bool(flags & 2)
        if flags & 4:
            cookie = f"{COOKIE}=".encode() + cookie
        if real_session and not flags & 8:
            cookie = f"{COOKIE}={self.session_token}; ".encode() + cookie
        if real_session and flags & 8:
            authorization = f"Session {self.session_token}".encode()
        if real_csrf:
            csrf = self.csrf_token.encode()
        if flags & 16:
            content_type = b"application/x-www-form-urlencoded"
        elif flags & 32:
            content_type = b"application/json"
        headers = [(b"cookie", cookie)] if cookie or flags & 64 else []
        if authorization or flags & 128:
            headers.append((b"authorization", authorization))
        if csrf:
            headers.append((b"x-csrf-token", csrf))
        if content_type:
            headers.append((b"content-type", content_type))
        headers.append((b"content-length", str(len(body)).encode()))
        return Request(method, path, headers, body, real_session, real_csrf)

    def call(self, request: Request) -> Response:
        """Run one request through the ASGI app; exceptions propagate (they are the bugs)."""
        return self.loop.run_until_complete(self._acall(request))

    async def _acall(self, request: Request) -> Response:
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method, "scheme": "http", "path": request.path,
            "raw_path": request.path.encode(), "query_string": b"", "root_path": "",
            "headers": request.headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
            "state": {},
        }  # fmt: skip
        sent = False
        response = Response()

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response.status = message["status"]
                response.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                response.body += message.get("body", b"")

        await self.app(scope, receive, send)
        return response

    def check(self, data: bytes) -> Response:
        """Decode, run and assert the invariant; raises AssertionError (or the app's exception)."""
        request = self.decode(data)
        response = self.call(request)
        self.runs += 1
        assert response.status in ALLOWED, (request, response)
        api = request.path.startswith("/api/") or request.path == "/healthz"
        if api and response.status >= 400 and request.method != "HEAD":
            body = json.loads(response.body)
            assert isinstance(body, dict) and isinstance(body.get("error"), str), response
        if not request.real_session and request.method != "HEAD" and response.status == 200:
            if request.path == "/api/session":
                assert json.loads(response.body)["authenticated"] is False, (request, response)
            assert request.path not in ("/api/me", "/api/sessions"), (request, response)  # 401 without a session
        if (request.real_session and any(
            v.startswith(f"{COOKIE}=".encode()) for v in response.header(b"set-cookie")
        )) or (request.real_session and response.header(b"session-id")):
            self._renew_session()  # the genuine session was rotated or ended: get another one
        return response
