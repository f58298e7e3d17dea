"""Lifecycle events carry handles and reasons, never session IDs."""

from __future__ import annotations

from core_fakes import Clock

from serversession import SessionManager
from serversession.core.events import EventKind, SessionEvent
from serversession.core.records import Commit
from serversession.core.transport import IncomingToken


def test_each_lifecycle_step_emits_one_event_without_the_id(manager: SessionManager, clock: Clock) -> None:
    events: list[SessionEvent] = []
    manager.add_listener(events.append)
    s = manager.load(IncomingToken(None, via_header=False))
    s["x"] = 1
    sid = manager.save(s).set_cookies[0].split(";")[0].split("=", 1)[1]
    s = manager.load(IncomingToken(sid, via_header=False))
    s.user = "alice"
    s.rotate()
    sid2 = manager.save(s).set_cookies[0].split(";")[0].split("=", 1)[1]
    clock.advance(120)
    manager.save(manager.load(IncomingToken(sid2, via_header=False)))  # renewal
    other = manager.load(IncomingToken(None, via_header=False))
    other.user = "alice"
    manager.save(other)
    manager.revoke_user("alice", keep=s, reason="signed out from another device")
    s2 = manager.load(IncomingToken(sid2, via_header=False))
    s2.destroy()
    manager.save(s2)
    manager.load(IncomingToken(sid, via_header=False))  # the rotated-away ID
    kinds = [e.kind for e in events]
    assert kinds == [
        EventKind.CREATED,
        EventKind.ROTATED,
        EventKind.RENEWED,
        EventKind.CREATED,
        EventKind.REVOKED,
        EventKind.DESTROYED,
        EventKind.UNKNOWN_ID,
    ]
    assert events[4].reason == "signed out from another device" and events[5].reason == "logout"
    assert events[1].previous_handle == events[0].handle and events[1].user == "alice"
    for e in events:
        assert sid not in repr(e) and sid2 not in repr(e)


def test_expiry_is_reported_with_its_reason(manager: SessionManager, clock: Clock) -> None:
    events: list[SessionEvent] = []

    def boom(event: SessionEvent) -> None:
        raise RuntimeError("a broken listener must not break the request")

    manager.add_listener(boom)
    manager.add_listener(events.append)
    s = manager.load(IncomingToken(None, via_header=False))
    s["x"] = 1
    sid = manager.save(s).set_cookies[0].split(";")[0].split("=", 1)[1]
    # Stretch the stored expiry so the store still has the session and the lifecycle
    # sees the idle timeout itself (a store without native expiry).
    manager.store.inner.commit(s.key, Commit(expires_at=clock() + 10_000))
    clock.advance(601)
    assert manager.load(IncomingToken(sid, via_header=False)).expired
    assert [(e.kind, e.reason) for e in events][-1] == (EventKind.EXPIRED, "idle timeout")
