"""The per-user session cap through the lifecycle, with a fake clock and the memory store.

What each store does atomically is checked by the store conformance suite
(``tests/stores/test_conformance.py``, parallel sign-ins from several processes);
here: what the lifecycle sends, the events and errors it makes of the answer, and
what an evicted browser sees next.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from core_fakes import Clock, CountingStore

from serversession import (
    AsyncSessionManager,
    ConfigurationError,
    MemoryStore,
    SessionConfig,
    SessionError,
    SessionLimitError,
    SessionManager,
)
from serversession.core.config import EVICTION_REASON
from serversession.core.events import EventKind, SessionEvent
from serversession.core.guard import refusal_for_error
from serversession.core.records import Commit, CommitResult
from serversession.core.session import Session
from serversession.core.transport import IncomingToken


def token(value: str | None) -> IncomingToken:
    return IncomingToken(value, via_header=False)


def cookie_of(result: Any) -> str:
    return str(result.set_cookies[0].split(";")[0].split("=", 1)[1])


def capped(store: Any, clock: Clock, limit: int = 2, **options: Any) -> tuple[SessionManager, list[SessionEvent]]:
    config = SessionConfig(idle_timeout=600, absolute_timeout=3600, max_sessions_per_user=limit, **options)
    manager = SessionManager(store, config, clock=clock)
    events: list[SessionEvent] = []
    manager.add_listener(events.append)
    return manager, events


def sign_in(manager: SessionManager, user: str = "alice", *, rotate: bool = True) -> tuple[Session, str]:
    """A sign-in as an app writes one: an anonymous session with a cart, then bound and rotated."""
    s = manager.load(token(None))
    s["cart"] = ["apple"]
    sid = cookie_of(manager.save(s))
    s = manager.load(token(sid))
    s.user = user
    if rotate:
        s.rotate("signed in")
    result = manager.save(s)
    return s, cookie_of(result) if rotate else sid


@pytest.fixture
def store(clock: Clock) -> CountingStore:
    return CountingStore(MemoryStore(clock=clock))


def test_the_defaults_set_no_limit() -> None:
    config = SessionConfig()
    assert (config.max_sessions_per_user, config.on_limit, config.eviction_reason) == (0, "evict", EVICTION_REASON)
    assert EVICTION_REASON == "signed out because you signed in on another device"


@pytest.mark.parametrize(
    "options",
    [
        {"max_sessions_per_user": -1},
        {"max_sessions_per_user": 2.5},
        {"max_sessions_per_user": True},
        {"max_sessions_per_user": "3"},
        {"on_limit": "oldest"},
        {"eviction_reason": ""},
        {"eviction_reason": "x" * 201},
        {"eviction_reason": "\ud800"},
    ],
)
def test_bad_cap_settings_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        SessionConfig(**options)


def test_no_cap_sends_none(store: CountingStore, clock: Clock) -> None:
    manager = SessionManager(store, SessionConfig(), clock=clock)
    sent: list[Commit] = []
    inner = store.inner.create
    store.inner.create = lambda key, commit: sent.append(commit) or inner(key, commit)  # type: ignore[method-assign]
    s = manager.load(token(None))
    s.user = "alice"
    manager.save(s)
    assert sent[0].index_user == "alice" and sent[0].user_cap is None


def test_a_sign_in_beyond_the_cap_ends_the_least_recently_used(store: CountingStore, clock: Clock) -> None:
    manager, events = capped(store, clock)
    first, first_sid = sign_in(manager)
    clock.advance(100)
    second, second_sid = sign_in(manager)
    clock.advance(100)
    # The first is renewed (a request past renew_fraction of the idle window): now the second is the oldest.
    renewed = manager.load(token(first_sid))
    manager.save(renewed)
    assert renewed.last_seen_at == clock.now
    clock.advance(100)
    events.clear()
    third, _ = sign_in(manager)
    revoked = [e for e in events if e.kind is EventKind.REVOKED]
    assert [(e.handle, e.user, e.reason) for e in revoked] == [(second.handle, "alice", EVICTION_REASON)]
    assert {i.handle for i in manager.list_sessions("alice")} == {first.handle, third.handle}

    # The evicted browser's next request: a fresh session that says why, for one store command.
    store.calls.clear()
    events.clear()
    back = manager.load(token(second_sid))
    assert store.calls == ["load"]
    assert back.is_new and back.expired and back.ended_because == EVICTION_REASON
    assert back.user is None and dict(back) == {}
    result = manager.save(back)
    assert "Max-Age=0" in result.set_cookies[0]  # the dead cookie is cleared, nothing stored
    assert store.calls == ["load"] and events == []


def test_a_sign_in_without_rotation_and_a_created_one_are_capped_too(store: CountingStore, clock: Clock) -> None:
    manager, events = capped(store, clock, limit=1)
    first, first_sid = sign_in(manager, rotate=False)  # a commit that binds the user
    clock.advance(10)
    s = manager.load(token(None))  # a session created already bound
    s.user = "alice"
    manager.save(s)
    assert [e.handle for e in events if e.kind is EventKind.REVOKED] == [first.handle]
    assert [i.handle for i in manager.list_sessions("alice")] == [s.handle]
    assert manager.load(token(first_sid)).ended_because == EVICTION_REASON


def test_rotating_a_signed_in_session_again_evicts_nothing(store: CountingStore, clock: Clock) -> None:
    manager, events = capped(store, clock)
    sign_in(manager)
    _, sid = sign_in(manager)
    events.clear()
    s = manager.load(token(sid))
    s.rotate("privilege change")
    manager.save(s)
    assert not [e for e in events if e.kind is EventKind.REVOKED]
    assert len(manager.list_sessions("alice")) == 2


def test_other_users_neither_count_nor_go(store: CountingStore, clock: Clock) -> None:
    manager, events = capped(store, clock, limit=1)
    sign_in(manager, "bob")
    sign_in(manager, "alice")
    assert not [e for e in events if e.kind is EventKind.REVOKED]
    assert len(manager.list_sessions("bob")) == len(manager.list_sessions("alice")) == 1


def test_refuse_raises_and_writes_nothing(store: CountingStore, clock: Clock) -> None:
    manager, events = capped(store, clock, on_limit="refuse")
    sign_in(manager)
    sign_in(manager)
    before = {i.handle for i in manager.list_sessions("alice")}
    s = manager.load(token(None))
    s["cart"] = ["pear"]
    sid = cookie_of(manager.save(s))
    s = manager.load(token(sid))
    s.user = "alice"
    s.rotate("signed in")
    events.clear()
    with pytest.raises(SessionLimitError) as refused:
        manager.save(s)
    assert isinstance(refused.value, SessionError)
    assert (refused.value.user, refused.value.limit) == ("alice", 2)
    assert events == []
    assert {i.handle for i in manager.list_sessions("alice")} == before
    kept = manager.load(token(sid))  # the anonymous session is where it was, as it was
    assert not kept.is_new and kept.user is None and kept["cart"] == ["pear"]

    created = manager.load(token(None))
    created.user = "alice"
    with pytest.raises(SessionLimitError):
        manager.save(created)
    assert created.is_new

    answer = refusal_for_error(refused.value)
    assert answer is not None and (answer.status, answer.reason) == (409, "session_limit")
    assert "(2)" in answer.message and "sign out" in answer.message


def test_the_eviction_reason_is_configurable(store: CountingStore, clock: Clock) -> None:
    manager, events = capped(store, clock, limit=1, eviction_reason="Abgemeldet: neue Anmeldung")
    _, sid = sign_in(manager)
    sign_in(manager)
    assert [e.reason for e in events if e.kind is EventKind.REVOKED] == ["Abgemeldet: neue Anmeldung"]
    assert manager.load(token(sid)).ended_because == "Abgemeldet: neue Anmeldung"


def test_an_ordinary_expiry_has_no_ended_reason(store: CountingStore, clock: Clock) -> None:
    manager, _ = capped(store, clock)
    _, sid = sign_in(manager)
    clock.advance(601)
    back = manager.load(token(sid))
    assert back.expired and back.ended_because is None
    assert manager.load(token(None)).ended_because is None


def test_a_store_whose_create_answers_a_bool_still_works(clock: Clock) -> None:
    class OldStore:
        """A third-party store written when ``create`` answered True / False."""

        def __init__(self) -> None:
            self.inner = MemoryStore(clock=clock)

        def create(self, key: str, commit: Commit) -> bool:
            return bool(self.inner.create(key, commit))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    manager = SessionManager(OldStore(), SessionConfig(), clock=clock)
    s = manager.load(token(None))
    s["x"] = 1
    assert manager.load(token(cookie_of(manager.save(s))))["x"] == 1


def test_commit_results_are_truthy_only_when_ok() -> None:
    from serversession.core.records import COMMITTED, MISSING, REFUSED, TAKEN, committed

    assert COMMITTED and not MISSING and not TAKEN and not REFUSED
    assert committed(["k"]).evicted == ("k",) and committed() is COMMITTED
    assert isinstance(committed(["k"]), CommitResult)


def test_the_async_manager_caps_alike(clock: Clock) -> None:
    config = SessionConfig(idle_timeout=600, absolute_timeout=3600, max_sessions_per_user=1)
    manager = AsyncSessionManager(MemoryStore(clock=clock), config, clock=clock)
    revoked: list[SessionEvent] = []
    manager.add_listener(lambda e: revoked.append(e) if e.kind is EventKind.REVOKED else None)

    async def run() -> None:
        first = await manager.aload(token(None))
        first.user = "alice"
        sid = cookie_of(await manager.asave(first))
        clock.advance(1)
        second = await manager.aload(token(None))
        second.user = "alice"
        await manager.asave(second)
        assert [e.handle for e in revoked] == [first.handle]
        assert (await manager.aload(token(sid))).ended_because == EVICTION_REASON

    asyncio.run(run())
