"""The authentication controls, driven through the sync manager with a fake clock:
``authenticated_at``, ``reauthenticated()``, ``require_recent_auth()`` and
``credential_changed()``, including the race with a sign-in on another process."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from core_fakes import Clock, CountingStore

from serversession import MemoryStore, ReauthenticationRequired, SessionConfig, SessionError, SessionManager
from serversession.core import _credentials as credentials
from serversession.core.codec import SessionMeta
from serversession.core.events import EventKind, SessionEvent
from serversession.core.guard import refusal_for_error
from serversession.core.session import Session
from serversession.core.steps import Create, ListUser
from serversession.core.transport import IncomingToken


def token(value: str | None) -> IncomingToken:
    return IncomingToken(value, via_header=False)


def cookie_of(result: Any) -> str:
    return str(result.set_cookies[0].split(";")[0].split("=", 1)[1])


def sign_in(manager: SessionManager, user: str = "alice", **data: Any) -> str:
    s = manager.load(token(None))
    s.update(data)
    s.user = user
    s.rotate()
    return cookie_of(manager.save(s))


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


# -- authenticated_at --------------------------------------------------------------------------


def test_authenticated_at_is_set_at_sign_in_kept_across_rotation_and_cleared_at_sign_out(
    manager: SessionManager, clock: Clock
) -> None:
    s = manager.load(token(None))
    s["cart"] = [1]
    assert s.authenticated_at is None
    anonymous = cookie_of(manager.save(s))
    assert manager.load(token(anonymous)).authenticated_at is None

    clock.advance(10)
    s = manager.load(token(anonymous))
    s.user = "alice"
    at = s.authenticated_at
    assert at == utc(clock.now) and at.tzinfo is timezone.utc
    s.rotate()
    signed_in = cookie_of(manager.save(s))
    assert manager.load(token(signed_in)).authenticated_at == at

    clock.advance(100)
    s = manager.load(token(signed_in))
    s.rotate()  # a privilege change: the authentication time stays
    rotated = cookie_of(manager.save(s))
    assert manager.load(token(rotated)).authenticated_at == at
    assert manager.list_sessions("alice")[0].authenticated_at == at.timestamp()

    s = manager.load(token(rotated))
    s.user = None
    manager.save(s)
    again = manager.load(token(rotated))
    assert again.authenticated_at is None and again.meta.authenticated_at is None


def test_binding_another_user_is_a_new_sign_in(manager: SessionManager, clock: Clock) -> None:
    sid = sign_in(manager, "alice")
    clock.advance(30)
    s = manager.load(token(sid))
    s.user = "bob"
    s.rotate()
    assert manager.load(token(cookie_of(manager.save(s)))).authenticated_at == utc(clock.now)


def test_reauthenticated_renews_the_time_and_costs_one_commit(
    manager: SessionManager, store: CountingStore, clock: Clock
) -> None:
    sid = sign_in(manager)
    clock.advance(200)
    s = manager.load(token(sid))
    store.calls.clear()
    s.reauthenticated()
    assert s.authenticated_at == utc(clock.now)
    assert manager.save(s).set_cookies == ()  # the ID stays
    assert store.calls == ["commit"]
    assert manager.load(token(sid)).authenticated_at == utc(clock.now)


def test_reauthenticated_needs_a_user(manager: SessionManager) -> None:
    with pytest.raises(RuntimeError, match="no user is bound"):
        manager.load(token(None)).reauthenticated()


def test_without_a_manager_the_save_stamps_the_time(config: SessionConfig, clock: Clock) -> None:
    from serversession.core import lifecycle

    s = Session(config, session_id=None, key=None, data={}, meta=SessionMeta(clock.now, clock.now))
    s.user = "alice"
    assert s.authenticated_at is None  # not yet: no clock at hand
    s.require_recent_auth(0, now=clock.now + 5)  # it authenticated in this very request
    plan = lifecycle.save(s, clock.now + 1)
    step = next(plan)
    while True:
        try:
            step = plan.send(True if isinstance(step, Create) else [] if isinstance(step, ListUser) else None)
        except StopIteration:
            break
    assert s.authenticated_at == utc(round(clock.now + 1, 3))


def test_a_reserved_user_name_is_refused(manager: SessionManager) -> None:
    with pytest.raises(ValueError, match="reserved"):
        manager.load(token(None)).user = "\x1fcredential-change\x1falice"


# -- require_recent_auth -----------------------------------------------------------------------


def test_require_recent_auth_passes_within_max_age_and_raises_after(manager: SessionManager, clock: Clock) -> None:
    sid = sign_in(manager)
    signed_in_at = clock.now
    clock.advance(299)
    manager.load(token(sid)).require_recent_auth(300)
    clock.advance(2)
    s = manager.load(token(sid))
    with pytest.raises(ReauthenticationRequired) as info:
        s.require_recent_auth(300)
    assert isinstance(info.value, SessionError)
    assert info.value.max_age == 300 and info.value.authenticated_at == utc(signed_in_at)
    s.reauthenticated()
    s.require_recent_auth(300)
    manager.save(s)
    manager.load(token(sid)).require_recent_auth(0)


def test_require_recent_auth_refuses_an_anonymous_session(manager: SessionManager) -> None:
    s = manager.load(token(None))
    with pytest.raises(ReauthenticationRequired) as info:
        s.require_recent_auth(math.inf)
    assert info.value.authenticated_at is None


@pytest.mark.parametrize(("value", "error"), [("300", TypeError), (True, TypeError), (math.nan, ValueError)])
def test_require_recent_auth_checks_its_argument(manager: SessionManager, value: Any, error: type) -> None:
    with pytest.raises(error):
        manager.load(token(sign_in(manager))).require_recent_auth(value)


def test_a_missing_reauthentication_is_a_401_that_says_so() -> None:
    refusal = refusal_for_error(ReauthenticationRequired("old", max_age=1, authenticated_at=None))
    assert refusal is not None and refusal.status == 401 and refusal.reason == "reauth_required"
    body = refusal.content()
    assert body["reauth_required"] is True and "password" in body["error"]
    assert refusal.body() == b'{"error": "' + refusal.message.encode() + b'", "reauth_required": true}'


# -- credential_changed ------------------------------------------------------------------------


def events_of(manager: SessionManager) -> list[SessionEvent]:
    events: list[SessionEvent] = []
    manager.add_listener(events.append)
    return events


def test_credential_changed_rotates_this_session_and_ends_the_others(manager: SessionManager, clock: Clock) -> None:
    laptop = sign_in(manager, cart=[1])
    phone, tablet = sign_in(manager), sign_in(manager)
    bob = sign_in(manager, "bob")
    clock.advance(500)
    events = events_of(manager)
    s = manager.load(token(laptop))
    old_token = s.csrf_token
    s["note"] = "changed it"
    assert s.credential_changed("password changed on Firefox") == 2
    assert manager.load(token(laptop)).is_new  # the old ID is dead at once
    assert s.csrf_token != old_token and s.authenticated_at == utc(clock.now)
    new_id = cookie_of(manager.save(s))  # this request's response carries the new ID
    assert new_id != laptop
    again = manager.load(token(new_id))
    assert dict(again) == {"cart": [1], "note": "changed it"} and again.authenticated_at == utc(clock.now)
    again.require_recent_auth(1)
    assert all(manager.load(token(t)).is_new for t in (phone, tablet))
    assert not manager.load(token(bob)).is_new
    assert [i.current for i in manager.list_sessions("alice", current=again)] == [True]
    revoked = [e for e in events if e.kind is EventKind.REVOKED]
    assert len(revoked) == 2 and {e.reason for e in revoked} == {"password changed on Firefox"}
    rotated = [e for e in events if e.kind is EventKind.ROTATED]
    assert len(rotated) == 1 and rotated[0].reason == "password changed on Firefox"
    assert manager.save(again).set_cookies == ()  # the new ID was sent once


def test_credential_changed_needs_a_user(manager: SessionManager) -> None:
    with pytest.raises(RuntimeError, match="bound to a user"):
        manager.load(token(None)).credential_changed()


def test_credential_changed_on_a_session_not_stored_yet_creates_it(manager: SessionManager) -> None:
    other = sign_in(manager)
    s = manager.load(token(None))
    s.user = "alice"
    assert manager.credential_changed(s) == 1
    assert manager.load(token(other)).is_new
    assert manager.load(token(cookie_of(manager.save(s)))).user == "alice"


def test_the_marker_is_no_session_and_only_ever_moves_forward(
    manager: SessionManager, store: CountingStore, clock: Clock
) -> None:
    inner: MemoryStore = store.inner
    s = manager.load(token(sign_in(manager)))
    manager.credential_changed(s)
    first = clock.now
    marker = credentials.find(inner.list_user(credentials.owner("alice")), "alice")
    assert marker is not None and marker[0] == first
    assert [i.handle for i in manager.list_sessions("alice")] == [s.handle]
    assert manager.list_sessions(credentials.owner("alice")) != []  # under its reserved name only
    earlier = SessionManager(store, manager.config, clock=lambda: first - 10)  # a process whose clock lags
    earlier.credential_changed(manager.load(token(cookie_of(manager.save(s)))))
    assert credentials.find(inner.list_user(credentials.owner("alice")), "alice")[0] == first  # type: ignore[index]
    clock.advance(5)
    s = manager.load(token(sign_in(manager)))
    manager.credential_changed(s)
    assert credentials.find(inner.list_user(credentials.owner("alice")), "alice")[0] == clock.now  # type: ignore[index]


# -- the race with a sign-in on another process --------------------------------------------------


class Interleaving(CountingStore):
    """Runs ``hook`` once, just before the first ``when`` call that matches."""

    def __init__(self, inner: Any, when: Callable[[str, tuple[Any, ...]], bool], hook: Callable[[], None]) -> None:
        super().__init__(inner)
        self.when, self.hook, self.fired = when, hook, False

    def __getattr__(self, name: str) -> Any:
        target = super().__getattr__(name)
        if not callable(target):
            return target

        def call(*args: Any) -> Any:
            if not self.fired and self.when(name, args):
                self.fired = True
                self.hook()
            return target(*args)

        return call


def racing_sign_in(other: SessionManager) -> tuple[Session, Callable[[], None], list[Any]]:
    """A sign-in whose request loaded (and checked the old password) now, bound later by ``finish``."""
    pending = other.load(token(None))
    results: list[Any] = []

    def finish() -> None:
        pending.user = "alice"
        pending.rotate()
        results.append(other.save(pending))

    return pending, finish, results


@pytest.mark.parametrize(
    "moment",
    [
        "before the marker",  # the sweep sees it
        "before the sweep lists",  # both see each other
        "during the sweep's deletes",  # only the marker catches it
        "after the change returned",  # the marker catches it
    ],
)
def test_a_sign_in_checked_before_the_change_never_survives(
    config: SessionConfig, clock: Clock, moment: str
) -> None:
    shared = MemoryStore(clock=clock)
    other = SessionManager(shared, config, clock=clock)  # another process on the same store
    mine = SessionManager(shared, config, clock=clock)
    laptop = mine.load(token(sign_in(mine)))
    victim = sign_in(mine)
    pending, finish, results = racing_sign_in(other)
    clock.advance(1)
    owner = credentials.owner("alice")
    when = {
        "before the marker": lambda name, args: name == "list_user" and args == (owner,),
        "before the sweep lists": lambda name, args: name == "list_user" and args == ("alice",),
        "during the sweep's deletes": lambda name, args: name == "delete",
        "after the change returned": lambda name, args: False,
    }[moment]
    events = events_of(other)
    mine.store = Interleaving(shared, when, finish)
    ended = mine.credential_changed(laptop, reason="password changed")
    if not results:
        finish()
    assert results[0].ended or moment == "before the marker"  # then the sweep ended it
    assert ended in (1, 2)
    assert mine.load(token(victim)).is_new
    assert [i.handle for i in mine.list_sessions("alice")] == [laptop.handle]
    if moment != "before the marker":
        voided = [e for e in events if e.kind is EventKind.REVOKED]
        assert [e.reason for e in voided] == ["password changed"]
    assert pending.key is not None and shared.load(pending.key) is None


def test_a_sign_in_after_the_change_is_not_voided(manager: SessionManager, clock: Clock) -> None:
    s = manager.load(token(sign_in(manager)))
    manager.credential_changed(s)
    clock.advance(0.001)
    later = sign_in(manager)  # loaded after the change: checked the new password
    assert manager.load(token(later)).user == "alice"
    assert len(manager.list_sessions("alice")) == 2


def test_a_sign_in_binds_with_one_more_store_call(manager: SessionManager, store: CountingStore) -> None:
    s = manager.load(token(None))
    s.user = "alice"
    manager.save(s)
    assert store.calls == ["create", "list_user"]  # the credential-change marker, read after the write
    store.calls.clear()
    manager.credential_changed(s)
    assert store.calls == ["list_user", "create", "rotate", "list_user"]  # marker read, written; no one else


# -- the command line lists the authentication time (here: the feature's one CLI output) --------


def test_the_cli_lists_the_authentication_time_and_no_marker(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from serversession import SQLiteStore
    from serversession.cli import main

    path = tmp_path / "s.db"
    manager = SessionManager(SQLiteStore(path), SessionConfig())
    laptop = manager.load(token(sign_in(manager)))
    sign_in(manager)
    anonymous = manager.load(token(None))
    anonymous["cart"] = [1]
    manager.save(anonymous)
    manager.credential_changed(laptop)
    manager.store.close()
    assert main(["sessions", "list", "--store", f"sqlite:///{path}", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2  # the signed-in session and the anonymous one; no marker, no ended session
    by_user = {row["user"]: row for row in rows}
    assert datetime.fromisoformat(by_user["alice"]["authenticated_at"]).tzinfo is not None
    assert by_user[None]["authenticated_at"] is None
    assert main(["sessions", "list", "--store", f"sqlite:///{path}"]) == 0
    table = capsys.readouterr().out
    assert "AUTHENTICATED" in table and "2 session(s)" in table
