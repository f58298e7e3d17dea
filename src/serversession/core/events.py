"""Lifecycle events: what happened to a session, told without its secrets.

The lifecycle yields ``("emit", (SessionEvent,))`` next to its store calls; the
managers hand each event to the registered listeners (sync or async). An event
carries the *public handle*, never the session ID, so listeners may log or
display it freely. Read-only requests emit nothing, so listeners cost nothing on
the hot path.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventKind(str, enum.Enum):
    """Kinds of :class:`SessionEvent`."""

    CREATED = "created"
    ROTATED = "rotated"
    RENEWED = "renewed"
    EXPIRED = "expired"
    DESTROYED = "destroyed"
    REVOKED = "revoked"
    #: Strict mode refused an ID the store does not know (forged, ended or expired).
    UNKNOWN_ID = "unknown_id"
    CSRF_FAILED = "csrf_failed"
    #: The request boundary refused what a request carried (an ambiguous cookie, a
    #: cross-site or non-JSON unsafe request); ``reason`` says what.
    REFUSED = "refused"
    #: An address presented too many unknown session IDs and is throttled (429).
    GUESSING = "guessing"


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """One thing that happened to a session.

    ``handle`` is the public handle (None when there is none, e.g. a refused ID);
    ``previous_handle`` is set on ROTATED; ``reason`` is a short human text such
    as "logout", "signed out from another device", "idle timeout".
    """

    kind: EventKind
    at: float
    handle: str | None = None
    user: str | None = None
    reason: str = ""
    previous_handle: str | None = None
