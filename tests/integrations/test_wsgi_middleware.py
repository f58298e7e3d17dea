"""WSGI specifics, in process: defaults, form CSRF, lazy start_response, failures, one read, no thread hop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from flaky_store import FlakyStore
from werkzeug.test import Client

from serversession import ConcurrentUpdateError, MemoryStore, SessionConfig, SessionEndedError, StoreUnavailableError
from serversession.integrations.wsgi import SessionMiddleware, get_session

StartResponse = Callable[..., Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """``/set?v=..`` stores v; ``/form`` stores the posted note; ``/read`` shows value and token."""
    session = get_session(environ)
    path = environ["PATH_INFO"]
    if path == "/set":
        session["value"] = environ["QUERY_STRING"].partition("=")[2]
    elif path == "/form":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        session["note"] = environ["wsgi.input"].read(length).decode()
    body = f"{session.get('value')}|{session.csrf_token if path == '/read' else ''}".encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


def lazy_app(environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """A generator app: start_response runs only when the server asks for the first chunk."""
    get_session(environ)["lazy"] = True
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"one "
    yield b"two"


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


def client(store: FlakyStore, wsgi_app: Any = app, **config: Any) -> Client:
    return Client(SessionMiddleware(wsgi_app, store, SessionConfig(**{"cookie_secure": False, **config})))


def token(c: Client) -> str:
    return c.get("/read").text.split("|")[1]


def test_default_cookie_is_host_prefixed_secure_httponly_lax() -> None:
    c = Client(SessionMiddleware(app, MemoryStore()))
    response = c.post("/set?v=1", headers={"X-CSRF-Token": token(c)})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-session=")
    assert cookie.endswith("; Path=/; HttpOnly; Secure; SameSite=Lax")
    assert response.headers["Cache-Control"] == "no-store"


def test_one_store_read_per_request_in_the_request_thread(store: FlakyStore) -> None:
    c = client(store)
    c.post("/set?v=1", headers={"X-CSRF-Token": token(c)})
    store.loads = 0
    for _ in range(3):
        assert c.get("/read").text.startswith("1|")
    assert store.loads == 3
    assert store.threads == {threading.get_ident()}  # no thread hop, no event loop


def test_form_token_is_read_and_the_body_handed_on(store: FlakyStore) -> None:
    c = client(store)
    csrf = token(c)
    response = c.post("/form", data={"csrf_token": csrf, "x": "1"})
    assert response.status_code == 200
    assert c.post("/form", data={"csrf_token": "bad"}).status_code == 403


def test_missing_token_is_403_json_and_huge_forms_413(store: FlakyStore) -> None:
    c = client(store)
    response = c.post("/set?v=2")
    assert response.status_code == 403 and response.json["error"].startswith("CSRF token missing: send it in")
    huge = c.post("/form", data=b"x=" + b"a" * (1024 * 1024 + 10),
                  content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert huge.status_code == 413


def test_exempt_paths_and_header_transport(store: FlakyStore) -> None:
    c = client(store, csrf_exempt_paths=("/set",))
    response = c.post("/set?v=api")
    session_id = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    api = client(store)
    answer = api.get("/read", headers={"Authorization": f"Session {session_id}"})
    assert answer.text.startswith("api|")


def test_a_generator_app_gets_its_cookie_and_body(store: FlakyStore) -> None:
    response = client(store, lazy_app).get("/")
    assert response.text == "one two" and "Set-Cookie" in response.headers


def test_store_failure_on_load_is_503_not_a_fresh_session(store: FlakyStore) -> None:
    c = client(store)
    c.post("/set?v=1", headers={"X-CSRF-Token": token(c)})
    store.fail.add("load")
    response = c.get("/read")
    assert response.status_code == 503 and response.json == {"error": "session store unavailable, please retry"}
    assert response.headers["Retry-After"] == "1" and "Set-Cookie" not in response.headers
    store.fail.clear()
    assert c.get("/read").text.startswith("1|")


def test_store_failure_on_save_replaces_the_response(store: FlakyStore) -> None:
    store.fail.add("create")
    for wsgi_app in (app, lazy_app):
        response = client(store, wsgi_app).get("/set?v=1")
        assert response.status_code == 503 and response.json == {"error": "session store unavailable, please retry"}


def test_client_ip_believes_forwarded_for_only_from_trusted_proxies(store: FlakyStore) -> None:
    for trusted, expected in (((), "10.0.0.1"), (("10.0.0.0/8",), "203.0.113.7")):
        c = client(store, trusted_proxies=trusted, csrf=False)
        c.post("/set?v=1", headers={"X-Forwarded-For": "203.0.113.7"}, environ_base={"REMOTE_ADDR": "10.0.0.1"})
        assert list(store.scan())[-1].meta.ip == expected


@pytest.mark.parametrize(
    ("error", "status"),
    [(ConcurrentUpdateError("lost"), "409"), (SessionEndedError("gone"), "409"), (StoreUnavailableError("x"), "503")],
)
def test_a_session_error_escaping_the_app_is_a_json_error(store: FlakyStore, error: Exception, status: str) -> None:
    def failing_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raise error

    response = client(store, failing_app).get("/")
    assert response.status.startswith(status) and b"error" in response.data


def test_a_session_error_raised_by_a_generator_app_before_it_starts_is_503(store: FlakyStore) -> None:
    """A generator app runs only when iterated: an outage in its body, before it
    called start_response, must still be a clean 503, not the server's 500."""

    def lazy_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        raise StoreUnavailableError("down while the view ran")
        yield b""  # pragma: no cover - makes this a generator

    response = client(store, lazy_app).get("/")
    assert response.status_code == 503 and b"error" in response.data
