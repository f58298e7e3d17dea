"""Run the test apps under real servers and talk to them like a browser would.

:func:`serve` starts ``apps/serve.py`` in a subprocess (uvicorn for ASGI,
waitress for WSGI) and yields its base URL; :class:`Browser` is an httpx client
with a cookie jar that also carries the CSRF token the way each integration
wants it (``X-CSRF-Token`` for ours, ``X-CSRFToken`` for Django's).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

APPS = Path(__file__).parent / "apps"
DJANGO_PROJECT = APPS / "djproject"
#: Every integration the behaviour suite knows, with the server that runs its app.
SERVERS = {"asgi": "uvicorn", "wsgi": "waitress", "flask": "waitress", "django": "waitress",
           "litestar": "uvicorn", "quart": "uvicorn", "aiohttp": "aiohttp"}  # fmt: skip
#: The kinds under test: those whose ``apps/behaviour_<kind>.py`` exists, so an
#: integration joins the suite by adding its app.
KINDS = tuple(kind for kind in SERVERS if (APPS / f"behaviour_{kind}.py").exists())
START_TIMEOUT = 30.0
_NO_VALUE = object()
_OPEN: list[Browser] = []


@contextlib.contextmanager
def serve(target: str, workdir: Path, *, server: str = "waitress", env: dict[str, str] | None = None,
          cwd: Path = APPS) -> Iterator[str]:  # fmt: skip
    """Serve ``module:attr`` in a subprocess; yield ``http://127.0.0.1:PORT``; stop it after."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    log_path = workdir / "server.log"
    paths = [str(APPS), str(DJANGO_PROJECT), os.environ.get("PYTHONPATH", "")]
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(APPS / "serve.py"), server, target, str(port_file)],
            cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = _wait_until_serving(proc, port_file, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_serving(proc: subprocess.Popen[bytes], port_file: Path, log_path: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if port_file.exists():
            url = f"http://127.0.0.1:{port_file.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url + "/", timeout=2)
                return url
        time.sleep(0.05)
    raise RuntimeError(f"test server did not start (exit code {proc.poll()}):\n{log_path.read_text()[-3000:]}")


@dataclass
class LiveApp:
    """One running behaviour-suite app."""

    kind: str
    url: str

    @property
    def cookie_name(self) -> str:
        return "sessionid" if self.kind == "django" else "session"

    @property
    def csrf_header(self) -> str:
        return "X-CSRFToken" if self.kind == "django" else "X-CSRF-Token"

    def browser(self, session_id: str | None = None) -> Browser:
        """A fresh client; with ``session_id``, one that replays that session cookie."""
        browser = Browser(self)
        if session_id is not None:
            browser.set_session_cookie(session_id)
        return browser


class Browser:
    """An httpx client with a cookie jar and the app's CSRF token at hand."""

    def __init__(self, app: LiveApp) -> None:
        self.app = app
        self.http = httpx.Client(base_url=app.url, timeout=15)
        self.csrf: str | None = None
        _OPEN.append(self)

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.get(path, headers=headers)

    def value(self, key: str) -> Any:
        response = self.get(f"/get/{key}")
        assert response.status_code == 200, response.text
        return response.json()["value"]

    def fetch_csrf(self) -> str:
        response = self.get("/csrf")
        assert response.status_code == 200, response.text
        self.csrf = str(response.json()["csrf"])
        return self.csrf

    def post(self, path: str, value: Any = _NO_VALUE, *, csrf: str | bool = True,
             headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
        """POST (JSON ``value`` if given) with the CSRF token; ``csrf=False`` sends none.

        ``headers`` are added (and win over the JSON ``Content-Type``).
        """
        extra, headers = headers or {}, {}
        if csrf is True:
            headers[self.app.csrf_header] = self.csrf or self.fetch_csrf()
        elif csrf:
            headers[self.app.csrf_header] = str(csrf)
        content = None if value is _NO_VALUE else json.dumps(value).encode()
        sent = {**headers, "Content-Type": "application/json", **extra}
        response = self.http.post(path, content=content, headers=sent)
        if response.status_code == 200:
            self.csrf = response.json().get("csrf")
        return response

    @property
    def session_id(self) -> str | None:
        return self.http.cookies.get(self.app.cookie_name)

    def set_session_cookie(self, value: str) -> None:
        self.http.cookies.set(self.app.cookie_name, value, domain="127.0.0.1")


def session_cookie(response: httpx.Response, name: str) -> str | None:
    """The ``Set-Cookie`` value a response sets for cookie ``name``, if any."""
    for header in response.headers.get_list("set-cookie"):
        if header.split("=", 1)[0].strip() == name:
            return header
    return None


def close_browsers() -> None:
    """Close every :class:`Browser` opened so far (called after each test)."""
    while _OPEN:
        _OPEN.pop().close()
