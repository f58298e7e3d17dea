"""Thin sync and async managers that carry out the lifecycle's plans.

:mod:`serversession.core.lifecycle` decides; a manager only runs each plan
against its store: ``SessionManager`` calls the sync face, ``AsyncSessionManager``
awaits the ``a``-prefixed async face. That is the whole difference between them,
so no rule about sessions is written twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from .core import lifecycle
from .core.config import SessionConfig
from .core.lifecycle import Plan, SaveResult, SessionInfo
from .core.session import Session
from .core.transport import IncomingToken, read_token
from .stores.base import AsyncStore, Store

T = TypeVar("T")


def run_sync(plan: Plan[T], store: Store) -> T:
    """Carry out ``plan`` with blocking calls on ``store``."""
    try:
        name, args = next(plan)
        while True:
            name, args = plan.send(getattr(store, name)(*args))
    except StopIteration as done:
        result: T = done.value
        return result


async def run_async(plan: Plan[T], store: AsyncStore) -> T:
    """Carry out ``plan`` awaiting the ``a``-prefixed calls of ``store``."""
    try:
        name, args = next(plan)
        while True:
            name, args = plan.send(await getattr(store, "a" + name)(*args))
    except StopIteration as done:
        result: T = done.value
        return result


class _ManagerBase:
    def __init__(
        self, store: Any, config: SessionConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.config = config or SessionConfig()
        self.clock = clock

    def read_token(self, cookie_header: str | None, authorization: str | None) -> IncomingToken:
        """Find the session token in a request's ``Cookie`` / ``Authorization`` headers."""
        return read_token(self.config, cookie_header, authorization)


class SessionManager(_ManagerBase):
    """Loads and saves sessions through a sync :class:`~serversession.stores.base.Store`.

    ``config`` defaults to :class:`SessionConfig()`; ``clock`` (``time.time``) is
    injectable. Store failures raise :class:`~serversession.exceptions.StoreError`.
    """

    store: Store

    def load(self, token: IncomingToken, *, user_agent: str = "", ip: str = "") -> Session:
        """Return the request's session (a fresh unstored one if it has none)."""
        session = run_sync(lifecycle.load(self.config, token, self.clock(), user_agent, ip), self.store)
        session.manager = self
        return session

    def save(self, session: Session, *, ip: str | None = None) -> SaveResult:
        """Write what the request changed; return the cookies/headers to send."""
        return run_sync(lifecycle.save(session, self.clock(), ip), self.store)

    def modify(self, session: Session, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """Atomic read-modify-write of one key (see :meth:`Session.modify`)."""
        return run_sync(lifecycle.modify(session, key, fn, default, self.clock()), self.store)

    def amodify(self, session: Session, key: str, fn: Callable[[Any], T], default: Any = None) -> Any:
        """Not available on a sync manager: use :meth:`modify`."""
        raise TypeError("this session belongs to a sync manager; call session.modify()")

    def list_sessions(self, user: str, current: Session | None = None) -> list[SessionInfo]:
        """Return ``user``'s live sessions (public handles, no IDs), oldest first."""
        return run_sync(lifecycle.list_sessions(self.config, user, self.clock(), current), self.store)

    def revoke(self, user: str, handle: str) -> bool:
        """End ``user``'s session with public ``handle``; False if there is none."""
        return run_sync(lifecycle.revoke(self.config, user, handle), self.store)

    def revoke_user(self, user: str, *, keep: Session | None = None) -> int:
        """End all of ``user``'s sessions but ``keep``; return how many ended."""
        return run_sync(lifecycle.revoke_user(self.config, user, keep), self.store)


class AsyncSessionManager(_ManagerBase):
    """Async twin of :class:`SessionManager` over an :class:`~serversession.stores.base.AsyncStore`."""

    store: AsyncStore

    async def aload(self, token: IncomingToken, *, user_agent: str = "", ip: str = "") -> Session:
        """See :meth:`SessionManager.load`."""
        session = await run_async(lifecycle.load(self.config, token, self.clock(), user_agent, ip), self.store)
        session.manager = self
        return session

    async def asave(self, session: Session, *, ip: str | None = None) -> SaveResult:
        """See :meth:`SessionManager.save`."""
        return await run_async(lifecycle.save(session, self.clock(), ip), self.store)

    def modify(self, session: Session, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """Not available on an async manager: use ``await session.amodify()``."""
        raise TypeError("this session belongs to an async manager; use await session.amodify()")

    async def amodify(self, session: Session, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """See :meth:`SessionManager.modify`."""
        return await run_async(lifecycle.modify(session, key, fn, default, self.clock()), self.store)

    async def alist_sessions(self, user: str, current: Session | None = None) -> list[SessionInfo]:
        """See :meth:`SessionManager.list_sessions`."""
        return await run_async(lifecycle.list_sessions(self.config, user, self.clock(), current), self.store)

    async def arevoke(self, user: str, handle: str) -> bool:
        """See :meth:`SessionManager.revoke`."""
        return await run_async(lifecycle.revoke(self.config, user, handle), self.store)

    async def arevoke_user(self, user: str, *, keep: Session | None = None) -> int:
        """See :meth:`SessionManager.revoke_user`."""
        return await run_async(lifecycle.revoke_user(self.config, user, keep), self.store)
