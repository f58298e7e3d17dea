"""A short per-user list of recent account events, for the sessions page's "Recent activity".

Fed by the session manager's lifecycle events (:meth:`AuditLog.on_event` is a
listener). Each :class:`Entry` is kept as structure, not as a sentence, so the
page can say it in the visitor's language: *what* happened (a key such as
``"signed_in"`` or ``"password_changed"``), on which device, and for an ended
session *why* it ended (signed out from another device, the password changed,
too many sessions, a timeout).

How an event becomes an entry:

* The shop gives the library a reason text for the things it does (sign-in,
  sign-out, ending sessions, a password change); it gets that text from
  :meth:`AuditLog.reason`, which remembers what the text stands for. The events
  carry the text back, so the log reads the structure again without parsing
  English. A reason it did not make (another process made it, or the library:
  the per-user cap's ``eviction_reason``) is classed by the event kind, else
  kept as its text.
* A sign-in that starts without a stored session is a CREATED event (no reason
  text): the log looks that one new session up (one store read) for its device.
* Events name sessions by public handle only, so the log keeps a bounded map
  from handle to device, learned at sign-in and from every sessions list the
  shop reads (:meth:`AuditLog.know`); an ended session it never saw is "a device".

Kept in this process's memory: with several workers each keeps its own list,
and a restart forgets it. Only the newest :data:`MAX_EVENTS` per user are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from .. import SessionConfig, SessionInfo
from ..core.events import EventKind, SessionEvent
from .devices import describe

V = TypeVar("V")
MAX_EVENTS = 20
#: Handles (and reason texts) remembered; older ones are forgotten first.
MAX_REMEMBERED = 2000

#: What a shop action's reason means, by the kind of event that carries it back.
_MEANING = {
    ("sign_in", EventKind.ROTATED): "signed_in",
    ("sign_out", EventKind.DESTROYED): "signed_out",
    ("end_one", EventKind.REVOKED): "ended_by_you",
    ("revoke_others", EventKind.REVOKED): "signed_out_elsewhere",
    ("password", EventKind.ROTATED): "password_changed_here",
    ("password", EventKind.REVOKED): "password_changed",
}
#: Entries that say a session ended and why (the page marks them).
ENDED = frozenset({"ended_by_you", "signed_out_elsewhere", "password_changed", "too_many_sessions",
                   "timed_out_idle", "timed_out_absolute", "ended_other"})  # fmt: skip
#: Entries about the session that did the thing itself: its device is the acting one.
_ACTING = frozenset({"signed_in", "signed_out", "password_changed_here"})
_ENGLISH = {
    "sign_in": "Signed in on {by}",
    "sign_out": "Signed out on {by}",
    "end_one": "Ended a session from {by}",
    "revoke_others": "Signed out from another device ({by})",
    "password": "Password changed on {by}",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing that happened to an account, at Unix time ``at``.

    ``what`` is a key the page translates (``signed_in``, ``signed_out``,
    ``password_changed_here``, and for ended sessions the keys in :data:`ENDED`);
    ``device`` is the device of the session concerned ("" when unknown); ``by``
    the device that did it (for ended sessions); ``text`` the library's own
    words where the log has no key for them (``what`` is then ``ended_other``
    or ``other``).
    """

    at: float
    what: str
    device: str = ""
    by: str = ""
    text: str = ""

    @property
    def ended(self) -> bool:
        """Whether this entry says that a session ended (and why)."""
        return self.what in ENDED


SessionsOf = Callable[[str], Awaitable[list[SessionInfo]]]


class AuditLog:
    """``user -> deque`` of :class:`Entry`, newest first.

    ``sessions_of`` (the manager's ``alist_sessions``) finds the device of a
    sign-in that created its session; without it such a sign-in is recorded
    with no device. ``eviction_reason`` is the per-user cap's reason text
    (``SessionConfig.eviction_reason``): a session ended with it ended because
    of too many sessions.
    """

    def __init__(
        self, sessions_of: SessionsOf | None = None, *, eviction_reason: str = SessionConfig.eviction_reason
    ) -> None:
        self._sessions_of = sessions_of
        self._eviction_reason = eviction_reason
        self._lock = threading.Lock()
        self._events: dict[str, deque[Entry]] = {}
        self._devices: OrderedDict[str, str] = OrderedDict()
        self._reasons: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def reason(self, action: str, by: str) -> str:
        """The reason text to give the library for shop ``action`` done on device ``by``.

        ``action`` is ``sign_in``, ``sign_out``, ``end_one``, ``revoke_others`` or
        ``password``; the text (English, for the server log too) comes back in the
        events, and :meth:`on_event` knows it again.
        """
        text = _ENGLISH[action].format(by=by)
        with self._lock:
            _remember(self._reasons, text, (action, by))
        return text

    def know(self, infos: Iterable[SessionInfo]) -> None:
        """Learn the devices of these sessions (so their end can name them)."""
        with self._lock:
            for info in infos:
                _remember(self._devices, info.handle, describe(info.user_agent))

    def record(self, user: str, entry: Entry) -> None:
        """Remember that ``entry`` happened to ``user``."""
        with self._lock:
            self._events.setdefault(user, deque(maxlen=MAX_EVENTS)).appendleft(entry)

    def recent(self, user: str) -> list[Entry]:
        """Return ``user``'s remembered entries, newest first."""
        with self._lock:
            return list(self._events.get(user, ()))

    async def on_event(self, event: SessionEvent) -> None:
        """Listener: record sign-ins, sign-outs, ended sessions and timeouts of signed-in users."""
        user = event.user
        if not user:
            return
        if event.kind is EventKind.CREATED:  # a sign-in that started without a stored session
            self.record(user, Entry(event.at, "signed_in", await self._device_of_new(user, event.handle)))
            return
        with self._lock:
            action, by = self._reasons.get(event.reason, ("", ""))
            previous = self._devices.pop(event.previous_handle, "") if event.previous_handle else ""
            device = self._devices.get(event.handle or "", "") or previous
            what = _MEANING.get((action, event.kind))
            if what in _ACTING:
                device = by
            if event.kind is EventKind.ROTATED and event.handle:
                _remember(self._devices, event.handle, device)
        entry = self._entry(event, what, device, by)
        if entry is not None:
            self.record(user, entry)

    def _entry(self, event: SessionEvent, what: str | None, device: str, by: str) -> Entry | None:
        if what is not None:
            return Entry(event.at, what, device, by)
        if event.kind is EventKind.EXPIRED:
            limit = "absolute" if "absolute" in event.reason else "idle"
            return Entry(event.at, f"timed_out_{limit}", device, text=event.reason)
        if event.kind is EventKind.REVOKED:
            # Not the shop's words: the library's (the per-user cap), or another process's.
            if event.reason == self._eviction_reason:
                return Entry(event.at, "too_many_sessions", device, text=event.reason)
            return Entry(event.at, "ended_other", device, text=event.reason or "revoked")
        if event.kind is EventKind.ROTATED:
            return None  # a new ID for the same sign-in (a password change elsewhere already told)
        if event.kind is EventKind.DESTROYED:
            return Entry(event.at, "signed_out", device)
        return None

    async def _device_of_new(self, user: str, handle: str | None) -> str:
        if self._sessions_of is None or handle is None:
            return ""
        infos = await self._sessions_of(user)
        self.know(infos)
        with self._lock:
            return self._devices.get(handle, "")


def _remember(table: OrderedDict[str, V], key: str, value: V) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > MAX_REMEMBERED:
        table.popitem(last=False)
