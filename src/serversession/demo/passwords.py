"""Password changes that hold for every demo process on the same store.

The demo's accounts are made in memory at start-up (:mod:`.accounts`), so a
changed password must live somewhere every process sees: the session store
itself, the one thing they share. A changed password is one record, under a
key no session can have (session keys are base64url SHA-256 digests; this one
starts with ``demo-account:``), holding the salt and scrypt digest, never the
password, and no user binding, so it never appears in anyone's session list.
It expires after :data:`KEEP_FOR` (a demo is not forever).

The store is used through its public contract (``aload``, ``acreate``,
``acommit``), so this works on memory, SQLite, Redis, Redis Cluster and
PostgreSQL alike.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

from ..core.codec import SessionMeta, encode_meta
from ..core.records import Commit, Outcome
from .accounts import PasswordHash

#: How long a changed password is kept (seconds): a year.
KEEP_FOR = 365 * 24 * 3600.0
_FIELD = "scrypt"


def record_key(username: str) -> str:
    """The store key of ``username``'s changed password."""
    return "demo-account:" + hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()


class SharedPasswords:
    """Changed password hashes kept in the session ``store`` (its async face)."""

    def __init__(self, store: Any, clock: Any = time.time) -> None:
        self.store = store
        self.clock = clock

    async def aget(self, username: str) -> PasswordHash | None:
        """``username``'s changed password hash, or None if it was never changed (one store read)."""
        stored = await self.store.aload(record_key(username))
        if stored is None or _FIELD not in stored.data:
            return None
        salt, digest = json.loads(stored.data[_FIELD])
        return PasswordHash(base64.b64decode(salt), base64.b64decode(digest))

    async def aset(self, username: str, hashed: PasswordHash) -> None:
        """Store ``username``'s new password hash (one or two store calls)."""
        now = self.clock()
        text = json.dumps([base64.b64encode(hashed.salt).decode(), base64.b64encode(hashed.digest).decode()])
        key = record_key(username)
        change = Commit(set_data={_FIELD: text}, expires_at=now + KEEP_FOR)
        result = await self.store.acommit(key, change)
        if result.outcome is Outcome.OK:
            return
        fresh = Commit(set_data={_FIELD: text}, meta=encode_meta(SessionMeta(created_at=now, last_seen_at=now)),
                       expires_at=now + KEEP_FOR)  # fmt: skip
        if not await self.store.acreate(key, fresh):  # another process created it meanwhile: overwrite
            await self.store.acommit(key, change)
