"""The audit log turns lifecycle events into entries the sessions page can say in any
language: what happened, on which device, and for an ended session why."""

from __future__ import annotations

import asyncio

from serversession import SessionInfo
from serversession.core.events import EventKind, SessionEvent
from serversession.demo import audit
from serversession.demo.audit import AuditLog

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"  # noqa: E501


def info(handle: str, user_agent: str = IPHONE) -> SessionInfo:
    return SessionInfo(handle, "alice", 1.0, 1.0, 2.0, 3.0, user_agent, "127.0.0.1")


def feed(log: AuditLog, *events: SessionEvent) -> None:
    async def run() -> None:
        for event in events:
            await log.on_event(event)

    asyncio.run(run())


def test_the_shops_reasons_come_back_as_structure() -> None:
    log = AuditLog()
    signed_in = log.reason("sign_in", "Firefox on Linux")
    assert signed_in == "Signed in on Firefox on Linux"  # English for the server log
    log.know([info("phone")])
    feed(
        log,
        SessionEvent(EventKind.ROTATED, 10.0, "laptop", "alice", signed_in, previous_handle="anon"),
        SessionEvent(EventKind.REVOKED, 11.0, "phone", "alice", log.reason("end_one", "Firefox on Linux")),
        SessionEvent(EventKind.REVOKED, 12.0, "tablet", "alice", log.reason("revoke_others", "Firefox on Linux")),
        SessionEvent(EventKind.DESTROYED, 13.0, "laptop", "alice", log.reason("sign_out", "Firefox on Linux")),
    )
    newest, ended_elsewhere, ended_here, first = log.recent("alice")
    assert (first.what, first.device, first.ended) == ("signed_in", "Firefox on Linux", False)
    assert (ended_here.what, ended_here.device, ended_here.by) == ("ended_by_you", "Safari on iOS", "Firefox on Linux")
    assert ended_here.ended
    assert (ended_elsewhere.what, ended_elsewhere.device) == ("signed_out_elsewhere", "")  # never seen: no device
    assert (newest.what, newest.device) == ("signed_out", "Firefox on Linux")


def test_a_password_change_tells_this_device_once_and_every_ended_one() -> None:
    log = AuditLog()
    log.know([info("phone"), info("laptop", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")])
    reason = log.reason("password", "Firefox on Linux")
    feed(
        log,
        SessionEvent(EventKind.ROTATED, 5.0, "laptop-2", "alice", reason, previous_handle="laptop"),
        SessionEvent(EventKind.REVOKED, 5.0, "phone", "alice", reason),
    )
    ended, here = log.recent("alice")
    assert (here.what, here.device) == ("password_changed_here", "Firefox on Linux")
    assert (ended.what, ended.device, ended.by) == ("password_changed", "Safari on iOS", "Firefox on Linux")


def test_the_librarys_own_reasons_are_classed_by_kind() -> None:
    log = AuditLog(eviction_reason="signed out: too many")
    log.know([info("a"), info("b"), info("c")])
    feed(
        log,
        SessionEvent(EventKind.REVOKED, 1.0, "a", "alice", "signed out: too many"),
        SessionEvent(EventKind.EXPIRED, 2.0, "b", "alice", "idle timeout"),
        SessionEvent(EventKind.EXPIRED, 3.0, "c", "alice", "absolute timeout"),
        SessionEvent(EventKind.REVOKED, 4.0, "d", "alice", "Password changed on Edge on Windows"),  # another process's
        SessionEvent(EventKind.RENEWED, 5.0, "e", "alice"),
        SessionEvent(EventKind.CREATED, 6.0, "f", None),  # anonymous: not an account event
    )
    whats = [(e.what, e.device, e.text) for e in reversed(log.recent("alice"))]
    assert whats == [
        ("too_many_sessions", "Safari on iOS", "signed out: too many"),
        ("timed_out_idle", "Safari on iOS", "idle timeout"),
        ("timed_out_absolute", "Safari on iOS", "absolute timeout"),
        ("ended_other", "", "Password changed on Edge on Windows"),
    ]
    assert all(e.ended for e in log.recent("alice"))


def test_a_sign_in_that_created_its_session_is_looked_up_for_its_device() -> None:
    async def sessions_of(user: str) -> list[SessionInfo]:
        return [info("new")]

    log = AuditLog(sessions_of)
    feed(log, SessionEvent(EventKind.CREATED, 1.0, "new", "alice"))
    (entry,) = log.recent("alice")
    assert (entry.what, entry.device) == ("signed_in", "Safari on iOS")


def test_memory_stays_bounded() -> None:
    log = AuditLog()
    log.know([info(f"h{i}") for i in range(audit.MAX_REMEMBERED + 50)])
    for i in range(audit.MAX_REMEMBERED + 50):
        log.reason("sign_in", f"device {i}")
    feed(log, *(SessionEvent(EventKind.DESTROYED, float(i), f"h{i}", "alice") for i in range(audit.MAX_EVENTS + 5)))
    assert len(log.recent("alice")) == audit.MAX_EVENTS
    assert len(log._devices) <= audit.MAX_REMEMBERED and len(log._reasons) <= audit.MAX_REMEMBERED
