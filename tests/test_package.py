"""The package root: every public name resolves, and the optional stores load lazily."""

from __future__ import annotations

import subprocess
import sys

import serversession


def test_every_exported_name_resolves() -> None:
    for name in serversession.__all__:
        assert getattr(serversession, name) is not None, name


def test_importing_the_package_needs_no_optional_driver() -> None:
    """``import serversession`` must work with only the core installed: redis-py and
    psycopg are imported when RedisStore / PostgresStore are first used."""
    code = (
        "import sys, serversession\n"
        "assert not {'redis', 'psycopg', 'psycopg_pool'} & set(sys.modules), sorted(sys.modules)\n"
        "from serversession import RedisStore, PostgresStore\n"
        "assert RedisStore.__module__ == 'serversession.stores.redis'\n"
        "assert PostgresStore.__module__ == 'serversession.stores.postgres'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        serversession.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_the_authentication_controls_are_public() -> None:
    from serversession import ReauthenticationRequired, Session, SessionError, SessionManager

    assert "ReauthenticationRequired" in serversession.__all__
    assert issubclass(ReauthenticationRequired, SessionError)
    for name in ("authenticated_at", "reauthenticated", "require_recent_auth", "credential_changed",
                 "acredential_changed"):  # fmt: skip
        assert getattr(Session, name).__doc__, name
    assert SessionManager.credential_changed.__doc__
    assert serversession.AsyncSessionManager.acredential_changed.__doc__


def test_the_session_limit_error_is_exported_in_the_error_tree() -> None:
    assert "SessionLimitError" in serversession.__all__
    assert issubclass(serversession.SessionLimitError, serversession.SessionError)
    assert not issubclass(serversession.SessionLimitError, serversession.StoreError)  # a refusal, not a failure
