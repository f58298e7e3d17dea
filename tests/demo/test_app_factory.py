"""The app factory and server helpers, in process: what a black box can't reach."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from serversession import ConfigurationError
from serversession.demo import api
from serversession.demo.app import app_from_env, create_app
from serversession.demo.server import address, cookie_note, masked

ROOT = Path(__file__).resolve().parents[2]


async def boom(request: Request) -> Response:
    raise RuntimeError("a bug with a secret in its message")


@pytest.mark.parametrize("path", ["/api/boom", "/boom"])
def test_a_bug_answers_500_json_without_traceback(path: str) -> None:
    app = create_app("memory://")
    app.router.routes.append(Route(path, boom))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(path)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}


def test_settings_come_from_the_environment() -> None:
    app = app_from_env({"SERVERSESSION_STORE": "memory://", "SERVERSESSION_IDLE_TIMEOUT": "60",
                        "SERVERSESSION_ABSOLUTE_TIMEOUT": "120", "SERVERSESSION_SECRET_KEY": "k" * 32})
    config = app.state.demo.manager.config
    assert (config.idle_timeout, config.absolute_timeout, config.cookie_secure) == (60.0, 120.0, True)
    assert config.cookie_name == "__Host-session" and config.signer is not None


def test_the_cookie_is_secure_unless_asked_otherwise() -> None:
    assert create_app("memory://").state.demo.manager.config.cookie_name == "__Host-session"
    insecure = create_app("memory://", cookie_secure=False).state.demo.manager.config
    assert (insecure.cookie_secure, insecure.cookie_name) == (False, "session")
    for value, secure in [("", True), ("0", True), ("no", True), ("1", False), ("TRUE", False), (" yes ", False)]:
        app = app_from_env({"SERVERSESSION_STORE": "memory://", "SERVERSESSION_INSECURE_COOKIE": value})
        assert app.state.demo.manager.config.cookie_secure is secure, value


@pytest.mark.parametrize(
    "env",
    [
        {"SERVERSESSION_STORE": "memory://", "SERVERSESSION_IDLE_TIMEOUT": "soon"},
        {"SERVERSESSION_STORE": "nosuch://x"},
        {"SERVERSESSION_IDLE_TIMEOUT": "100", "SERVERSESSION_ABSOLUTE_TIMEOUT": "10"},
        {"SERVERSESSION_SECRET_KEY": "too-short"},
        {"SERVERSESSION_INSECURE_COOKIE": "maybe"},
    ],
)
def test_bad_settings_fail_at_start(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        app_from_env({"SERVERSESSION_STORE": "memory://", **env})


def test_the_address_to_open_is_localhost_for_loopback() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "LOCALHOST"):
        assert address(host, 8000) == "http://localhost:8000"
        assert cookie_note(host, insecure_cookie=False) is None
    assert address("0.0.0.0", 8000) == "http://0.0.0.0:8000"
    assert address("192.0.2.7", 80) == "http://192.0.2.7:80"
    assert address("2001:db8::1", 8000) == "http://[2001:db8::1]:8000"
    note = cookie_note("192.0.2.7", insecure_cookie=False)
    assert note and "--insecure-cookie" in note  # sign-in would not stick there: say why and what to do
    assert cookie_note("192.0.2.7", insecure_cookie=True) is None


def test_the_repo_copy_of_the_contract_lists_the_served_endpoints() -> None:
    """docs/demo-api.md (linked from the README) names every API route the demo serves."""
    contract = (ROOT / "docs" / "demo-api.md").read_text()
    assert "[`docs/demo-api.md`](docs/demo-api.md)" in (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| `(GET|POST|PUT|DELETE) (/[^` ]+)`", contract, re.M))
    served = {(method, route.path) for route in api.routes for method in route.methods or () if method != "HEAD"}
    served = {(m, re.sub(r"\{handle\}", "{id}", p)) for m, p in served}
    assert served <= listed, served - listed
    assert ("GET", "/api/products") in served


def test_printed_store_urls_hide_passwords() -> None:
    assert masked("redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert masked("postgresql://app:hunter2@db/sessions") == "postgresql://app:***@db/sessions"
    assert masked("sqlite:///x.sqlite3") == "sqlite:///x.sqlite3"
