"""No session fixation: the server never adopts an ID it did not issue, and sign-in
always issues a new one (OWASP: renew the session ID after any privilege level change;
ASVS V3.2.1, V3.3.1 / V7.2.4).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from sec_kit import COOKIE, TunedDemo, issued_id, json_error, me_status, raw_client, sign_in, start_session

from serversession.core.ids import new_session_id


def chosen_ids() -> list[str]:
    """IDs an attacker might plant: well-formed ones of our exact shape, and others."""
    return [new_session_id(), "A" * 43, secrets.token_urlsafe(32)[:42] + "_", "0" * 64, "attacker-chosen"]


def test_a_client_chosen_id_is_never_adopted(redis_demo: TunedDemo) -> None:
    for chosen in chosen_ids():
        with raw_client(redis_demo, chosen) as client:
            started = client.get("/api/session")
            assert started.status_code == 200 and started.json()["authenticated"] is False
            fresh = issued_id(started)
            assert fresh not in (None, chosen)
            assert client.get("/api/session").json()["authenticated"] is False  # still nothing behind it
        # Signing in while presenting the planted ID (with the token of the session really issued).
        with raw_client(redis_demo, fresh, **{"X-CSRF-Token": started.json()["csrf_token"]}) as client:
            login = client.post("/api/login", json={"username": "alice", "password": "wonderland"})
        assert login.status_code == 200
        assert issued_id(login) not in (chosen, fresh)
        assert me_status(redis_demo, chosen) == 401
        assert me_status(redis_demo, fresh) == 401  # the pre-sign-in ID died at sign-in


def test_a_client_chosen_id_in_the_authorization_header_is_never_adopted(redis_demo: TunedDemo) -> None:
    chosen = new_session_id()
    with raw_client(redis_demo, Authorization=f"Session {chosen}") as client:
        response = client.get("/api/session")
        assert response.status_code == 200 and response.json()["authenticated"] is False
        assert response.headers["Session-Id"] != chosen
        assert COOKIE not in response.cookies
        json_error(client.get("/api/me"), 401)


def test_a_planted_pre_sign_in_session_is_useless_to_the_attacker(redis_demo: TunedDemo) -> None:
    # The attacker gets a real anonymous session and plants its ID in the victim's browser.
    planted, planted_csrf = start_session(redis_demo)
    with raw_client(redis_demo, planted, **{"X-CSRF-Token": planted_csrf}) as victim:
        assert victim.post("/api/cart/items", json={"sku": "tea-sencha", "qty": 1}).status_code == 200
        login = victim.post("/api/login", json={"username": "alice", "password": "wonderland"})
        assert login.status_code == 200
    victim_id = issued_id(login)
    assert victim_id not in (None, planted)
    # The attacker keeps replaying the planted ID, inside the rotation grace period and after.
    with raw_client(redis_demo, planted) as attacker:
        for _ in range(5):
            json_error(attacker.get("/api/me"), 401)
            assert attacker.get("/api/cart").json() == {"items": {}, "count": 0}
            assert attacker.get("/api/session").json()["authenticated"] is False
    assert victim_id is not None and me_status(redis_demo, victim_id) == 200


def test_every_privilege_change_issues_a_new_id(redis_demo: TunedDemo) -> None:
    alice_id, alice_csrf = sign_in(redis_demo, "alice")
    with raw_client(redis_demo, alice_id, **{"X-CSRF-Token": alice_csrf}) as client:
        again = client.post("/api/login", json={"username": "bob", "password": "builder"})
    assert again.status_code == 200
    bob_id = issued_id(again)
    assert bob_id not in (None, alice_id)
    assert me_status(redis_demo, alice_id) == 401
    with raw_client(redis_demo, bob_id) as client:
        assert client.get("/api/me").json() == {"user": "bob"}


def test_a_failed_sign_in_changes_nothing(redis_demo: TunedDemo) -> None:
    session_id, csrf = start_session(redis_demo)
    with raw_client(redis_demo, session_id, **{"X-CSRF-Token": csrf}) as client:
        json_error(client.post("/api/login", json={"username": "alice", "password": "nope"}), 401)
        assert client.get("/api/session").json()["authenticated"] is False


# -- signed cookies ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signed_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TunedDemo]:
    path = tmp_path_factory.mktemp("signed") / "sessions.sqlite3"
    with TunedDemo(f"sqlite:///{path}", secret_key="k" * 32) as demo:
        yield demo


def test_signed_cookies_reject_forgeries_without_adopting_them(signed_demo: TunedDemo) -> None:
    genuine, _ = sign_in(signed_demo, "bob")
    session_id, dot, tag = genuine.rpartition(".")
    assert dot and len(session_id) == 43 and tag
    assert me_status(signed_demo, genuine) == 200
    forged_tag = ("A" if tag[0] != "A" else "B") + tag[1:]
    other_key_tag = genuine.replace(tag, secrets.token_urlsafe(16))
    for forgery in (session_id, f"{session_id}.{forged_tag}", other_key_tag, f"{session_id}.", f".{tag}",
                    f"{new_session_id()}.{tag}", genuine + "x", genuine.upper()):
        with raw_client(signed_demo, forgery) as client:
            response = client.get("/api/session")
            assert response.status_code == 200 and response.json()["authenticated"] is False, forgery
            assert issued_id(response) not in (None, forgery, genuine)
    with raw_client(signed_demo, Authorization=f"Session {session_id}") as client:
        json_error(client.get("/api/me"), 401)  # the bare ID without its tag is refused too
