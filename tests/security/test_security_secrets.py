"""Secrets are looked up by hash and compared in constant time (OWASP: session ID
storage; ASVS V3.2.x / V7.2.x, V6.2.x).

Shown by the code paths, not by timing: the comparisons are spied on and must be
``hmac.compare_digest`` making the decision (a spy that answers "equal" must be
obeyed, so no ``==`` sits in front of it), and a recording store shows that the
session ID itself never reaches a store: only its SHA-256 does, used as a key
(a hash-table or B-tree lookup on a value the attacker cannot choose).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serversession import MemoryStore, SessionConfig, SessionManager
from serversession.core import csrf, ids
from serversession.core.signing import Signer
from serversession.core.transport import IncomingToken
from serversession.integrations.asgi import SessionMiddleware, get_session


class CompareSpy:
    """Stands in for ``hmac.compare_digest``; answers like it unless told to lie."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []
        self.answer: bool | None = None
        self._real = hmac.compare_digest

    def __call__(self, a: Any, b: Any) -> bool:
        self.calls.append((a, b))
        return self._real(a, b) if self.answer is None else self.answer


@pytest.fixture
def compare(monkeypatch: pytest.MonkeyPatch) -> CompareSpy:
    spy = CompareSpy()
    monkeypatch.setattr(hmac, "compare_digest", spy)
    return spy


def test_csrf_tokens_are_compared_by_compare_digest(compare: CompareSpy) -> None:
    manager = SessionManager(MemoryStore(), SessionConfig())
    session = manager.load(IncomingToken(None, via_header=True))
    session.ensure_stored()
    manager.save(session)
    token = session.csrf_token
    assert session.csrf_valid(token) and not session.csrf_valid(token[:-1] + "x")
    assert compare.calls == [(token.encode(), token.encode()), (token.encode(), (token[:-1] + "x").encode())]
    compare.answer = True  # compare_digest alone decides: a lying spy is believed
    assert session.csrf_valid("not the token")
    compare.answer = False
    assert not session.csrf_valid(token)


def test_the_middleware_checks_csrf_through_compare_digest(compare: CompareSpy) -> None:
    async def start(request: Request) -> JSONResponse:
        session = get_session(request)
        session.ensure_stored()
        return JSONResponse({"csrf": session.csrf_token})

    app = Starlette(routes=[Route("/", start, methods=["GET", "POST"])])
    app.add_middleware(SessionMiddleware, store=MemoryStore(), config=SessionConfig(cookie_secure=False))
    with TestClient(app) as client:
        token = client.get("/").json()["csrf"]
        assert client.post("/", headers={"X-CSRF-Token": "x" * len(token)}).status_code == 403
        assert compare.calls[-1] == (token.encode(), b"x" * len(token))
        compare.answer = True
        assert client.post("/", headers={"X-CSRF-Token": "anything"}).status_code == 200


def test_signatures_are_checked_by_compare_digest_under_every_key(compare: CompareSpy) -> None:
    keys = ["k1" * 16, "k2" * 16, "k3" * 16]
    signer = Signer(keys)
    session_id = ids.new_session_id()
    by_oldest = Signer([keys[2]]).sign(session_id)
    for value in (signer.sign(session_id), by_oldest, f"{session_id}.forged", "no-dot", f"{session_id}.é"):
        compare.calls.clear()
        signer.unsign(value)
        if "." in value and value.isascii():
            assert len(compare.calls) == len(keys), value  # every key, whichever matches: no early exit
    assert signer.unsign(by_oldest) == session_id
    compare.answer = True
    assert signer.unsign(f"{session_id}.forged") == session_id  # the decision is compare_digest's


def test_csrf_token_matches_uses_constant_time_for_any_input(compare: CompareSpy) -> None:
    secret = "s" * 43
    for presented in ("", "x", csrf.token_for(secret), "é" * 50, "\x00" * 43):
        compare.calls.clear()
        csrf.token_matches(secret, presented)
        assert len(compare.calls) == (1 if presented else 0)


class RecordingStore(MemoryStore):
    """A memory store that remembers every argument it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name in ("load", "create", "commit", "rotate", "delete", "list_user") and callable(attr):
            calls = super().__getattribute__("calls")

            def recorded(*args: Any, _attr: Callable[..., Any] = attr, _name: str = name) -> Any:
                calls.append((_name, args))
                return _attr(*args)

            return recorded
        return attr


def strings(value: Any) -> Iterator[str]:
    """Every string inside a value (dataclasses, mappings, sequences)."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from strings(getattr(value, field.name))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from strings(item)


def test_the_store_only_ever_sees_the_hash_of_an_id() -> None:
    store = RecordingStore()
    manager = SessionManager(store, SessionConfig())
    issued: list[str] = []

    def request(token: str | None, act: Callable[[Any], None]) -> None:
        session = manager.load(IncomingToken(token, via_header=True))
        act(session)
        result = manager.save(session)
        if result.header_token:
            issued.append(result.header_token)

    request(None, lambda s: s.__setitem__("cart", {"tea": 1}))
    request(issued[-1], lambda s: s.modify("cart", lambda c: {**c, "tea": 2}, {}))
    request(issued[-1], lambda s: (setattr(s, "user", "alice"), s.rotate()))
    request(None, lambda s: (setattr(s, "user", "alice"), s.ensure_stored()))
    manager.list_sessions("alice")
    manager.revoke("alice", ids.public_handle(ids.storage_key(issued[-1])))
    request(issued[0], lambda s: None)  # a rotated-away ID: looked up by hash, refused
    request(issued[1], lambda s: s.destroy())
    assert len(issued) == 3
    keys = {ids.storage_key(i) for i in issued}
    for name, args in store.calls:
        for text in strings(args):
            assert not any(i in text for i in issued), (name, args)
        if name in ("load", "create", "commit", "delete"):
            assert args[0] in keys, (name, args[0])
        if name == "rotate":
            assert {args[0], args[1]} <= keys
    assert {name for name, _ in store.calls} >= {"load", "create", "commit", "rotate", "delete", "list_user"}


def test_the_key_is_sha256_of_the_id() -> None:
    session_id = ids.new_session_id()
    digest = hashlib.sha256(session_id.encode()).digest()
    assert ids.storage_key(session_id) == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "A" * 42, "A" * 44, "A" * 43 + ".sig", "é" * 43, "A" * 200, "=" * 43],
)
def test_malformed_or_forged_tokens_cost_no_store_round_trip(token: str) -> None:
    for config in (SessionConfig(), SessionConfig(secret_keys=["k" * 32])):
        store = RecordingStore()
        session = SessionManager(store, config).load(IncomingToken(token, via_header=True))
        assert session.is_new and store.calls == []
    store = RecordingStore()  # a well-formed unsigned ID where signatures are required: no round trip either
    SessionManager(store, SessionConfig(secret_keys=["k" * 32])).load(IncomingToken(ids.new_session_id(), True))
    assert store.calls == []
