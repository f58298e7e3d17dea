"""Session data: JSON only, errors where a bad value is set, size limits."""

from __future__ import annotations

import math

import pytest

from serversession import NotSerializableError, SessionConfig, SessionManager, SessionTooLargeError
from serversession.core.transport import IncomingToken


def new(manager: SessionManager):  # type: ignore[no-untyped-def]
    return manager.load(IncomingToken(None, via_header=False))


@pytest.mark.parametrize("bad", [{1, 2}, b"bytes", object(), math.nan, {"nested": {1, 2}}])
def test_unserializable_values_fail_where_they_are_set(manager: SessionManager, bad: object) -> None:
    s = new(manager)
    with pytest.raises(NotSerializableError) as info:
        s["thing"] = bad
    assert info.value.key == "thing" and "thing" in str(info.value)
    assert "thing" not in s


def test_non_string_keys_are_refused(manager: SessionManager) -> None:
    with pytest.raises(NotSerializableError):
        new(manager)[1] = "x"  # type: ignore[index]


def test_size_limit_is_enforced_at_assignment(store, clock) -> None:  # type: ignore[no-untyped-def]
    manager = SessionManager(store, SessionConfig(max_size=1024), clock=clock)
    s = new(manager)
    s["a"] = "x" * 500
    with pytest.raises(SessionTooLargeError) as info:
        s["b"] = "y" * 600
    assert info.value.limit == 1024 and "b" not in s
    s["a"] = "x" * 900  # replacing a value counts only the new one


def test_mapping_api(manager: SessionManager) -> None:
    s = new(manager)
    s["a"] = 1
    s.setdefault("b", [])
    assert s.pop("a") == 1 and list(s) == ["b"] and len(s) == 1
    s.clear()
    assert dict(s) == {}


def test_nul_in_a_key_or_the_user_fails_where_it_is_set(manager: SessionManager) -> None:
    """PostgreSQL's jsonb cannot hold NUL; every store refuses it the same way, early."""
    s = new(manager)
    with pytest.raises(NotSerializableError):
        s["form\x00field"] = 1
    with pytest.raises(ValueError, match="NUL"):
        s.user = "bob\x00"
    s["value may hold it"] = "a\x00b"  # inside a JSON value it is escaped: fine everywhere
    manager.save(s)


def test_control_characters_are_dropped_from_the_user_agent(manager: SessionManager) -> None:
    s = manager.load(IncomingToken(None, via_header=False), user_agent="Mozilla\x00/5.0\r\n(X11)", ip="192.0.2.1")
    assert s.meta.user_agent == "Mozilla/5.0(X11)"


def test_a_lone_surrogate_from_client_json_is_stored_escaped(manager: SessionManager) -> None:
    """json.loads('"\\ud800"') is valid Python text that UTF-8 cannot hold: the value is
    stored with the surrogate escaped (SQLite and PostgreSQL failed on it, a 503)."""
    import json

    odd = json.loads('"abc\\ud800"')
    s = new(manager)
    s["q"] = odd
    assert s.encoded_data()["q"].isascii()
    with pytest.raises(NotSerializableError):
        s[odd] = 1
    with pytest.raises(ValueError, match="surrogate"):
        s.user = odd
