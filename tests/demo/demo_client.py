"""Drive the demo shop as a black box: a real server process and small HTTP clients.

:class:`DemoServer` starts ``python -m serversession demo`` on a free port (the
way a person or a benchmark starts it), waits until ``/healthz`` answers, and
stops it with SIGTERM, checking that it exits cleanly. :class:`ApiClient` is an
httpx client that keeps the session cookie and the CSRF token.

The demo's cookie is ``__Host-session`` with ``Secure``, also over plain HTTP (as
browsers allow for localhost). Python's cookie jars never send a Secure cookie
over ``http://``, not even to 127.0.0.1, so the clients here that keep cookies
use :class:`LoopbackJar`, which treats loopback as secure the way browsers do;
the others send the ``Cookie`` header themselves.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import Cookie, CookieJar, DefaultCookiePolicy
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from servers import HOST, free_port

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
#: The demo's session cookie (``session`` when started with ``insecure_cookie=True``).
COOKIE = "__Host-session"
PASSWORDS = {"alice": "wonderland", "bob": "builder"}


def demo_command(
    port: int,
    store_url: str,
    *,
    idle_timeout: float | None = None,
    workers: int | None = None,
    insecure_cookie: bool = False,
    flags: tuple[str, ...] = (),
) -> list[str]:
    """The one place that knows how to start the demo (switch here if the CLI changes)."""
    argv = [sys.executable, "-m", "serversession", "demo", "--host", HOST, "--port", str(port), "--store", store_url]
    if idle_timeout is not None:
        argv += ["--idle-timeout", str(idle_timeout)]
    if workers is not None:
        argv += ["--workers", str(workers)]
    if insecure_cookie:
        argv.append("--insecure-cookie")
    return argv + list(flags)


class DemoServer:
    """One demo process; ``with DemoServer(url) as demo:`` starts it and stops it.

    Output goes to a log file (a pipe nobody reads could fill up and stall the
    server); :meth:`log` returns it for assertions and failure messages.
    """

    def __init__(
        self, store_url: str, *, idle_timeout: float | None = None, workers: int | None = None,
        env: dict[str, str] | None = None, insecure_cookie: bool = False, flags: tuple[str, ...] = (),
    ) -> None:
        self.flags = flags  # more command-line flags (``("--max-sessions", "2")``)
        self.store_url = store_url
        self.extra_env = env or {}
        self.idle_timeout = idle_timeout
        self.workers = workers
        self.insecure_cookie = insecure_cookie
        self.dir = Path(tempfile.mkdtemp(prefix="ss-demo-"))
        self.log_path = self.dir / "demo.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self._final_log = ""

    @property
    def url(self) -> str:
        """Where the tests' HTTP clients connect (the loopback address it listens on)."""
        return f"http://{HOST}:{self.port}"

    @property
    def localhost_url(self) -> str:
        """The address the demo tells a person to open (``localhost``: a secure origin to browsers)."""
        return f"http://localhost:{self.port}"

    @property
    def banner(self) -> str:
        return f"serversession demo serving on {self.localhost_url} (store: {self.store_url})"

    @property
    def db_path(self) -> Path:
        """The SQLite file of a ``sqlite:///`` store, to count its rows."""
        assert self.store_url.startswith("sqlite:///"), self.store_url
        return Path(self.store_url[len("sqlite:///") :])

    def log(self) -> str:
        """Everything the demo printed (kept after exit, when its directory is gone)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return self._final_log

    def start(self) -> DemoServer:
        """Start on a free port (re-picked if another process took it) and wait for /healthz."""
        for attempt in range(3):
            self.port = free_port()
            if self._start_once():
                return self
            if attempt == 2:
                break
        raise RuntimeError(f"the demo did not start on {self.url}:\n{self.log()[-3000:]}")

    def _start_once(self) -> bool:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVERSESSION_")} | self.extra_env
        argv = demo_command(
            self.port, self.store_url, idle_timeout=self.idle_timeout, workers=self.workers,
            insecure_cookie=self.insecure_cookie, flags=self.flags,
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return True
            time.sleep(0.05)
        self.kill()
        return False

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and wait; return the exit status (0 means a clean stop)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return self.returncode if self.returncode is not None else 0
        proc.send_signal(sig)
        try:
            self.returncode = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the demo ignored {sig.name} for {STOP_TIMEOUT}s:\n{self.log()[-3000:]}") from None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL, for cleanup after a failure."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            code = self.stop()
            if exc_type is None and code != 0:
                raise AssertionError(f"the demo exited with {code} on SIGTERM:\n{self.log()[-3000:]}")
        finally:
            self._final_log = self.log()
            shutil.rmtree(self.dir, ignore_errors=True)


class ApiClient:
    """A JSON API client with a cookie jar that adds ``X-CSRF-Token`` to unsafe requests."""

    def __init__(self, server: DemoServer, *, user_agent: str | None = None) -> None:
        headers = {"User-Agent": user_agent} if user_agent else {}
        self.http = browser_client(server, headers=headers)
        self.csrf: str | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cookie(self) -> str | None:
        """The session cookie's value in the jar (None when there is none)."""
        return self.http.cookies.get(COOKIE)

    def start(self) -> dict[str, Any]:
        """GET /api/session: start (or describe) the session and remember its CSRF token."""
        response = self.http.get("/api/session")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        self.csrf = body["csrf_token"]
        return body

    def login(self, user: str, password: str | None = None) -> httpx.Response:
        """POST /api/login; on success the new CSRF token replaces the old one."""
        response = self.post("/api/login", json={"username": user, "password": password or PASSWORDS[user]})
        if response.status_code == 200:
            self.csrf = response.json()["csrf_token"]
        return response

    def signed_in(self, user: str) -> ApiClient:
        """Start a session and sign in as ``user``; return self."""
        self.start()
        response = self.login(user)
        assert response.status_code == 200, response.text
        return self

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self._unsafe("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self._unsafe("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self._unsafe("DELETE", path, **kw)

    def _unsafe(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}) or {})
        if self.csrf is not None:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return self.http.request(method, path, headers=headers, **kw)


def form_token(html: str) -> str:
    """The ``csrf_token`` hidden field of a rendered page."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf_token field in the page"
    return match.group(1)


def error_of(response: httpx.Response, status: int) -> str:
    """Assert a JSON error answer with ``status``; return its message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return str(body["error"])


class LoopbackJar(CookieJar):
    """A cookie jar that sends a ``Secure`` cookie set by a loopback host back to it over plain HTTP.

    Browsers count ``http://localhost`` and ``http://127.0.0.1`` as secure origins
    and send the demo's Secure cookie there; :class:`http.cookiejar.DefaultCookiePolicy`
    sends Secure cookies over https and wss only. A policy that said otherwise
    would be lost: httpx copies the client's cookies into a fresh default jar for
    every request. So the cookies a loopback host sets over ``http://`` are kept
    with ``secure`` cleared (they stay bound to that host like any host-only
    cookie); the ``Set-Cookie`` headers themselves are what the tests check.
    """

    def make_cookies(self, response: Any, request: urllib.request.Request) -> list[Cookie]:
        cookies = super().make_cookies(response, request)
        if request.type == "http" and is_loopback(urlsplit(request.get_full_url()).hostname):
            for cookie in cookies:
                cookie.secure = False
        return cookies


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def browser_client(server: DemoServer, **kw: Any) -> httpx.Client:
    """An httpx client that keeps and sends the demo's cookies as a browser would (see
    :class:`LoopbackJar`); keyword arguments go to :class:`httpx.Client`."""
    kw.setdefault("timeout", 15)
    return httpx.Client(base_url=server.url, cookies=LoopbackJar(), **kw)


class _KeepNoCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: Cookie, request: urllib.request.Request) -> bool:
        return False


def bare(server: DemoServer, cookie: str | None = None, **headers: str) -> httpx.Client:
    """A client whose jar keeps nothing: the session cookie, if any, is sent explicitly every time."""
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    jar = CookieJar(policy=_KeepNoCookies())
    return httpx.Client(base_url=server.url, timeout=15, headers=headers, cookies=jar)


def stored_rows(path: Path) -> int:
    """Live sessions in a demo's SQLite file (rotation markers excluded)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM serversession WHERE moved_to IS NULL AND expires_at > ?", (time.time(),)
        ).fetchone()
    return int(count)
