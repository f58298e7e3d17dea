"""What a Session shows its users, the working state it keeps private, and its deferred read."""

from __future__ import annotations

import asyncio

import pytest
from core_fakes import Clock

from serversession import SessionConfig, SessionManager
from serversession.core import csrf
from serversession.core.codec import SessionMeta
from serversession.core.session import (
    Session,
    SessionNotLoadedError,
    attach,
    deferred,
    load_seq,
    read_failed,
    stored_text,
)
from serversession.core.transport import IncomingToken
from serversession.exceptions import SessionError, StoreUnavailableError

#: The manager's bookkeeping: private now.
PRIVATE = ("manager", "load_seq")
#: Working state core/lifecycle.py still reads or writes by these names: private once it goes
#: through the internal interface (its owner's change; see the xfail below).
PRIVATE_LATER = ("base", "pre_csrf_secret", "pre_csrf_issued", "create_requested", "user_changed",
                 "persistent_changed", "expiry_changed", "auth_changed", "auth_stamp_due", "reissue_requested",
                 "end_reason", "settle", "accept", "delta", "encoded_data", "mark_authenticated")  # fmt: skip
#: What integrations read: read-only properties.
READ_ONLY = ("accessed", "presented", "via_header", "modified", "destroyed", "destroy_requested", "rotate_requested",
             "loaded")  # fmt: skip


def fresh(config: SessionConfig, clock: Clock, **options: object) -> Session:
    meta = SessionMeta(clock.now, clock.now)
    return Session(config, session_id=None, key=None, data={}, meta=meta, **options)  # type: ignore[arg-type]


def test_the_managers_bookkeeping_is_not_public(config: SessionConfig, clock: Clock) -> None:
    s = fresh(config, clock)
    assert [name for name in PRIVATE if hasattr(s, name)] == []


@pytest.mark.xfail(strict=True, reason="core/lifecycle.py still uses these names (owned by another helper)")
def test_the_lifecycles_working_state_is_not_public(config: SessionConfig, clock: Clock) -> None:
    s = fresh(config, clock)
    assert [name for name in PRIVATE_LATER if hasattr(s, name)] == []


@pytest.mark.parametrize("name", READ_ONLY)
def test_what_integrations_read_cannot_be_written(config: SessionConfig, clock: Clock, name: str) -> None:
    s = fresh(config, clock)
    getattr(s, name)
    with pytest.raises(AttributeError):
        setattr(s, name, True)


def test_modified_and_destroyed_follow_the_requests_calls(config: SessionConfig, clock: Clock) -> None:
    s = fresh(config, clock)
    assert not s.modified and not s.destroyed
    s["a"] = 1
    assert s.modified and not s.destroyed
    rotated = fresh(config, clock)
    rotated.rotate()
    assert rotated.modified and rotated.rotate_requested
    ended = fresh(config, clock)
    ended.destroy()
    assert ended.modified and ended.destroyed and ended.destroy_requested


def test_discarding_the_pre_session_csrf_secret_makes_its_token_fail(manager: SessionManager) -> None:
    secret = "s" * 43
    s = manager.load(IncomingToken(None, via_header=False, csrf_secret=secret))
    old = csrf.token_for(secret)
    assert s.csrf_valid(old)
    s.discard_pre_session_csrf()
    assert not s.csrf_valid(old)
    assert s.csrf_token != old and s.csrf_valid(s.csrf_token)


def test_backdate_load_only_ever_moves_the_load_earlier(config: SessionConfig, clock: Clock) -> None:
    s = fresh(config, clock, loaded_at=clock.now)
    s.backdate_load(clock.now + 5)
    assert s.loaded_at == clock.now
    s.backdate_load(clock.now - 5)
    assert s.loaded_at == clock.now - 5


def test_the_managers_accessors(manager: SessionManager, config: SessionConfig, clock: Clock) -> None:
    s = manager.load(IncomingToken(None, via_header=True))
    s["n"] = 1
    token = manager.save(s).header_token
    again = manager.load(IncomingToken(token, via_header=True))
    assert load_seq(again) > load_seq(s) >= 0 and stored_text(again, "n") == "1" and stored_text(again, "x") is None
    other = fresh(config, clock)
    with pytest.raises(RuntimeError, match="not attached"):
        other.require_recent_auth(60)
    attach(other, manager, 7)
    assert load_seq(other) == 7
    with pytest.raises(SessionError, match="authenticat"):  # attached: it reads the manager's clock
        other.require_recent_auth(60)


# -- the deferred read ----------------------------------------------------------------------


class Loader:
    """Counts reads; hands out ``session``, or raises ``error``, or refuses to block."""

    def __init__(self, session: Session | None = None, error: Exception | None = None) -> None:
        self.session, self.error, self.reads = session, error, 0

    @property
    def failed(self) -> bool:
        return self.error is not None and self.reads > 0

    def load(self) -> Session:
        self.reads += 1
        if self.error is not None:
            raise self.error
        assert self.session is not None
        return self.session

    async def aload(self) -> Session:
        return self.load()


def stored(config: SessionConfig, clock: Clock, **data: str) -> Session:
    meta = SessionMeta(clock.now, clock.now, csrf_secret="c" * 43)
    return Session(config, session_id="id", key="key", data=data, meta=meta, presented=True, loaded_at=clock.now)


def test_a_deferred_session_reads_at_its_first_use_and_only_then(config: SessionConfig, clock: Clock) -> None:
    loader = Loader(stored(config, clock, a='"x"', b="2"))
    s = deferred(config, loader, via_header=False)
    assert not s.loaded and not s.accessed and not s.modified and not s.via_header and s.presented
    assert repr(s) == "<Session (not read from the store yet)>" and s.config is config
    assert loader.reads == 0  # none of that read the store
    assert s["a"] == "x"
    assert s.loaded and s.accessed and loader.reads == 1
    assert dict(s) == {"a": "x", "b": 2} and s.key == "key" and s.handle is not None and loader.reads == 1


@pytest.mark.parametrize("first_use", ["rotate", "destroy", "ensure_stored", "set", "user", "csrf", "len"])
def test_every_first_use_reads_first_and_keeps_what_it_did(config: SessionConfig, clock: Clock,
                                                           first_use: str) -> None:  # fmt: skip
    loader = Loader(stored(config, clock, a="1"))
    s = deferred(config, loader, via_header=True)
    if first_use == "rotate":
        s.rotate("signed in")
        assert s.rotate_requested and s.modified
    elif first_use == "destroy":
        s.destroy()
        assert s.destroyed
    elif first_use == "ensure_stored":
        s.ensure_stored()
        assert s.create_requested
    elif first_use == "set":
        s["b"] = 2
        assert s.has_changes and s["a"] == 1
    elif first_use == "user":
        s.user = "alice"
        assert s.user_changed and s.user == "alice"
    elif first_use == "csrf":
        assert s.csrf_valid(s.csrf_token) and s.accessed
    else:
        assert len(s) == 1 and s.accessed
    assert loader.reads == 1 and s.loaded and s.key == "key"


def test_a_loader_that_must_not_block_says_to_await(config: SessionConfig, clock: Clock) -> None:
    loader = Loader(stored(config, clock, a="1"), error=SessionNotLoadedError("await session.aload()"))
    s = deferred(config, loader, via_header=False)
    with pytest.raises(SessionNotLoadedError, match=r"await session\.aload\(\)") as caught:
        s.get("a")
    assert isinstance(caught.value, SessionError) and not s.loaded
    loader.error = None
    assert asyncio.run(s.aload()) is s and s["a"] == 1 and s.loaded
    assert asyncio.run(s.aload()) is s and s.load() is s and loader.reads == 2  # the refused try and the read


def test_a_failed_read_raises_at_the_use_and_is_seen_by_the_kit(config: SessionConfig, clock: Clock) -> None:
    loader = Loader(error=StoreUnavailableError("down", store="test", operation="load"))
    s = deferred(config, loader, via_header=False)
    assert not read_failed(s)
    with pytest.raises(StoreUnavailableError):
        s["a"]
    assert read_failed(s) and not s.loaded
    assert not read_failed(stored(config, clock))
