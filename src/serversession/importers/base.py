"""What every reader of another framework's sessions hands the runner, and the record it becomes.

A reader (one module per incumbent) turns each stored session into one of
three plain values: :class:`LegacySession` (readable, to import),
:class:`Refused` (cannot be read safely: never guessed at, reported by key) or
:class:`Expired`. The runner (:mod:`.runner`) counts them and writes the first
kind with :func:`imported_commit`; readers never touch the target store.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.codec import SessionMeta, encode_meta, encode_value
from ..core.ids import is_legacy_shaped, is_well_formed, storage_key
from ..core.records import IMPORTED_KEY, Commit
from ..exceptions import NotSerializableError


@dataclass(frozen=True, slots=True)
class LegacySession:
    """One live session of the incumbent, read safely.

    ``token`` is the cookie value the browser holds (a secret: never printed);
    ``label`` names the record in reports without revealing it; ``data`` holds
    plain values only; ``expires_at`` is when the incumbent would end it (Unix
    seconds); ``user`` is the user binding found where the incumbent keeps it;
    ``persistent`` whether its cookie outlives the browser session.
    """

    token: str
    label: str
    data: Mapping[str, Any]
    expires_at: float
    user: str | None = None
    persistent: bool = False


@dataclass(frozen=True, slots=True)
class Refused:
    """A record that cannot be read safely (pickled, unsigned, an unknown type): not imported."""

    label: str
    reason: str


@dataclass(frozen=True, slots=True)
class Expired:
    """A record whose session had already ended: skipped."""

    label: str


Item = LegacySession | Refused | Expired


class Source(Protocol):
    """A reader of one incumbent's sessions, resumable at a cursor.

    ``batches(cursor)`` yields (items, next cursor) from ``cursor`` (None: the
    start); the last batch's next cursor is None. A cursor is plain JSON text
    the runner keeps in its checkpoint file. ``total()`` is how many records
    there are, when the source can tell cheaply (for the progress bar), else None.
    """

    kind: str

    def total(self) -> int | None: ...

    def batches(self, cursor: str | None, now: float) -> Iterator[tuple[list[Item], str | None]]: ...

    def close(self) -> None: ...


def label(legacy_key: str) -> str:
    """How a report names a record: its first 8 characters, too few to replay it."""
    return f"{legacy_key[:8]}..."


def encode_data(item: LegacySession) -> dict[str, str] | Refused:
    """``item.data`` as the JSON text per key a store keeps, or :class:`Refused`
    naming the first key JSON cannot hold exactly (a set, bytes, a datetime)."""
    encoded: dict[str, str] = {}
    for key, value in item.data.items():
        if not isinstance(key, str) or key == IMPORTED_KEY:
            return Refused(item.label, f"a key that is not text: {key!r}")
        try:
            encoded[key] = encode_value(key, value)
        except NotSerializableError as exc:
            return Refused(item.label, f"the value of {key!r} is not plain JSON data ({exc.__cause__ or exc})")
    return encoded


def acceptable_token(token: str) -> bool:
    """Whether the lifecycle can ever read this cookie value back (our shape or a legacy one)."""
    return len(token) <= 128 and (is_well_formed(token) or is_legacy_shaped(token))


def imported_commit(item: LegacySession, data: Mapping[str, str], source_kind: str, now: float) -> tuple[str, Commit]:
    """The storage key and create-only commit of an imported session.

    Filed under the SHA-256 of the incumbent's cookie value, carrying the import
    marker (``{"from", "expires_at"}``) that the lifecycle requires before it
    believes a legacy-shaped ID. Created now (the absolute timeout counts from
    the import), bound to ``item.user``, with a fresh CSRF secret and no
    authentication time (the incumbent kept none, so ``require_recent_auth``
    asks for a password again); the store expires it when the incumbent would have.
    """
    marker = json.dumps({"from": source_kind, "expires_at": round(item.expires_at, 3)}, separators=(",", ":"))
    meta = SessionMeta(
        created_at=now,
        last_seen_at=now,
        user=item.user,
        persistent=item.persistent,
        csrf_secret=secrets.token_urlsafe(32),
    )
    commit = Commit(
        set_data={**data, IMPORTED_KEY: marker},
        meta=encode_meta(meta),
        expires_at=item.expires_at,
        index_user=item.user,
        absolute_at=item.expires_at,
    )
    return storage_key(item.token), commit
