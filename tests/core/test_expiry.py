"""The expiry an application sets on one session (``Session.set_expiry``), with a fixed clock.

The config: idle 600 s, absolute 3600 s, renewal after 10 % of the idle window.
The memory store honours the expiry each commit sends, so a test can check both
the core's verdict (a load gives a fresh session) and the store's (the record
is gone without the core asking).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from core_fakes import Clock, CountingStore

from serversession import SessionConfig, SessionManager
from serversession.core.events import EventKind, SessionEvent
from serversession.core.ids import storage_key
from serversession.core.records import Commit
from serversession.core.session import Session
from serversession.core.transport import IncomingToken


def token(value: str | None) -> IncomingToken:
    return IncomingToken(value, via_header=False)


def cookie_of(result: Any) -> str:
    return str(result.set_cookies[0].split(";")[0].split("=", 1)[1])


def start(manager: SessionManager, idle: float | None = None, at: float | None = None, **data: Any) -> str:
    s = manager.load(token(None))
    s.update(data or {"x": 1})
    s.set_expiry(idle, at=at)
    return cookie_of(manager.save(s))


def stored(store: CountingStore, sid: str) -> bool:
    """Whether the store itself still holds the session (no lifecycle involved)."""
    return store.inner.load(storage_key(sid)) is not None


def test_an_idle_limit_slides_and_ends_a_quiet_session_sooner(
    manager: SessionManager, store: CountingStore, clock: Clock
) -> None:
    sid = start(manager, idle=120)
    store.calls.clear()
    clock.advance(13)  # the renewal window follows the limit: 10 % of 120 s
    manager.save(manager.load(token(sid)))
    assert store.calls == ["load", "commit"]
    clock.advance(119)  # 132 s after creation, 119 s after the renewal
    s = manager.load(token(sid))
    assert not s.is_new and s.idle_limit == 120
    manager.save(s)
    clock.advance(120)
    assert not stored(store, sid)  # the store's own expiry follows the limit
    s = manager.load(token(sid))
    assert s.is_new and s.expired


def test_a_fixed_end_holds_however_busy(manager: SessionManager, store: CountingStore, clock: Clock) -> None:
    sid = start(manager, at=clock.now + 300)
    for _ in range(2):
        clock.advance(100)
        s = manager.load(token(sid))
        s["x"] += 1
        manager.save(s)
    clock.advance(99)
    assert manager.load(token(sid))["x"] == 3
    clock.advance(1)
    assert not stored(store, sid)
    assert manager.load(token(sid)).expired


def test_the_expiry_never_lengthens_the_configured_timeouts(manager: SessionManager, clock: Clock) -> None:
    born = clock.now
    sid = start(manager, idle=14 * 86400, at=born + 10**6)  # "remember me" for two weeks
    s = manager.load(token(sid))
    assert (s.idle_expires_at, s.absolute_expires_at) == (born + 600, born + 3600)
    clock.advance(601)
    assert manager.load(token(sid)).expired
    busy = start(manager, idle=14 * 86400)
    for _ in range(12):
        clock.advance(300)
        manager.save(manager.load(token(busy)))
    assert manager.load(token(busy)).expired  # the absolute timeout still ends it


@pytest.mark.parametrize(("idle", "ahead"), [(0, None), (-10, None), (None, 0), (None, -10)])
def test_a_limit_already_reached_ends_a_stored_session_at_its_save(
    manager: SessionManager, store: CountingStore, clock: Clock, idle: float | None, ahead: float | None
) -> None:
    events: list[SessionEvent] = []
    manager.add_listener(events.append)
    sid = start(manager)
    s = manager.load(token(sid))
    s.set_expiry(idle, at=None if ahead is None else clock.now + ahead)
    store.calls.clear()
    result = manager.save(s)
    assert result.ended and result.expired and not result.moved
    assert "Max-Age=0" in result.set_cookies[0]
    assert store.calls == ["delete"] and not stored(store, sid)
    assert events[-1].kind is EventKind.EXPIRED and events[-1].reason == "the expiry set by the application"
    assert manager.load(token(sid)).is_new


def test_a_new_session_past_its_expiry_is_never_stored(manager: SessionManager, store: CountingStore) -> None:
    s = manager.load(token(None))
    s["x"] = 1
    s.set_expiry(-10)
    result = manager.save(s)
    assert result.ended and result.expired and result.set_cookies == ()
    assert store.calls == [] and s.is_new


def test_the_expiry_is_kept_across_loads_and_rotation(manager: SessionManager, clock: Clock) -> None:
    sid = start(manager, idle=120, at=clock.now + 1000)
    s = manager.load(token(sid))
    assert (s.idle_limit, s.ends_at) == (120, clock.now + 1000)
    s.rotate()
    rotated = cookie_of(manager.save(s))
    s = manager.load(token(rotated))
    assert (s.idle_limit, s.ends_at) == (120, clock.now + 1000)
    clock.advance(121)
    assert manager.load(token(rotated)).expired


def test_an_expiry_set_while_another_request_rotates_follows_the_session(
    manager: SessionManager, clock: Clock
) -> None:
    sid = start(manager)
    first, second = manager.load(token(sid)), manager.load(token(sid))
    first.rotate()
    rotated = cookie_of(manager.save(first))
    second.set_expiry(60)
    second.rotate()
    assert manager.save(second).moved
    s = manager.load(token(rotated))
    assert s.idle_limit == 60
    clock.advance(61)
    assert manager.load(token(rotated)).expired


def test_set_expiry_with_no_limit_returns_to_the_configured_timeouts(
    manager: SessionManager, store: CountingStore, clock: Clock
) -> None:
    sid = start(manager, idle=60)
    clock.advance(5)
    s = manager.load(token(sid))
    s.set_expiry()
    store.calls.clear()
    manager.save(s)
    assert store.calls == ["commit"]  # not due for renewal, but the store expiry must move out again
    clock.advance(300)
    assert stored(store, sid) and not manager.load(token(sid)).is_new


def test_setting_the_same_expiry_again_writes_nothing(manager: SessionManager, store: CountingStore) -> None:
    sid = start(manager, idle=120)
    s = manager.load(token(sid))
    s.set_expiry(120.0)
    store.calls.clear()
    manager.save(s)
    assert store.calls == []


def test_the_users_list_shows_the_deadlines_in_force(manager: SessionManager, clock: Clock) -> None:
    s = manager.load(token(None))
    s.user = "alice"
    s.set_expiry(120, at=clock.now + 1000)
    manager.save(s)
    (info,) = manager.list_sessions("alice")
    assert (info.idle_expires_at, info.absolute_expires_at) == (clock.now + 120, clock.now + 1000)
    clock.advance(121)
    assert manager.list_sessions("alice") == []


def test_a_persistent_cookie_ends_at_the_fixed_end(manager: SessionManager, clock: Clock) -> None:
    s = manager.load(token(None))
    s.persistent = True
    s["x"] = 1
    s.set_expiry(at=clock.now + 300)
    assert "Max-Age=300" in manager.save(s).set_cookies[0]


class CommitRecorder(CountingStore):
    """Also keeps every Commit the core sends."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.commits: list[Commit] = []

    def __getattr__(self, name: str) -> Any:
        call = super().__getattr__(name)

        def recording(*args: Any) -> Any:
            self.commits.extend(a for a in args if isinstance(a, Commit))
            return call(*args)

        return recording


def test_the_user_index_outlives_a_fixed_end_a_later_request_may_lift(
    store: CountingStore, config: SessionConfig, clock: Clock
) -> None:
    recorder = CommitRecorder(store.inner)
    manager = SessionManager(recorder, config, clock=clock)
    s = manager.load(token(None))
    s.user = "alice"
    s.set_expiry(at=clock.now + 300)
    manager.save(s)
    (create,) = recorder.commits
    assert create.expires_at == clock.now + 300  # the session ends then...
    assert create.absolute_at == clock.now + 3600  # ...but its index entry may not, should the end be lifted


@pytest.mark.parametrize("bad", ["300", True, [1]])
def test_set_expiry_takes_numbers_only(manager: SessionManager, bad: Any) -> None:
    s: Session = manager.load(token(None))
    with pytest.raises(TypeError):
        s.set_expiry(bad)
    with pytest.raises(TypeError):
        s.set_expiry(at=bad)
    assert not s.expiry_changed


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_set_expiry_refuses_non_finite_numbers(manager: SessionManager, bad: float) -> None:
    s = manager.load(token(None))
    with pytest.raises(ValueError, match="finite"):
        s.set_expiry(bad)
    with pytest.raises(ValueError, match="finite"):
        s.set_expiry(at=bad)
