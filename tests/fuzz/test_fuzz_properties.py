"""Property-based tests (hypothesis) of the paths that read what a client sends:
cookie and header parsing, signature checking, CSRF tokens, form and JSON bodies.

Any input gives a clean answer: a 4xx or a fresh, anonymous session, never an
exception or a 5xx. The whole-request properties run in-process (fast, and with
header bytes no HTTP parser would pass) and, fewer of them, over real HTTP
against a demo process. ``SERVERSESSION_FUZZ_EXAMPLES`` scales the example
counts (default 1 = CI's; 20 for a long run by hand).
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator

import pytest
from fuzzkit import Harness
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sec_kit import TunedDemo, issued_id, raw_client

from serversession.core import csrf
from serversession.core.codec import SessionMeta, decode_meta, decode_value, encode_meta, encode_value
from serversession.core.config import SessionConfig
from serversession.core.ids import is_well_formed, new_session_id
from serversession.core.signing import Signer
from serversession.core.transport import AMBIGUOUS, parse_cookie_header, read_token, session_id_from_token
from serversession.integrations.kit import token_from_form

SCALE = int(os.environ.get("SERVERSESSION_FUZZ_EXAMPLES", "1"))
FAST = settings(max_examples=300 * SCALE, deadline=None, database=None)
HTTP = settings(max_examples=60 * SCALE, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip

KEYS = ["newest-key-0123456789abcdef", "older-key-0123456789abcdef"]
SIGNED = SessionConfig(secret_keys=KEYS)
UNSIGNED = SessionConfig()
header_text = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=300)  # latin-1, as ASGI gives it
cookie_pairs = st.lists(
    st.tuples(st.sampled_from(["__Host-session", "__Host-session-csrf", "session", "x", ""]), header_text), max_size=6
)


@FAST
@given(header_text, header_text)
def test_reading_a_token_never_fails(cookie: str, authorization: str) -> None:
    for config in (UNSIGNED, SIGNED):
        token = read_token(config, cookie, authorization)
        session_id = session_id_from_token(config, token.value)
        assert session_id is None or is_well_formed(session_id)


@FAST
@given(cookie_pairs)
def test_cookie_parsing_finds_each_wanted_name_once_or_calls_it_ambiguous(pairs: list[tuple[str, str]]) -> None:
    header = "; ".join(f"{name}={value}" for name, value in pairs)
    wanted = ("__Host-session", "__Host-session-csrf")
    found = parse_cookie_header(header, wanted)
    assert set(found) <= set(wanted)
    if len(header) <= 8192:
        for name in wanted:
            values = [v for n, v in pairs if n == name and ";" not in v]
            if values and all(";" not in v for _, v in pairs):
                expected = AMBIGUOUS if len(values) > 1 else values[0].strip().strip('"')
                assert found.get(name) == expected


@FAST
@given(st.text(max_size=200))
def test_only_a_genuine_signature_passes(value: str) -> None:
    signer = Signer(KEYS)
    session_id = signer.unsign(value)
    if session_id is not None:
        assert value in (signer.sign(session_id), Signer(KEYS[1:]).sign(session_id))
    assert session_id_from_token(SIGNED, value) in (None, session_id)


@FAST
@given(st.binary(min_size=32, max_size=32), st.integers(0, 1), st.text(max_size=3))
def test_signatures_round_trip_and_any_change_breaks_them(raw: bytes, key: int, junk: str) -> None:
    import base64

    session_id = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    signed = Signer(KEYS[key:]).sign(session_id)
    assert session_id_from_token(SIGNED, signed) == session_id
    assume(junk)
    for tampered in (signed + junk, junk + signed, signed[:-1] + junk[0] if signed[-1] != junk[0] else signed + "x"):
        assert session_id_from_token(SIGNED, tampered) is None


@FAST
@given(st.text(min_size=1, max_size=64), st.text(max_size=100))
def test_a_csrf_token_matches_only_itself(secret: str, presented: str) -> None:
    assert csrf.token_matches(secret, presented) == (presented == csrf.token_for(secret))
    assert csrf.token_matches(secret, csrf.token_for(secret))


@FAST
@given(st.binary(max_size=500))
def test_form_bodies_never_fail(body: bytes) -> None:
    token = token_from_form(body)
    assert token is None or isinstance(token, str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FAST
@given(json_values)
def test_session_values_round_trip_canonically(value: object) -> None:
    encoded = encode_value("k", value)
    assert decode_value(encoded) == value
    assert encode_value("k", decode_value(encoded)) == encoded  # canonical: equal values, equal text


@FAST
@given(
    st.floats(0, 4e9), st.floats(0, 4e9), st.none() | st.text(max_size=20), st.text(max_size=50),
    st.text(max_size=20), st.booleans(), st.text(alphabet=string.ascii_letters, max_size=43),
)  # fmt: skip
def test_metadata_round_trips(created: float, seen: float, user: str | None, ua: str, ip: str, persistent: bool,
                              secret: str) -> None:  # fmt: skip
    meta = SessionMeta(created, seen, user or None, ua, ip, persistent, secret)
    decoded = decode_meta(encode_meta(meta))
    assert decoded == meta.with_changes(created_at=round(created, 3), last_seen_at=round(seen, 3))


# -- whole requests, in-process ---------------------------------------------------------------

@pytest.fixture(scope="module")
def harnesses() -> Iterator[dict[bool, Harness]]:
    made = {False: Harness(signed=False), True: Harness(signed=True)}
    yield made
    for harness in made.values():
        harness.close()


@FAST
@given(st.binary(max_size=400), st.booleans())
def test_any_request_bytes_get_a_clean_answer(harnesses: dict[bool, Harness], data: bytes, signed: bool) -> None:
    harnesses[signed].check(data)


# -- over real HTTP against the demo ---------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TunedDemo]:
    path = tmp_path_factory.mktemp("fuzz-http") / "sessions.sqlite3"
    with TunedDemo(f"sqlite:///{path}", secret_key="http-fuzz-key-0123456789abcdef") as demo:
        yield demo


# What h11 lets through in a header value: visible ASCII, space, tab and obs-text.
wire_text = st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00", exclude_categories=["Cc"]),
                    max_size=300)  # fmt: skip


@HTTP
@given(wire_text, wire_text, st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
       st.sampled_from(["/api/session", "/api/me", "/api/cart/items", "/api/login", "/login"]))  # fmt: skip
def test_any_cookie_or_authorization_over_http_gets_a_clean_answer(
    fuzz_demo: TunedDemo, cookie: str, authorization: str, method: str, path: str
) -> None:
    headers = {"Cookie": cookie.strip(), "Authorization": authorization.strip(), "X-CSRF-Token": cookie[:50].strip()}
    with raw_client(fuzz_demo) as client:
        response = client.request(
            method, path, content=cookie.encode("latin-1"),
            headers={k: v.encode("latin-1") for k, v in headers.items() if v},  # raw bytes on the wire
        )  # fmt: skip
    assert response.status_code in (200, 303, 400, 401, 403, 404, 405, 413, 415, 429), response.text
    if path == "/api/session" and response.status_code == 200:
        assert response.json()["authenticated"] is False
        assert issued_id(response) not in (None, cookie, authorization)


def test_a_genuine_id_still_works_after_the_http_fuzzing(fuzz_demo: TunedDemo) -> None:
    with raw_client(fuzz_demo) as client:
        started = client.get("/api/session")
    token = issued_id(started)
    assert token is not None and "." in token and new_session_id() != token
    with raw_client(fuzz_demo, token) as client:
        assert client.get("/api/session").json()["csrf_token"] == started.json()["csrf_token"]
