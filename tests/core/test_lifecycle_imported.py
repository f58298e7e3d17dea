"""Rule 9: a session imported from another framework loads once under its old cookie value,
then moves to a server-made ID; nothing else is ever found through a legacy-shaped value.

Run on the memory and SQLite stores with a fixed clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_fakes import Clock

from serversession import MemoryStore, SessionConfig, SessionManager, SQLiteStore
from serversession.core.ids import is_well_formed, storage_key
from serversession.core.records import IMPORTED_KEY, Commit
from serversession.core.transport import IncomingToken, read_token, resolve_token
from serversession.exceptions import ConfigurationError
from serversession.importers.base import LegacySession, encode_data, imported_commit

DJANGO_KEY = "k2mx0v9b3qz7w1n8r4t6y5u2i0o9p8a7"  # Django's shape: 32 lower-case letters and digits
ON = SessionConfig(accept_imported=True, cookie_secure=False)


@pytest.fixture(params=["memory", "sqlite"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    def make(clock: Clock) -> Any:
        if request.param == "memory":
            return MemoryStore(clock=clock)
        return SQLiteStore(str(tmp_path / "s.sqlite3"), clock=clock)

    yield make


def import_one(store: Any, now: float, token: str = DJANGO_KEY, ttl: float = 3600.0, **data: Any) -> None:
    item = LegacySession(token=token, label=token[:8], data=data, expires_at=now + ttl, user=data.get("uid"))
    encoded = encode_data(item)
    assert isinstance(encoded, dict)
    key, commit = imported_commit(item, encoded, "test", now)
    assert store.create(key, commit)


def cookie(result: Any, name: str = "session") -> str | None:
    for line in result.set_cookies:
        if line.startswith(f"{name}="):
            return str(line.split(";")[0].split("=", 1)[1])
    return None


def test_an_imported_session_loads_once_under_its_old_value_then_rotates(store_factory: Any) -> None:
    clock = Clock()
    store = store_factory(clock)
    import_one(store, clock.now, cart=[1, 2], uid="42")
    manager = SessionManager(store, ON, clock=clock)
    clock.advance(10)
    s = manager.load(IncomingToken(DJANGO_KEY, via_header=False))
    assert not s.is_new and dict(s) == {"cart": [1, 2], "uid": "42"}  # the marker is hidden
    assert s.user == "42"
    new_id = cookie(manager.save(s))
    assert new_id is not None and is_well_formed(new_id)
    again = manager.load(IncomingToken(new_id, via_header=False))
    assert dict(again) == {"cart": [1, 2], "uid": "42"} and again.user == "42"
    assert IMPORTED_KEY not in store.load(storage_key(new_id)).data
    assert cookie(manager.save(again)) is None  # an ordinary session now: no second rotation
    replay = manager.load(IncomingToken(DJANGO_KEY, via_header=False))
    assert replay.is_new and dict(replay) == {}


def test_a_legacy_shaped_value_never_creates_a_session(store_factory: Any) -> None:
    clock = Clock()
    manager = SessionManager(store_factory(clock), ON, clock=clock)
    s = manager.load(IncomingToken(DJANGO_KEY, via_header=False))
    assert s.is_new
    s["x"] = 1
    new_id = cookie(manager.save(s))
    assert new_id != DJANGO_KEY and new_id is not None and is_well_formed(new_id)


def test_an_ordinary_record_is_never_found_through_a_legacy_value(store_factory: Any) -> None:
    clock = Clock()
    store = store_factory(clock)
    # A record (not imported) filed under the hash of a legacy-shaped value: only a hash
    # preimage could put one there, and it is still refused.
    store.create(storage_key(DJANGO_KEY), Commit(set_data={"x": "1"}, meta={"c": str(clock.now), "s": str(clock.now)},
                                                 expires_at=clock.now + 60))  # fmt: skip
    manager = SessionManager(store, ON, clock=clock)
    assert manager.load(IncomingToken(DJANGO_KEY, via_header=False)).is_new


def test_with_the_switch_off_neither_the_value_nor_the_record_is_believed(store_factory: Any) -> None:
    clock = Clock()
    store = store_factory(clock)
    strict_shaped = "A" * 43  # Flask-Session's IDs have our shape: the marker still decides
    import_one(store, clock.now, x=1)
    import_one(store, clock.now, token=strict_shaped, x=2)
    off = SessionManager(store, SessionConfig(cookie_secure=False), clock=clock)
    assert off.load(IncomingToken(DJANGO_KEY, via_header=False)).is_new
    assert off.load(IncomingToken(strict_shaped, via_header=False)).is_new
    on = SessionManager(store, ON, clock=clock)
    s = on.load(IncomingToken(strict_shaped, via_header=False))
    assert dict(s) == {"x": 2}
    assert cookie(on.save(s)) not in (None, strict_shaped)


def test_the_incumbents_expiry_carries_over_bounded_by_the_absolute_timeout(store_factory: Any) -> None:
    clock = Clock()
    store = store_factory(clock)
    import_one(store, clock.now, ttl=7200, x=1)  # longer than the idle timeout below
    config = SessionConfig(accept_imported=True, cookie_secure=False, idle_timeout=600, absolute_timeout=3600)
    manager = SessionManager(store, config, clock=clock)
    clock.advance(1800)  # past the idle timeout: an imported session was never idle here
    assert not manager.load(IncomingToken(DJANGO_KEY, via_header=False)).is_new
    clock.advance(1800)  # the absolute timeout, counted from the import
    s = manager.load(IncomingToken(DJANGO_KEY, via_header=False))
    assert s.is_new and s.expired


def test_an_imported_session_past_its_expiry_is_ended(store_factory: Any) -> None:
    clock = Clock()
    store = store_factory(clock)
    import_one(store, clock.now, ttl=60, x=1)
    manager = SessionManager(store, ON, clock=clock)
    clock.advance(61)
    s = manager.load(IncomingToken(DJANGO_KEY, via_header=False))
    assert s.is_new and s.expired


def test_an_imported_session_is_due_for_renewal_so_django_saves_it(store_factory: Any) -> None:
    from serversession.core.lifecycle import renewal_due

    clock = Clock()
    store = store_factory(clock)
    import_one(store, clock.now, x=1)
    manager = SessionManager(store, ON, clock=clock)
    s = manager.load(IncomingToken(DJANGO_KEY, via_header=False))
    assert renewal_due(ON, s.meta, clock.now) and s.rotate_requested


def test_the_legacy_cookie_is_read_when_ours_is_absent_and_retired_by_the_response(store_factory: Any) -> None:
    clock = Clock()
    store = store_factory(clock)
    flask_value = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5.c2lnbmF0dXJl"
    import_one(store, clock.now, token=flask_value, x=1)
    config = SessionConfig(accept_imported=True, legacy_cookie_name="session")  # ours: __Host-session
    manager = SessionManager(store, config, clock=clock)
    token = read_token(config, f"session={flask_value}", None)
    assert token.value == flask_value
    s = manager.load(token)
    assert dict(s) == {"x": 1}
    result = manager.save(s)
    ours = cookie(result, "__Host-session")
    assert ours is not None and is_well_formed(ours)
    assert any(c.startswith("session=;") and "Max-Age=0" in c for c in result.set_cookies)
    # Ours wins when both are sent (a browser that has switched keeps the old one until it expires).
    both = read_token(config, f"session={flask_value}; __Host-session={ours}", None)
    assert both.value == ours


def test_a_dead_legacy_cookie_is_cleared_once() -> None:
    config = SessionConfig(accept_imported=True, legacy_cookie_name="session")
    manager = SessionManager(MemoryStore(), config)
    s = manager.load(read_token(config, f"session={DJANGO_KEY}", None))
    assert s.is_new
    result = manager.save(s)
    assert any(c.startswith("session=;") for c in result.set_cookies)


def test_legacy_values_are_shape_checked_before_any_store_read() -> None:
    assert resolve_token(ON, DJANGO_KEY) == (DJANGO_KEY, False)
    assert resolve_token(ON, "short") is None  # too short to be worth a lookup
    assert resolve_token(ON, "a" * 129) is None
    assert resolve_token(ON, "bad value;with=junk") is None
    assert resolve_token(SessionConfig(), DJANGO_KEY) is None  # off: garbage, as before


def test_the_configuration_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="accept_imported"):
        SessionConfig(legacy_cookie_name="session")
    with pytest.raises(ConfigurationError, match="cookie name"):
        SessionConfig(accept_imported=True, legacy_cookie_name="bad name")
    assert SessionConfig().accept_imported is False


def test_with_signed_ids_an_imported_value_loads_and_the_new_id_is_signed(store_factory: Any) -> None:
    clock = Clock()
    store = store_factory(clock)
    import_one(store, clock.now, x=1)
    config = SessionConfig(accept_imported=True, cookie_secure=False, secret_keys=["k" * 32])
    manager = SessionManager(store, config, clock=clock)
    s = manager.load(IncomingToken(DJANGO_KEY, via_header=False))
    assert dict(s) == {"x": 1}
    issued = cookie(manager.save(s))
    assert issued is not None and "." in issued  # signed, as every ID under this config
    assert dict(manager.load(IncomingToken(issued, via_header=False))) == {"x": 1}


def test_two_first_requests_at_once_end_with_one_new_id(store_factory: Any) -> None:
    clock = Clock()
    store = store_factory(clock)
    import_one(store, clock.now, n=0)
    manager = SessionManager(store, ON, clock=clock)
    one = manager.load(IncomingToken(DJANGO_KEY, via_header=False))
    two = manager.load(IncomingToken(DJANGO_KEY, via_header=False))  # another tab, same old cookie
    one["a"] = 1
    two["b"] = 2
    winner = cookie(manager.save(one))
    late = manager.save(two)
    assert winner is not None and late.moved and cookie(late) is None  # the late one does not sign the tab out
    assert dict(manager.load(IncomingToken(winner, via_header=False))) == {"n": 0, "a": 1, "b": 2}


def test_an_imported_session_is_listed_and_revocable_until_its_own_deadline(store_factory: Any) -> None:
    clock = Clock()
    store = store_factory(clock)
    import_one(store, clock.now, ttl=7200, uid="42")
    config = SessionConfig(accept_imported=True, cookie_secure=False, idle_timeout=600, absolute_timeout=3600)
    manager = SessionManager(store, config, clock=clock)
    clock.advance(1200)  # past the idle timeout, before its own end
    (info,) = manager.list_sessions("42")
    assert info.idle_expires_at == pytest.approx(clock.now - 1200 + 3600)  # bounded by the absolute timeout
    assert manager.revoke_user("42") == 1
    assert manager.load(IncomingToken(DJANGO_KEY, via_header=False)).is_new
