"""The demo's user accounts: scrypt password hashes held in process memory.

The two demo accounts (``alice`` / ``wonderland``, ``bob`` / ``builder``) are
created when the app starts, with a fresh random salt each, so no password hash
ships in the source. They live in memory; every process of a multi-worker demo
makes its own, which verify identically. A password changed through the API is
kept in the session store instead (:mod:`.passwords`), so every process sees it.

:meth:`Accounts.verify` costs one scrypt run whether or not the user exists (an
unknown name is checked against a dummy hash) and compares digests in constant
time, so neither timing nor error text tells which usernames exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

#: scrypt cost parameters: n=2**14, r=8 needs 16 MiB and takes tens of milliseconds.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
DIGEST_BYTES = 32

DEMO_USERS: tuple[tuple[str, str], ...] = (("alice", "wonderland"), ("bob", "builder"))
#: Longest username or password looked at; longer input fails without hashing 1 MB.
MAX_CREDENTIAL = 256


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A salted scrypt digest of one password."""

    salt: bytes
    digest: bytes


def hash_password(password: str, salt: bytes | None = None) -> PasswordHash:
    """Return the scrypt hash of ``password`` with ``salt`` (16 random bytes by default)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    return PasswordHash(salt, _scrypt(password, salt))


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8", "surrogatepass"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=SCRYPT_MAXMEM,
        dklen=DIGEST_BYTES,
    )


class Accounts:
    """Usernames and password hashes; ``users`` defaults to :data:`DEMO_USERS`.

    :meth:`verify` blocks for one scrypt run: call it from a worker thread in
    async code.
    """

    def __init__(self, users: tuple[tuple[str, str], ...] = DEMO_USERS) -> None:
        self._hashes = {name: hash_password(password) for name, password in users}
        # Unknown users are checked against this, so they cost the same scrypt run.
        self._dummy = hash_password(secrets.token_urlsafe(16))

    def __contains__(self, username: object) -> bool:
        return username in self._hashes

    def verify(self, username: str, password: str, changed: PasswordHash | None = None) -> bool:
        """Tell whether ``password`` is ``username``'s, in about the same time for any input.

        ``changed`` is the user's password as changed since start-up (see
        :mod:`.passwords`), which replaces the built-in one.
        """
        if len(username) > MAX_CREDENTIAL or len(password) > MAX_CREDENTIAL:
            password = ""  # still hash once: the work must not depend on the input
        known = self._hashes.get(username)
        if known is not None and changed is not None:
            known = changed
        stored = known if known is not None else self._dummy
        matches = hmac.compare_digest(_scrypt(password, stored.salt), stored.digest)
        return matches and known is not None and 0 < len(password) <= MAX_CREDENTIAL
