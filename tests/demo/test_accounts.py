"""The demo accounts: scrypt hashes, and no timing hint about which users exist."""

from __future__ import annotations

import pytest

from serversession.demo import accounts
from serversession.demo.accounts import Accounts


@pytest.fixture(scope="module")
def users() -> Accounts:
    return Accounts()


def test_demo_users_sign_in(users: Accounts) -> None:
    assert users.verify("alice", "wonderland")
    assert users.verify("bob", "builder")
    assert "alice" in users and "mallory" not in users


@pytest.mark.parametrize(
    ("name", "password"),
    [("alice", "builder"), ("alice", ""), ("Alice", "wonderland"), ("mallory", "wonderland"), ("", ""),
     ("alice", "wonderland" + "x" * 300), ("a" * 300, "wonderland")],
)
def test_wrong_credentials_fail(users: Accounts, name: str, password: str) -> None:
    assert not users.verify(name, password)


def test_every_check_costs_one_scrypt_run(users: Accounts, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = accounts._scrypt

    def counting(password: str, salt: bytes) -> bytes:
        calls.append(len(password))
        return real(password, salt)

    monkeypatch.setattr(accounts, "_scrypt", counting)
    for name, password in [("alice", "wonderland"), ("alice", "nope"), ("nobody", "nope"), ("x" * 999, "y" * 999)]:
        users.verify(name, password)
    assert len(calls) == 4  # unknown and oversized input hash once too, against the dummy


def test_hashes_are_salted() -> None:
    first, second = accounts.hash_password("same"), accounts.hash_password("same")
    assert first.salt != second.salt and first.digest != second.digest
    assert accounts.hash_password("same", first.salt) == first
