"""The public handle names a session without being one (OWASP: don't expose the ID;
ASVS V3.1.1 / V7.1: the session token is never disclosed).

The handle shown in "your active sessions" (and in logs) is a one-way function of
the storage key, which is itself the SHA-256 of the ID. Neither the handle nor
the storage key, as an attacker would find them on a screen, in a log or in a
dump of the store, opens the session, however they are presented.
"""

from __future__ import annotations

import redis
from sec_kit import TunedDemo, json_error, me_status, raw_client, sign_in

from serversession.core.ids import public_handle, storage_key


def test_the_handle_is_not_a_session(redis_demo: TunedDemo) -> None:
    session_id, _ = sign_in(redis_demo, "alice")
    with raw_client(redis_demo, session_id) as client:
        listed = client.get("/api/sessions").json()["sessions"]
    handle = next(s["id"] for s in listed if s["current"])
    assert handle == public_handle(storage_key(session_id))
    assert handle not in session_id and session_id not in str(listed)
    for presented in (handle, handle + "=" * 21, (handle * 2)[:43], handle.ljust(43, "A")):
        assert me_status(redis_demo, presented) == 401
        with raw_client(redis_demo, Authorization=f"Session {presented}") as client:
            json_error(client.get("/api/me"), 401)
    assert me_status(redis_demo, session_id) == 200


def test_a_dump_of_the_store_opens_no_session(redis_demo: TunedDemo) -> None:
    session_id, _ = sign_in(redis_demo, "bob")
    key = storage_key(session_id)
    with redis.Redis.from_url(redis_demo.store_url, decode_responses=True) as r:
        stored = r.hgetall(f"ss:s:{key}")
        assert stored and stored.get("u") == "bob"
        members = r.zrange("ss:u:bob", 0, -1)
    assert key in members
    assert len(key) == len(session_id)  # same shape as an ID: so it must fail by value, not by shape
    for presented in (key, *stored.values(), f"ss:s:{key}"):
        if presented:
            assert me_status(redis_demo, presented) == 401
    with raw_client(redis_demo, Authorization=f"Session {key}") as client:
        json_error(client.get("/api/me"), 401)


def test_a_handle_only_ends_the_owners_own_sessions(redis_demo: TunedDemo) -> None:
    alice, _ = sign_in(redis_demo, "alice")
    bob, bob_csrf = sign_in(redis_demo, "bob")
    alice_handle = public_handle(storage_key(alice))
    with raw_client(redis_demo, bob, **{"X-CSRF-Token": bob_csrf}) as client:
        json_error(client.delete(f"/api/sessions/{alice_handle}"), 404)
        json_error(client.delete(f"/api/sessions/{storage_key(alice)}"), 404)
        json_error(client.delete(f"/api/sessions/{alice}"), 404)
    assert me_status(redis_demo, alice) == 200
