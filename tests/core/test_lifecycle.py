"""The lifecycle's rules, driven through the sync manager with a fake clock."""

from __future__ import annotations

import threading

from core_fakes import Clock, CountingStore

from serversession import SessionConfig, SessionManager
from serversession.core.ids import storage_key
from serversession.core.session import Session
from serversession.core.transport import IncomingToken


def cookie_of(result: object) -> str:
    cookies = result.set_cookies  # type: ignore[attr-defined]
    return cookies[0].split(";")[0].split("=", 1)[1]


def token(value: str | None) -> IncomingToken:
    return IncomingToken(value, via_header=False)


def start(manager: SessionManager, **data: object) -> tuple[Session, str]:
    s = manager.load(token(None))
    s.update(data)
    return s, cookie_of(manager.save(s))


def test_a_request_that_writes_nothing_stores_nothing_and_sets_no_cookie(
    manager: SessionManager, store: CountingStore
) -> None:
    s = manager.load(token(None))
    assert s.is_new and dict(s) == {}
    result = manager.save(s)
    assert result.set_cookies == () and store.calls == []


def test_reading_the_csrf_token_of_a_new_session_stores_nothing(manager: SessionManager, store: CountingStore) -> None:
    s = manager.load(token(None))
    t = s.csrf_token
    result = manager.save(s)
    assert store.calls == []
    assert len(result.set_cookies) == 1 and result.set_cookies[0].startswith("__Host-session-csrf=")
    secret = result.set_cookies[0].split(";")[0].split("=", 1)[1]
    again = manager.load(IncomingToken(None, via_header=False, csrf_secret=secret))
    assert again.csrf_valid(t) and not again.csrf_valid(t[:-1] + "x")


def test_the_pre_session_csrf_cookie_is_cleared_only_if_the_client_has_one(manager: SessionManager) -> None:
    fresh = manager.load(token(None))
    _ = fresh.csrf_token  # made in this request: the client never got the cookie
    fresh.ensure_stored()
    assert [c.split("=")[0] for c in manager.save(fresh).set_cookies] == ["__Host-session"]

    secret = "s" * 43
    presented = manager.load(IncomingToken(None, via_header=False, csrf_secret=secret))
    presented["x"] = 1
    cookies = manager.save(presented).set_cookies
    assert [c.split("=")[0] for c in cookies] == ["__Host-session", "__Host-session-csrf"]
    assert "Max-Age=0" in cookies[1]


def test_first_write_creates_the_session_with_a_hashed_key(manager: SessionManager, store: CountingStore) -> None:
    s, sid = start(manager, cart={"a": 1})
    assert store.calls == ["create"]
    assert s.key == storage_key(sid) and sid not in str(store.inner.load(s.key))


def test_read_only_request_costs_one_store_read(manager: SessionManager, store: CountingStore, clock: Clock) -> None:
    _, sid = start(manager, x=1)
    store.calls.clear()
    clock.advance(10)
    s = manager.load(token(sid))
    assert s["x"] == 1
    assert manager.save(s).set_cookies == ()
    assert store.calls == ["load"]


def test_idle_deadline_is_renewed_only_after_the_renew_fraction(
    manager: SessionManager, store: CountingStore, clock: Clock
) -> None:
    _, sid = start(manager, x=1)
    store.calls.clear()
    clock.advance(59)  # renew_after = 60 s
    manager.save(manager.load(token(sid)))
    assert store.calls == ["load"]
    clock.advance(2)
    manager.save(manager.load(token(sid)))
    assert store.calls == ["load", "load", "commit"]
    clock.advance(590)  # within idle of the renewal, beyond idle of creation
    assert not manager.load(token(sid)).is_new


def test_idle_timeout_ends_the_session(manager: SessionManager, clock: Clock) -> None:
    _, sid = start(manager, x=1)
    clock.advance(601)
    s = manager.load(token(sid))
    assert s.is_new and s.expired and "x" not in s


def test_absolute_timeout_holds_however_busy(manager: SessionManager, clock: Clock) -> None:
    _, sid = start(manager, x=1)
    for _ in range(12):
        clock.advance(300)
        s = manager.load(token(sid))
        s["x"] = s.get("x", 0) + 1
        manager.save(s)
    s = manager.load(token(sid))
    assert s.is_new and s.expired


def test_strict_mode_never_adopts_an_unknown_id(manager: SessionManager, store: CountingStore) -> None:
    forged = "A" * 43
    s = manager.load(token(forged))
    s["x"] = 1
    new_sid = cookie_of(manager.save(s))
    assert new_sid != forged and store.inner.load(storage_key(forged)) is None


def test_garbage_tokens_cost_no_store_round_trip(manager: SessionManager, store: CountingStore) -> None:
    for junk in ["", "x", "a" * 5000, "💥" * 43, "../../etc", "A" * 42 + "!"]:
        assert manager.load(token(junk)).is_new
    assert store.calls == []


def test_signed_cookies_reject_forgeries_before_the_store(store: CountingStore, clock: Clock) -> None:
    config = SessionConfig(secret_keys=["new-key-0123456789", "old-key-0123456789"])
    manager = SessionManager(store, config, clock=clock)
    _, signed = start(manager, x=1)
    sid, _, _tag = signed.partition(".")
    store.calls.clear()
    assert manager.load(token(sid)).is_new  # unsigned ID: refused
    assert manager.load(token(sid + ".AAAAAAAAAAAAAAAAAAAAAA")).is_new
    assert store.calls == []
    assert manager.load(token(signed))["x"] == 1
    rotated = SessionManager(
        store, SessionConfig(secret_keys=["newest-key-012345678", "new-key-0123456789"]), clock=clock
    )
    assert rotated.load(token(signed))["x"] == 1  # old signatures verify during key rotation


def test_rotation_keeps_data_kills_the_old_id_and_changes_the_csrf_token(manager: SessionManager) -> None:
    s, old = start(manager, cart={"a": 2})
    s = manager.load(token(old))
    before = s.csrf_token
    s.user = "alice"
    s.rotate()
    after = s.csrf_token
    new = cookie_of(manager.save(s))
    assert new != old and before != after
    assert manager.load(token(old)).is_new
    fresh = manager.load(token(new))
    assert (
        fresh["cart"] == {"a": 2} and fresh.user == "alice" and fresh.csrf_valid(after) and not fresh.csrf_valid(before)
    )


def test_in_flight_write_follows_a_rotation(manager: SessionManager) -> None:
    _, old = start(manager, a=1)
    slow = manager.load(token(old))
    fast = manager.load(token(old))
    fast.rotate()
    new = cookie_of(manager.save(fast))
    slow["b"] = 2
    assert manager.save(slow).set_cookies == ()
    assert dict(manager.load(token(new))) == {"a": 1, "b": 2}
    assert manager.load(token(old)).is_new


def test_destroy_deletes_and_clears_the_cookie(manager: SessionManager, store: CountingStore) -> None:
    s, sid = start(manager, x=1)
    s = manager.load(token(sid))
    s.destroy()
    result = manager.save(s)
    assert "Max-Age=0" in result.set_cookies[0] and result.ended
    assert store.inner.load(s.key) is None and manager.load(token(sid)).is_new


def test_a_request_in_flight_cannot_resurrect_a_destroyed_session(
    manager: SessionManager, store: CountingStore
) -> None:
    _, sid = start(manager, x=1)
    slow = manager.load(token(sid))
    ender = manager.load(token(sid))
    ender.destroy()
    manager.save(ender)
    slow["y"] = 2
    result = manager.save(slow)
    assert result.ended and store.inner.load(storage_key(sid)) is None


def test_a_logout_racing_a_rotation_still_ends_the_session(manager: SessionManager, store: CountingStore) -> None:
    _, sid = start(manager, x=1)
    leaving = manager.load(token(sid))  # this request signs out...
    signing_in = manager.load(token(sid))  # ...while this one rotates first
    signing_in.rotate()
    new_sid = cookie_of(manager.save(signing_in))
    leaving.destroy()
    assert manager.save(leaving).ended
    assert manager.load(token(new_sid)).is_new, "the session survived under its new ID"


def test_concurrent_requests_changing_different_keys_both_win(manager: SessionManager) -> None:
    _, sid = start(manager, a=0)
    r1, r2 = manager.load(token(sid)), manager.load(token(sid))
    r1["theme"] = "dark"
    r2["cart"] = {"x": 1}
    manager.save(r1)
    manager.save(r2)
    assert dict(manager.load(token(sid))) == {"a": 0, "theme": "dark", "cart": {"x": 1}}


def test_in_place_mutation_is_saved(manager: SessionManager) -> None:
    _, sid = start(manager, cart={})
    s = manager.load(token(sid))
    s["cart"]["x"] = 3
    manager.save(s)
    assert manager.load(token(sid))["cart"] == {"x": 3}


def test_modify_is_exact_under_thread_contention(manager: SessionManager) -> None:
    _, sid = start(manager, n=0)

    def worker() -> None:
        for _ in range(20):
            s = manager.load(token(sid))
            s.modify("n", lambda v: v + 1)
            manager.save(s)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert manager.load(token(sid))["n"] == 160


def test_modify_retries_with_the_fresher_value(
    manager: SessionManager, store: CountingStore, config: SessionConfig, clock: Clock
) -> None:
    """A second manager on the same store stands for another process: its
    commit is only seen through the compare-and-set, which fails once and
    retries with the value that process wrote."""
    _, sid = start(manager, n=1)
    stale = manager.load(token(sid))
    other_process = SessionManager(store, config, clock=clock)
    other_process.load(token(sid)).modify("n", lambda v: v * 10)
    seen: list[int] = []
    assert stale.modify("n", lambda v: seen.append(v) or v + 1) == 11
    assert seen == [1, 10]


def test_modify_in_one_process_starts_from_the_last_committed_value(
    manager: SessionManager, store: CountingStore
) -> None:
    """In one process the manager remembers what the previous modify of the
    key committed, so a request that loaded earlier does not pay a failed
    compare-and-set: one attempt, one store call."""
    _, sid = start(manager, n=1)
    stale = manager.load(token(sid))
    manager.load(token(sid)).modify("n", lambda v: v * 10)
    store.calls.clear()
    seen: list[int] = []
    assert stale.modify("n", lambda v: seen.append(v) or v + 1) == 11
    assert seen == [10]
    assert len(store.calls) == 1


def test_list_and_revoke_a_users_sessions(manager: SessionManager) -> None:
    sessions = []
    for _ in range(3):
        s = manager.load(token(None))
        s.user = "alice"
        sid = cookie_of(manager.save(s))
        sessions.append(manager.load(token(sid)))
    bob = manager.load(token(None))
    bob.user = "bob"
    manager.save(bob)
    infos = manager.list_sessions("alice", current=sessions[0])
    assert len(infos) == 3 and [i.current for i in infos].count(True) == 1
    assert all(i.handle != s.key and i.handle != s.session_id for i, s in zip(infos, sessions, strict=False))
    assert manager.revoke("alice", next(i.handle for i in infos if not i.current))
    assert not manager.revoke("bob", infos[0].handle)  # not bob's
    assert manager.revoke_user("alice", keep=sessions[0]) == 1
    assert [i.current for i in manager.list_sessions("alice", current=sessions[0])] == [True]
    assert len(manager.list_sessions("bob")) == 1


def test_header_transport_answers_in_a_header_and_sets_no_cookie(manager: SessionManager) -> None:
    s = manager.load(IncomingToken(None, via_header=True))
    s["x"] = 1
    result = manager.save(s)
    assert result.set_cookies == () and result.header_token
    assert manager.load(IncomingToken(result.header_token, via_header=True))["x"] == 1


def test_persistent_cookie_never_outlives_the_absolute_timeout(manager: SessionManager, clock: Clock) -> None:
    s = manager.load(token(None))
    s.persistent = True
    s["x"] = 1
    cookie = manager.save(s).set_cookies[0]
    assert "Max-Age=3600" in cookie
    default_cookie = start(manager, y=1)
    assert "Max-Age" not in manager.save(manager.load(token(default_cookie[1]))).set_cookies.__repr__()


def test_session_cookie_defaults_are_safe(manager: SessionManager) -> None:
    s = manager.load(token(None))
    s["x"] = 1
    cookie = manager.save(s).set_cookies[0]
    assert cookie.startswith("__Host-session=")
    for attribute in ("Path=/", "HttpOnly", "Secure", "SameSite=Lax"):
        assert attribute in cookie
    assert "Domain" not in cookie and "Max-Age" not in cookie


def test_saving_twice_writes_only_new_changes_and_rotates_once(manager: SessionManager, store: CountingStore) -> None:
    s, sid = start(manager, a=1)
    s = manager.load(token(sid))
    s["b"] = 2
    s.rotate()
    first = cookie_of(manager.save(s))
    store.calls.clear()
    assert manager.save(s).set_cookies == () and store.calls == []
    s["c"] = 3
    manager.save(s)
    assert store.calls == ["commit"]
    assert dict(manager.load(token(first))) == {"a": 1, "b": 2, "c": 3}


def test_a_session_signed_in_before_it_is_stored_drops_the_pre_session_secret(manager: SessionManager) -> None:
    """The pre-session CSRF secret is a cookie: one planted by an attacker must not
    become the signed-in session's secret."""
    from serversession.core import csrf

    planted = "A" * 43
    s = manager.load(IncomingToken(None, via_header=False, csrf_secret=planted))
    assert s.csrf_valid(csrf.token_for(planted))  # it protects the sign-in form itself
    s.user = "alice"
    token = s.csrf_token  # read after signing in: the new one
    sid = cookie_of(manager.save(s))
    again = manager.load(IncomingToken(sid, via_header=False))
    assert again.csrf_valid(token)
    assert not again.csrf_valid(csrf.token_for(planted))
