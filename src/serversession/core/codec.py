"""Safe serialization of session data and metadata: JSON only, never pickle.

Session data is held per key as an *encoded string*. Encoding each value on its
own is what makes delta writes possible (only changed keys travel to the store)
and lets a store compare one key's stored text with what a request expects
(compare-and-set) without understanding JSON. Encoding is canonical for a given
Python value (compact separators, no NaN), so equal values give equal text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..exceptions import CorruptRecordError, NotSerializableError

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
#: For text holding a lone UTF-16 surrogate (JSON from a client may): escaped, it is
#: still the same value, and every store can hold it (UTF-8 cannot).
_ascii_encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)
_decode = json.JSONDecoder().decode


def encode_value(key: str, value: Any) -> str:
    """Encode one session value as JSON text.

    Raises :class:`NotSerializableError` (naming ``key``) for anything JSON can't
    hold exactly: sets, bytes, datetimes, NaN, objects.
    """
    if not isinstance(key, str):
        raise NotSerializableError(f"session keys must be str, not {type(key).__name__}", key=str(key))
    if "\x00" in key:  # PostgreSQL's jsonb cannot hold it: refused everywhere, where it is set
        raise NotSerializableError("session keys cannot contain NUL characters", key=key.replace("\x00", "\\0"))
    if not is_utf8(key):
        raise NotSerializableError("session keys must be valid Unicode text (a lone surrogate is not)", key=repr(key))
    try:
        text = _encoder.encode(value)
        return text if is_utf8(text) else _ascii_encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise NotSerializableError(f"session[{key!r}] is not JSON-serializable: {exc}", key=key) from exc


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be stored as UTF-8 (a lone surrogate cannot)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode_value(text: str) -> Any:
    """Decode one stored value (the inverse of :func:`encode_value`).

    Raises :class:`CorruptRecordError` for text that is not JSON (or not text), so
    a damaged record surfaces as a store error (503) where it is first read.
    """
    try:
        return _decode(text)
    except (TypeError, ValueError) as exc:
        raise CorruptRecordError(f"a stored session value is not JSON: {exc}", operation="load") from exc


def check_data(data: Any) -> dict[str, str]:
    """Return a stored data mapping if it is ``{str: str}``, else raise :class:`CorruptRecordError`.

    For stores that keep a session's data as one JSON document (SQLite,
    PostgreSQL): the document itself may have been damaged.
    """
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise CorruptRecordError("a stored session's data is not a mapping of encoded values", operation="load")
    return data


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """What the server knows about a session besides its data.

    Times are Unix timestamps in seconds. ``csrf_secret`` is the base the CSRF
    token is derived from; it is replaced at every rotation. ``idle_limit``
    (seconds of inactivity) and ``ends_at`` (Unix time) are the expiry the
    application set on this session (:meth:`.Session.set_expiry`), None where
    it set none; they only ever shorten the configured timeouts.
    ``authenticated_at`` (Unix time) is when the session's user last proved who
    they are (bound at sign-in, :meth:`.Session.reauthenticated`), None while
    anonymous.
    """

    created_at: float
    last_seen_at: float
    user: str | None = None
    user_agent: str = ""
    ip: str = ""
    persistent: bool = False
    csrf_secret: str = ""
    idle_limit: float | None = None
    ends_at: float | None = None
    authenticated_at: float | None = None

    def with_changes(self, **changes: Any) -> SessionMeta:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)


# One-letter field names keep every stored session small (Redis hashes especially).
_META_FIELDS = {
    "created_at": "c",
    "last_seen_at": "s",
    "user": "u",
    "user_agent": "a",
    "ip": "i",
    "persistent": "p",
    "csrf_secret": "x",
    "idle_limit": "l",
    "ends_at": "e",
    "authenticated_at": "t",
}
_OPTIONAL_NUMBERS = ("idle_limit", "ends_at", "authenticated_at")


def encode_meta_fields(**values: Any) -> dict[str, str]:
    """Encode some or all metadata attributes into short string fields.

    Used both for a full record and for a partial update (only what changed).
    """
    out: dict[str, str] = {}
    for name, value in values.items():
        field = _META_FIELDS[name]
        if name in ("created_at", "last_seen_at"):
            out[field] = repr(round(float(value), 3))
        elif name == "persistent":
            out[field] = "1" if value else ""
        elif name in _OPTIONAL_NUMBERS:
            out[field] = "" if value is None else repr(round(float(value), 3))
        else:
            out[field] = value or ""
    return out


def encode_meta(meta: SessionMeta) -> dict[str, str]:
    """Encode a whole :class:`SessionMeta` into string fields.

    The expiry an application set and the authentication time are left out
    when there is none (most sessions; every anonymous one): a store then keeps
    no empty fields for them. To clear one in a commit, send
    :func:`encode_meta_fields` with None, which writes it empty.
    """
    optional = {name: getattr(meta, name) for name in _OPTIONAL_NUMBERS if getattr(meta, name) is not None}
    return encode_meta_fields(
        created_at=meta.created_at,
        last_seen_at=meta.last_seen_at,
        user=meta.user,
        user_agent=meta.user_agent,
        ip=meta.ip,
        persistent=meta.persistent,
        csrf_secret=meta.csrf_secret,
        **optional,
    )


def decode_meta(fields: Mapping[str, Any]) -> SessionMeta:
    """Decode string fields written by :func:`encode_meta`.

    Raises :class:`CorruptRecordError` for a corrupt record: not a mapping, a
    missing or non-finite timestamp (a NaN deadline would never expire), a field
    that is not a string. ``l``, ``e`` and ``t`` are optional (records written
    before they existed have none of them): absent or empty is None.
    """
    if not isinstance(fields, Mapping) or not all(isinstance(v, str) for v in fields.values()):
        raise CorruptRecordError("a stored session's metadata is not a mapping of strings", operation="load")
    try:
        created_at, last_seen_at = float(fields["c"]), float(fields["s"])
    except (KeyError, ValueError) as exc:
        raise CorruptRecordError("a stored session has no valid timestamps", operation="load") from exc
    if not (math.isfinite(created_at) and math.isfinite(last_seen_at)):
        raise CorruptRecordError("a stored session's timestamps are not finite", operation="load")
    idle_limit, ends_at = _optional_number(fields.get("l")), _optional_number(fields.get("e"))
    authenticated_at = _optional_number(fields.get("t"))
    return SessionMeta(
        created_at=created_at,
        last_seen_at=last_seen_at,
        user=fields.get("u") or None,
        user_agent=fields.get("a", ""),
        ip=fields.get("i", ""),
        persistent=bool(fields.get("p")),
        csrf_secret=fields.get("x", ""),
        idle_limit=idle_limit,
        ends_at=ends_at,
        authenticated_at=authenticated_at,
    )


def _optional_number(text: str | None) -> float | None:
    """An optional number field (an expiry, the authentication time): None when absent
    or empty, else a finite float."""
    if not text:
        return None
    try:
        number = float(text)
    except ValueError as exc:
        raise CorruptRecordError("a stored session's expiry or authentication time is not a number",
                                 operation="load") from exc  # fmt: skip
    if not math.isfinite(number):
        raise CorruptRecordError("a stored session's expiry or authentication time is not finite", operation="load")
    return number
