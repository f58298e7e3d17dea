"""The credential-change marker: a per-user record saying "sign-ins older than T are void".

:func:`~serversession.core.lifecycle.credential_changed` writes one for the
user before it ends the user's other sessions; every save that binds the user
(a sign-in) reads it back right after its own write and voids itself when the
request that bound the user was loaded before T (so its credential check may
have used the old password). Why a record and no new store operation: it is an
ordinary record every store already keeps, found through the user index under a
name no application user can have (:data:`~.session.RESERVED_USER_PREFIX`), so
the one extra call a sign-in pays is a ``list_user`` of a name that usually has
nothing indexed. ``docs/security.md`` ("Credential changes") states the guarantee.

Layout: key ``c:`` + the URL-safe SHA-256 of the user name (no session key has a
colon); metadata that of a session of the reserved owner name, created at T;
data ``t`` (T, full precision) and ``r`` (the reason, for the REVOKED event of
a voided sign-in). It lives ``absolute_timeout`` after T.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable

from ..exceptions import CorruptRecordError
from .codec import SessionMeta, decode_value, encode_meta, encode_value
from .config import SessionConfig
from .records import Commit, StoredSession
from .session import RESERVED_USER_PREFIX

PREFIX = "c:"
_OWNER = RESERVED_USER_PREFIX + "credential-change" + RESERVED_USER_PREFIX


def owner(user: str) -> str:
    """The user-index name the marker of ``user`` is filed under."""
    return _OWNER + user


def key(user: str) -> str:
    """The storage key of the marker of ``user``."""
    digest = hashlib.sha256(b"serversession credential change\x00" + user.encode("utf-8")).digest()
    return PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_marker(storage_key: str) -> bool:
    """Whether a storage key is a marker's (administrative listings leave them out)."""
    return storage_key.startswith(PREFIX)


def commit(config: SessionConfig, user: str, at: float, reason: str, expect: str | None = None) -> Commit:
    """Write (create, or raise to ``at``) the marker of ``user``; ``expect`` guards the old ``t``."""
    name = owner(user)
    return Commit(
        set_data={"t": encode_value("t", at), "r": encode_value("r", reason)},
        meta=encode_meta(SessionMeta(created_at=at, last_seen_at=at, user=name)),
        expires_at=expiry(config, at),
        index_user=name,
        absolute_at=expiry(config, at),
        expect=None if expect is None else {"t": expect},
    )


def expiry(config: SessionConfig, at: float) -> float:
    """When a marker written at ``at`` may go: every session bound before it is gone by then."""
    return at + config.absolute_timeout


def find(found: Iterable[StoredSession], user: str) -> tuple[float, str, str] | None:
    """The marker of ``user`` among ``list_user(owner(user))``: (T, reason, the stored ``t`` text), or None.

    Raises :class:`~serversession.exceptions.CorruptRecordError` for a damaged
    marker, as for any damaged record (503: no sign-in passes unchecked).
    """
    wanted = key(user)
    for stored in found:
        if stored.key != wanted:
            continue  # filed under the reserved name by something else: not ours
        text = stored.data.get("t", "")
        at, reason = decode_value(text), decode_value(stored.data.get("r", '""'))
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not math.isfinite(at):
            raise CorruptRecordError("a stored credential-change marker has no valid time", operation="load")
        return float(at), reason if isinstance(reason, str) else "", text
    return None
