"""Logout and revocation end a session at once, on every store and in every process
(OWASP: session termination on the server; ASVS V3.3.1, V3.3.3 / V7.4.1, V7.4.4).

Each store gets two demo processes sharing it (memory: one, it cannot be
shared): a session used through one process is ended through the other, and the
very next request, on either, is refused. No sleeping, no polling.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sec_kit import TunedDemo, json_error, me_status, raw_client, sign_in, store_url

STORES = ["memory", "sqlite", "redis", "redis-cluster"]


@pytest.fixture(scope="module", params=STORES)
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TunedDemo, TunedDemo]]:
    """Two demo processes on one store (the same process twice for memory://)."""
    url = store_url(request.param, request, tmp_path_factory)
    with TunedDemo(url) as first:
        if request.param == "memory":
            yield first, first
            return
        with TunedDemo(url) as second:
            yield first, second


def handle_of(demo: TunedDemo, session_id: str) -> str:
    with raw_client(demo, session_id) as client:
        listed = client.get("/api/sessions").json()["sessions"]
    return str(next(s["id"] for s in listed if s["current"]))


def test_logout_through_one_process_ends_the_session_in_all(pair: tuple[TunedDemo, TunedDemo]) -> None:
    a, b = pair
    session_id, csrf = sign_in(a, "alice")
    with raw_client(b, session_id, **{"X-CSRF-Token": csrf}) as on_b:
        assert on_b.post("/api/cart/items", json={"sku": "tea-sencha", "qty": 3}).status_code == 200
    assert me_status(a, session_id) == 200 and me_status(b, session_id) == 200
    with raw_client(a, session_id, **{"X-CSRF-Token": csrf}) as on_a:
        logout = on_a.post("/api/logout")
    assert logout.json() == {"ok": True}
    assert "Max-Age=0" in logout.headers["set-cookie"]
    for demo in (b, a, b):  # immediately, on both
        with raw_client(demo, session_id, **{"X-CSRF-Token": csrf}) as replay:
            json_error(replay.get("/api/me"), 401)
            assert replay.get("/api/cart").json() == {"items": {}, "count": 0}
            json_error(replay.post("/api/cart/items", json={"sku": "tea-sencha", "qty": 1}), 403)
            assert replay.get("/api/session").json()["authenticated"] is False


def test_revoking_one_session_ends_it_in_all_processes(pair: tuple[TunedDemo, TunedDemo]) -> None:
    a, b = pair
    laptop, laptop_csrf = sign_in(a, "bob")
    phone, _ = sign_in(b, "bob")
    phone_handle = handle_of(b, phone)
    assert me_status(b, phone) == 200
    with raw_client(a, laptop, **{"X-CSRF-Token": laptop_csrf}) as client:
        assert client.delete(f"/api/sessions/{phone_handle}").json() == {"ok": True}
    assert me_status(b, phone) == 401 and me_status(a, phone) == 401
    assert me_status(a, laptop) == 200 and me_status(b, laptop) == 200
    with raw_client(b, laptop) as client:
        assert phone_handle not in {s["id"] for s in client.get("/api/sessions").json()["sessions"]}


def test_sign_out_everywhere_else_reaches_every_process(pair: tuple[TunedDemo, TunedDemo]) -> None:
    a, b = pair
    others = [sign_in(a, "alice")[0], sign_in(b, "alice")[0]]
    bob, _ = sign_in(b, "bob")
    keeper, keeper_csrf = sign_in(b, "alice")
    with raw_client(b, keeper, **{"X-CSRF-Token": keeper_csrf}) as client:
        assert client.post("/api/sessions/revoke-others").json()["revoked"] >= 2
    for demo in (a, b):
        for session_id in others:
            assert me_status(demo, session_id) == 401
        assert me_status(demo, keeper) == 200
        assert me_status(demo, bob) == 200  # another user's sessions are untouched
