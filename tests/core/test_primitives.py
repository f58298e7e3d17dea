"""IDs, signatures, CSRF tokens, cookies and client IPs."""

from __future__ import annotations

import pytest

from serversession import ConfigurationError, SessionConfig
from serversession.core import csrf
from serversession.core.ids import is_well_formed, new_session_id, public_handle, storage_key
from serversession.core.signing import Signer
from serversession.core.transport import AMBIGUOUS, client_ip, parse_cookie_header, read_token


def test_ids_are_256_bit_unique_and_never_stored_raw() -> None:
    ids = {new_session_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    sid = next(iter(ids))
    assert len(sid) == 43 and is_well_formed(sid)
    assert storage_key(sid) != sid and sid not in public_handle(storage_key(sid))
    assert public_handle(storage_key(sid)) != storage_key(sid)


def test_signer_needs_real_keys() -> None:
    with pytest.raises(ConfigurationError):
        Signer([])
    with pytest.raises(ConfigurationError):
        Signer(["short"])
    signer = Signer(["k" * 16])
    assert signer.unsign(signer.sign("abc")) == "abc"
    assert signer.unsign("abc") is None and signer.unsign("abc.ü") is None


def test_csrf_tokens_compare_in_constant_time_and_bind_to_the_secret() -> None:
    token = csrf.token_for("secret-a")
    assert csrf.token_matches("secret-a", token)
    assert not csrf.token_matches("secret-b", token)
    assert not csrf.token_matches("secret-a", None) and not csrf.token_matches(None, token)
    assert not csrf.token_matches("secret-a", "é" * 10)


def test_config_validation() -> None:
    with pytest.raises(ConfigurationError):
        SessionConfig(idle_timeout=0)
    with pytest.raises(ConfigurationError):
        SessionConfig(idle_timeout=100, absolute_timeout=10)
    with pytest.raises(ConfigurationError):
        SessionConfig(cookie_name="__Host-x", cookie_secure=False)
    with pytest.raises(ConfigurationError):
        SessionConfig(trusted_proxies=["not an ip"])
    assert SessionConfig(cookie_secure=False).cookie_name == "session"
    assert SessionConfig(cookie_domain="example.com").cookie_name == "session"


def test_cookie_header_parsing_ignores_junk() -> None:
    assert parse_cookie_header("a=1; session=xyz; session=second", ("session",)) == {"session": AMBIGUOUS}
    assert parse_cookie_header("garbage;;;=;", ("session",)) == {}
    assert parse_cookie_header("session=" + "x" * 70_000, ("session",)) == {}


def test_token_is_never_read_from_anything_but_cookie_and_authorization() -> None:
    config = SessionConfig()
    assert read_token(config, None, "Session abc").value == "abc"
    assert read_token(config, None, "Bearer abc").value is None
    assert read_token(config, "__Host-session=zz", None).value == "zz"


def test_client_ip_believes_only_trusted_proxies() -> None:
    plain = SessionConfig()
    assert client_ip(plain, "10.0.0.1", "1.2.3.4") == "10.0.0.1"
    proxied = SessionConfig(trusted_proxies=["10.0.0.0/8"])
    assert client_ip(proxied, "10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.2") == "1.2.3.4"
    assert client_ip(proxied, "8.8.8.8", "1.2.3.4") == "8.8.8.8"


def test_only_a_well_formed_pre_session_csrf_secret_is_adopted() -> None:
    config = SessionConfig(cookie_name="session")
    good = "A" * 42 + "_"
    assert read_token(config, f"session-csrf={good}", None).csrf_secret == good
    for bad in ("", "short", "A" * 44, "A" * 42 + "!", "é" * 43):
        assert read_token(config, f"session-csrf={bad}", None).csrf_secret is None, bad


def test_client_ip_drops_control_characters() -> None:
    trusting = SessionConfig(trusted_proxies=("10.0.0.0/8",))
    assert client_ip(trusting, "10.0.0.1", "1.2.3.4\x00") == "1.2.3.4"
    assert client_ip(SessionConfig(), "unix:\x00sock", None) == "unix:sock"
