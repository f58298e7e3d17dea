"""A short per-user list of recent account events ("Signed in on Chrome on Linux").

Fed by the session manager's lifecycle events (:meth:`AuditLog.on_event` is a
listener): sign-in (ROTATED), sign-out (DESTROYED), sessions ended from another
device (REVOKED) and timeouts (EXPIRED), each with the reason text the shop gave.
Kept in this process's memory: with several workers each keeps its own list,
and a restart forgets it. Only the newest :data:`MAX_EVENTS` per user are kept.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..core.events import EventKind, SessionEvent

MAX_EVENTS = 20
_DEFAULT_TEXT = {
    EventKind.ROTATED: "Signed in",
    EventKind.DESTROYED: "Signed out",
    EventKind.REVOKED: "A session was ended",
    EventKind.EXPIRED: "A session timed out",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened to an account: Unix time ``at`` and a readable ``text``."""

    at: float
    text: str


class AuditLog:
    """``user -> deque`` of :class:`Event`, newest first; ``clock`` is injectable."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, deque[Event]] = {}

    def record(self, user: str, text: str) -> None:
        """Remember that ``text`` happened to ``user`` now."""
        with self._lock:
            self._events.setdefault(user, deque(maxlen=MAX_EVENTS)).appendleft(Event(self._clock(), text))

    def recent(self, user: str) -> list[Event]:
        """Return ``user``'s remembered events, newest first."""
        with self._lock:
            return list(self._events.get(user, ()))

    def on_event(self, event: SessionEvent) -> None:
        """Listener: record sign-ins, sign-outs, revocations and timeouts of signed-in users."""
        if event.user and event.kind in _DEFAULT_TEXT:
            self.record(event.user, event.reason or _DEFAULT_TEXT[event.kind])
