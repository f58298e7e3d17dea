"""Thin sync and async managers that carry out the lifecycle's plans.

:mod:`serversession.core.lifecycle` decides; a manager only runs each plan
against its store: each typed step (:mod:`serversession.core.steps`) carries
itself out, ``SessionManager`` on the sync face (``step.call(store)``),
``AsyncSessionManager`` on the ``a``-prefixed async face (``await step.acall(store)``);
events go to the listeners. That is the whole difference between them, so no
rule about sessions is written twice.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .core import lifecycle
from .core.config import SessionConfig
from .core.events import SessionEvent
from .core.guard import RequestGuard
from .core.lifecycle import SaveResult, SessionInfo
from .core.session import Session, attach, load_seq, stored_text
from .core.steps import Emit, Plan
from .core.transport import IncomingToken, read_token
from .stores.base import AsyncStore, Store

T = TypeVar("T")
log = logging.getLogger("serversession")


Listener = Callable[[SessionEvent], Any]
#: How many sessions' last ``modify`` results a manager keeps beyond those in use.
_RECENT_GATES = 1024
#: Called after every store call with (store kind, operation, seconds, error or None).
StoreObserver = Callable[[str, str, float, BaseException | None], None]


def run_sync(plan: Plan[T], store: Store, emit: Callable[[SessionEvent], None] | None = None) -> T:
    """Carry out ``plan`` with blocking calls on ``store``; events go to ``emit``."""
    try:
        step = next(plan)
        while True:
            if isinstance(step, Emit):
                if emit is not None:
                    emit(step.event)
                step = plan.send(None)
            else:
                step = plan.send(step.call(store))
    except StopIteration as done:
        value: T = done.value
        return value


async def run_async(
    plan: Plan[T], store: AsyncStore, emit: Callable[[SessionEvent], Awaitable[None]] | None = None
) -> T:
    """Carry out ``plan`` awaiting the ``a``-prefixed calls of ``store``; events go to ``emit``."""
    try:
        step = next(plan)
        while True:
            if isinstance(step, Emit):
                if emit is not None:
                    await emit(step.event)
                step = plan.send(None)
            else:
                step = plan.send(await step.acall(store))
    except StopIteration as done:
        value: T = done.value
        return value


class _KeyGate:
    """One stored session's ``modify`` queue in this process, and what it last committed.

    Why: compare-and-set alone is correct but, with N requests of one process
    modifying one key at once, each round has one winner and the others retry:
    O(N) store round trips per write and, past ``modify_attempts``, failures.
    Queueing them per session in the process and starting each from the value
    the previous one committed makes every write one round trip; CAS still
    guards against other processes. Readers and other keys are never queued.
    """

    __slots__ = ("__weakref__", "latest", "lock", "loop")

    def __init__(self, lock: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.lock = lock
        #: The event loop an ``asyncio.Lock`` belongs to (weakly), None for a thread lock:
        #: another loop gets a gate of its own (CAS arbitrates between them, as between
        #: processes), so a finished or stopped loop can neither break nor hang it.
        self.loop = None if loop is None else weakref.ref(loop)
        #: data key -> (the encoded text this process last committed, its sequence number)
        self.latest: dict[str, tuple[str | None, int]] = {}


class _ManagerBase:
    def __init__(
        self, store: Any, config: SessionConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.config = config or SessionConfig()
        self.clock = clock
        self.listeners: list[Listener] = []
        #: The request boundary's decisions (:mod:`serversession.core.guard`), shared by
        #: every integration built on this manager, and its guessing counters with them.
        self.guard = RequestGuard(self.config)
        # Gates live while a modify holds or awaits them (weak values), and while
        # among the most recently used: a request that loaded before the last
        # modify finished then still starts from the value it committed.
        self._gates: weakref.WeakValueDictionary[str, _KeyGate] = weakref.WeakValueDictionary()
        self._recent_gates: collections.deque[_KeyGate] = collections.deque(maxlen=_RECENT_GATES)
        self._gates_guard = threading.Lock()
        # Orders loads against committed modifies: a request that loaded after the
        # last modify of a key committed starts from its own load, not the memo.
        self._seq = itertools.count()

    def _gate(self, key: str, new_lock: Callable[[], Any], loop: asyncio.AbstractEventLoop | None = None) -> _KeyGate:
        with self._gates_guard:
            gate = self._gates.get(key)
            if gate is None or (gate.loop is not None and gate.loop() is not loop):
                gate = self._gates[key] = _KeyGate(new_lock(), loop)
            self._recent_gates.append(gate)  # recently *used* gates stay (duplicates are fine)
            return gate

    def _latest(self, gate: _KeyGate, session: Session, key: str) -> Any:
        """What ``modify`` should expect the store to hold for ``key``."""
        text, seq = gate.latest.get(key, (lifecycle.FROM_SESSION, -1))
        return text if seq > load_seq(session) else lifecycle.FROM_SESSION

    def _remember(self, gate: _KeyGate, session: Session, key: str, ok: bool) -> None:
        if ok:
            gate.latest[key] = (stored_text(session, key), next(self._seq))
        else:
            gate.latest.pop(key, None)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every :class:`SessionEvent` (sync or async callable).

        A listener that raises is logged and skipped: an audit hook must not
        break a sign-in.
        """
        self.listeners.append(listener)

    def read_token(self, cookie_header: str | None, authorization: str | None) -> IncomingToken:
        """Find the session token in a request's ``Cookie`` / ``Authorization`` headers."""
        return read_token(self.config, cookie_header, authorization)

    def _emit_sync(self, event: SessionEvent) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("session event listener failed on %s", event.kind.value)

    async def _emit_async(self, event: SessionEvent) -> None:
        for listener in self.listeners:
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("session event listener failed on %s", event.kind.value)

    def emit(self, event: SessionEvent) -> None:
        """Hand an event raised outside the lifecycle (a CSRF failure) to sync listeners."""
        self._emit_sync(event)

    async def aemit(self, event: SessionEvent) -> None:
        """Async twin of :meth:`emit`: awaits async listeners too."""
        await self._emit_async(event)


class SessionManager(_ManagerBase):
    """Loads and saves sessions through a sync :class:`~serversession.stores.base.Store`.

    ``config`` defaults to :class:`SessionConfig()`; ``clock`` (``time.time``) is
    injectable. Store failures raise :class:`~serversession.exceptions.StoreError`.
    """

    store: Store

    def load(self, token: IncomingToken, *, user_agent: str = "", ip: str = "") -> Session:
        """Return the request's session (a fresh unstored one if it has none)."""
        seq = next(self._seq)
        now = self.clock()
        session = run_sync(lifecycle.load(self.config, token, now, user_agent, ip), self.store, self._emit_sync)
        attach(session, self, seq)
        self.guard.saw_valid(session, now)
        return session

    def save(self, session: Session, *, ip: str | None = None) -> SaveResult:
        """Write what the request changed; return the cookies/headers to send."""
        now, key = self.clock(), session.key
        result = run_sync(lifecycle.save(session, now, ip), self.store, self._emit_sync)
        if session.key != key:  # created or rotated: a block must not refuse it either
            self.guard.saw_valid(session, now)
        return result

    def modify(self, session: Session, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """Atomic read-modify-write of one key (see :meth:`Session.modify`).

        Modifies of one session by threads of this process take turns (see
        :class:`_KeyGate`); each then costs one store round trip.
        """
        if session.key is None:
            return run_sync(lifecycle.modify(session, key, fn, default, self.clock()), self.store, self._emit_sync)
        gate = self._gate(session.key, threading.Lock)
        with gate.lock:
            ok = False
            try:
                latest = self._latest(gate, session, key)
                plan = lifecycle.modify(session, key, fn, default, self.clock(), latest)
                value = run_sync(plan, self.store, self._emit_sync)
                ok = True
                return value
            finally:
                self._remember(gate, session, key, ok)

    def amodify(self, session: Session, key: str, fn: Callable[[Any], T], default: Any = None) -> Any:
        """Not available on a sync manager: use :meth:`modify`."""
        raise TypeError("this session belongs to a sync manager; call session.modify()")

    def list_sessions(self, user: str, current: Session | None = None) -> list[SessionInfo]:
        """Return ``user``'s live sessions (public handles, no IDs), oldest first."""
        return run_sync(lifecycle.list_sessions(self.config, user, self.clock(), current), self.store, self._emit_sync)

    def revoke(self, user: str, handle: str, *, reason: str = "revoked") -> bool:
        """End ``user``'s session with public ``handle``; False if there is none.

        ``reason`` travels in the REVOKED event (e.g. "signed out from another device").
        """
        plan = lifecycle.revoke(self.config, user, handle, self.clock(), reason)
        return run_sync(plan, self.store, self._emit_sync)

    def revoke_user(self, user: str, *, keep: Session | None = None, reason: str = "revoked") -> int:
        """End all of ``user``'s sessions but ``keep``; return how many ended."""
        plan = lifecycle.revoke_user(self.config, user, self.clock(), keep, reason)
        return run_sync(plan, self.store, self._emit_sync)

    def credential_changed(self, session: Session, *, reason: str = "credential changed") -> int:
        """The user of ``session`` changed a password, a factor or their role: act on it now.

        ``session`` gets a new ID at once (the response of this request carries
        it; the old one stops working) and counts as authenticated now; every
        other session of the user ends, each with a REVOKED event carrying
        ``reason``; a sign-in of the user that another process checked against
        the old credential and binds meanwhile is ended too (``docs/security.md``,
        "Credential changes"). Returns how many sessions ended. Call it *after*
        storing the new credential. Raises ``RuntimeError`` for an anonymous
        session, :class:`~serversession.exceptions.SessionEndedError` when this
        session was ended or rotated by another request meanwhile (the others
        are ended all the same) and
        :class:`~serversession.exceptions.StoreError` when the store fails.
        """
        now, key = self.clock(), session.key
        ended = run_sync(lifecycle.credential_changed(session, now, reason), self.store, self._emit_sync)
        if session.key != key:
            self.guard.saw_valid(session, now)
        return ended

    def acredential_changed(self, session: Session, *, reason: str = "credential changed") -> Any:
        """Not available on a sync manager: use :meth:`credential_changed`."""
        raise TypeError("this session belongs to a sync manager; call session.credential_changed()")


class AsyncSessionManager(_ManagerBase):
    """Async twin of :class:`SessionManager` over an :class:`~serversession.stores.base.AsyncStore`."""

    store: AsyncStore

    async def aload(self, token: IncomingToken, *, user_agent: str = "", ip: str = "") -> Session:
        """See :meth:`SessionManager.load`."""
        seq = next(self._seq)
        now = self.clock()
        session = await run_async(lifecycle.load(self.config, token, now, user_agent, ip), self.store, self._emit_async)
        attach(session, self, seq)
        self.guard.saw_valid(session, now)
        return session

    async def asave(self, session: Session, *, ip: str | None = None) -> SaveResult:
        """See :meth:`SessionManager.save`."""
        now, key = self.clock(), session.key
        result = await run_async(lifecycle.save(session, now, ip), self.store, self._emit_async)
        if session.key != key:
            self.guard.saw_valid(session, now)
        return result

    def modify(self, session: Session, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """Not available on an async manager: use ``await session.amodify()``."""
        raise TypeError("this session belongs to an async manager; use await session.amodify()")

    async def amodify(self, session: Session, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """See :meth:`SessionManager.modify`: tasks of this process take turns per session."""
        if session.key is None:
            plan = lifecycle.modify(session, key, fn, default, self.clock())
            return await run_async(plan, self.store, self._emit_async)
        gate = self._gate(session.key, asyncio.Lock, asyncio.get_running_loop())
        async with gate.lock:
            ok = False
            try:
                latest = self._latest(gate, session, key)
                plan = lifecycle.modify(session, key, fn, default, self.clock(), latest)
                value = await run_async(plan, self.store, self._emit_async)
                ok = True
                return value
            finally:
                self._remember(gate, session, key, ok)

    async def alist_sessions(self, user: str, current: Session | None = None) -> list[SessionInfo]:
        """See :meth:`SessionManager.list_sessions`."""
        return await run_async(
            lifecycle.list_sessions(self.config, user, self.clock(), current), self.store, self._emit_async
        )

    async def arevoke(self, user: str, handle: str, *, reason: str = "revoked") -> bool:
        """See :meth:`SessionManager.revoke`."""
        plan = lifecycle.revoke(self.config, user, handle, self.clock(), reason)
        return await run_async(plan, self.store, self._emit_async)

    async def arevoke_user(self, user: str, *, keep: Session | None = None, reason: str = "revoked") -> int:
        """See :meth:`SessionManager.revoke_user`."""
        plan = lifecycle.revoke_user(self.config, user, self.clock(), keep, reason)
        return await run_async(plan, self.store, self._emit_async)

    def credential_changed(self, session: Session, *, reason: str = "credential changed") -> int:
        """Not available on an async manager: use ``await session.acredential_changed()``."""
        raise TypeError("this session belongs to an async manager; use await session.acredential_changed()")

    async def acredential_changed(self, session: Session, *, reason: str = "credential changed") -> int:
        """See :meth:`SessionManager.credential_changed`."""
        now, key = self.clock(), session.key
        ended = await run_async(lifecycle.credential_changed(session, now, reason), self.store, self._emit_async)
        if session.key != key:
            self.guard.saw_valid(session, now)
        return ended
