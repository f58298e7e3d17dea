"""The request guard's decisions, with no server: cross-site, JSON-only, throttling, CSRF, answers."""

from __future__ import annotations

import json
import secrets

import pytest

from serversession import ConfigurationError, SessionConfig
from serversession.core.events import EventKind
from serversession.core.guard import RequestFacts, RequestGuard, refusal_for_error
from serversession.core.lifecycle import new_session
from serversession.core.steps import Emit
from serversession.core.transport import IncomingToken, read_token
from serversession.exceptions import ConcurrentUpdateError, StoreUnavailableError

CONFIG = SessionConfig(trusted_origins=["https://app.example.com"], json_only_paths=["/api"], guess_limit=3)


def post(**facts: object) -> RequestFacts:
    fields: dict[str, object] = {"method": "POST", "path": "/x", "scheme": "https", "host": "shop.example.com"}
    fields.update(facts)
    return RequestFacts(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "refused"),
    [
        (post(origin="https://shop.example.com"), False),
        (post(origin="https://shop.example.com:443"), False),
        (post(origin="https://app.example.com"), False),  # trusted
        (post(), False),  # no Origin: the CSRF token decides
        (post(fetch_site="same-origin"), False),
        (post(fetch_site="none"), False),  # typed in the address bar
        (post(origin="https://evil.example"), True),
        (post(origin="https://sub.shop.example.com"), True),  # same site is not same origin
        (post(origin="http://shop.example.com"), True),  # a downgrade is never our page
        (post(origin="null"), True),
        (post(fetch_site="cross-site"), True),
        (post(fetch_site="cross-site", origin="https://shop.example.com"), True),
        (post(method="DELETE", origin="https://evil.example"), True),
        (post(method="GET", origin="https://evil.example"), False),  # safe methods pass
        (post(scheme="http", origin="https://shop.example.com"), False),  # TLS ended at a proxy
        (post(host=None, origin="https://shop.example.com"), True),  # nothing to compare with
        (post(fetch_site="same-origin", origin="https://shop.example"), False),  # the browser knows (proxy)
        (post(scheme="ws", origin="http://shop.example.com"), False),  # a WebSocket handshake
        (post(scheme="wss", origin="https://shop.example.com"), False),
        (post(scheme="wss", origin="https://evil.example"), True),
    ],
)
def test_cross_site_unsafe_requests_are_refused(facts: RequestFacts, refused: bool) -> None:
    refusal = RequestGuard(CONFIG).screen(facts, via_header=False)
    assert (refusal is not None) == refused
    if refusal is not None:
        assert refusal.status == 403 and refusal.reason == "cross_site"
        assert "trusted_origins" in refusal.message
        assert refusal.event is not None and refusal.event.kind is EventKind.REFUSED


def test_the_header_transport_and_exempt_routes_skip_the_cross_site_check() -> None:
    guard = RequestGuard(SessionConfig(csrf_exempt_paths=["/hooks"]))
    evil = post(origin="https://evil.example")
    assert guard.screen(evil, via_header=True) is None
    assert guard.screen(post(origin="https://evil.example", path="/hooks/github"), via_header=False) is None
    assert guard.screen(post(origin="https://evil.example", exempt=True), via_header=False) is None
    assert guard.screen(evil, via_header=False) is not None
    assert RequestGuard(SessionConfig(refuse_cross_site=False)).screen(evil, via_header=False) is None


@pytest.mark.parametrize(
    ("content_type", "has_body", "status"),
    [
        ("application/json", True, None),
        ("application/json; charset=utf-8", True, None),
        ("application/merge-patch+json", True, None),
        ("text/plain", True, 415),
        ("application/x-www-form-urlencoded", True, 415),
        ("multipart/form-data; boundary=x", True, 415),
        (None, True, 415),
        (None, False, None),  # no body, nothing to smuggle
    ],
)
def test_json_only_paths(content_type: str | None, has_body: bool, status: int | None) -> None:
    guard = RequestGuard(CONFIG)
    facts = post(path="/api/cart", content_type=content_type, has_body=has_body)
    refusal = guard.screen(facts, via_header=False)
    assert (refusal.status if refusal else None) == status
    if refusal is not None:
        assert refusal.message.startswith("this endpoint accepts JSON only: send Content-Type: application/json")
    assert guard.screen(post(path="/apix", content_type="text/plain", has_body=True), via_header=False) is None


def test_throttling_refuses_unknown_ids_of_a_blocked_address_and_nothing_else() -> None:
    guard = RequestGuard(CONFIG)
    valid = new_session(CONFIG, IncomingToken(None, False), 0.0, "", "")
    valid.key = "k" * 64
    guard.saw_valid(valid, 100.0)
    events = []
    for _ in range(3):
        unknown = IncomingToken(secrets.token_urlsafe(32), False)
        assert guard.throttle(unknown, "10.0.0.1", 100.0) is None
        fresh = new_session(CONFIG, unknown, 100.0, "", "", expired=True)
        events.append(guard.observe(unknown, fresh, "10.0.0.1", 100.0))
    assert [e is not None for e in events] == [False, False, True]
    assert events[-1] is not None and events[-1].kind is EventKind.GUESSING
    # Blocked: one unknown ID is looked up per window / limit (20 s here), the rest are refused.
    assert guard.throttle(IncomingToken(secrets.token_urlsafe(32), False), "10.0.0.1", 101.0) is None
    refusal = guard.throttle(IncomingToken(secrets.token_urlsafe(32), False), "10.0.0.1", 102.0)
    assert refusal is not None and refusal.status == 429 and refusal.retry_after == 1
    assert ("Retry-After", "1") in refusal.headers()
    assert guard.throttle(IncomingToken("not-an-id", False), "10.0.0.1", 102.0) is None  # never reaches a store
    assert guard.throttle(IncomingToken(secrets.token_urlsafe(32), False), "10.0.0.1", 121.5) is None  # paced
    assert guard.throttle(IncomingToken(None, False), "10.0.0.1", 101.0) is None  # no ID, no guess
    assert guard.throttle(IncomingToken(secrets.token_urlsafe(32), False), "10.0.0.2", 101.0) is None


def test_csrf_refusals_say_what_to_send() -> None:
    guard = RequestGuard(SessionConfig())
    session = new_session(SessionConfig(), IncomingToken(None, False), 0.0, "", "")
    token = session.csrf_token
    missing, wrong = guard.check_csrf(session, None), guard.check_csrf(session, "nope")
    assert guard.check_csrf(session, token) is None
    assert missing is not None and missing.status == 403 and "X-CSRF-Token" in missing.message
    assert "csrf_exempt_paths" in missing.message and "csrf_token()" in missing.message
    assert wrong is not None and wrong.reason == "csrf_invalid" and "rotate()" in wrong.message
    assert token not in missing.message + wrong.message
    assert guard.csrf_needed(post()) and not guard.csrf_needed(post(method="GET"))
    assert guard.form_may_carry_token(post(content_type="application/x-www-form-urlencoded"))
    assert not guard.form_may_carry_token(post(content_type="application/x-www-form-urlencoded", csrf_header="t"))


def test_every_answer_has_one_shape() -> None:
    down = refusal_for_error(StoreUnavailableError("down"))
    conflict = refusal_for_error(ConcurrentUpdateError("busy"))
    assert refusal_for_error(ValueError()) is None
    assert down is not None and conflict is not None
    for refusal in (down, conflict):
        headers = dict(refusal.headers())
        assert headers["Content-Type"] == "application/json" and headers["Cache-Control"] == "no-store"
        assert json.loads(refusal.body()) == {"error": refusal.message}
        assert int(headers["Content-Length"]) == len(refusal.body())
    assert dict(down.headers())["Retry-After"] == "1" and "Retry-After" not in dict(conflict.headers())


def test_an_ambiguous_cookie_reads_as_no_token() -> None:
    config = SessionConfig()
    sid = secrets.token_urlsafe(32)
    token = read_token(config, f"__Host-session={sid}; __Host-session={sid}", None)
    assert token.value is None and token.ambiguous
    lenient = SessionConfig(refuse_ambiguous_cookies=False)
    assert read_token(lenient, f"__Host-session={sid}; __Host-session=x", None).value == sid


@pytest.mark.parametrize(
    "options",
    [
        {"trusted_origins": ["https://a.example/path"]},
        {"trusted_origins": "https://a.example"},
        {"clear_site_data": ["cookie"]},
        {"json_only_paths": ["api"]},
        {"guess_limit": -1},
        {"guess_window": 0},
    ],
)
def test_bad_boundary_settings_fail_at_start_up(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        SessionConfig(**options)  # type: ignore[arg-type]


def test_an_ambiguous_cookie_costs_no_store_round_trip_and_emits_a_refused_event() -> None:
    from serversession.core import lifecycle

    config = SessionConfig()
    sid = secrets.token_urlsafe(32)
    plan = lifecycle.load(config, read_token(config, f"__Host-session={sid}; __Host-session=x", None), 5.0)
    calls = []
    try:
        calls.append(next(plan))
        while True:
            calls.append(plan.send(None))
    except StopIteration as done:
        session = done.value
    assert len(calls) == 1 and isinstance(calls[0], Emit)  # no Load
    assert calls[0].event.kind is EventKind.REFUSED and "more than once" in calls[0].event.reason
    assert session.is_new and session.presented  # so the save clears the cookie
