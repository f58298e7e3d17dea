"""A short per-user list of recent account events ("Signed in on Chrome on Linux").

Kept in this process's memory: the session store files sessions, not per-user
history, so there is nowhere shared to put it yet. With several workers each
keeps its own list, and a restart forgets it; a store-level event log will
replace this. Only the newest :data:`MAX_EVENTS` per user are kept.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_EVENTS = 20


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
