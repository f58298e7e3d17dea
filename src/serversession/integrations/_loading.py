"""The kit's deferred loads: a request's session is read from the store at its first use.

:func:`lazy_session` / :func:`alazy_session` (re-exported by the kit) build it.

Why here and not in each integration: every integration builds its session
through :func:`serversession.integrations.kit.admit` (or :func:`lazy_session`),
so the rule "a request that never touches its session costs no store command"
is written once. A :class:`SyncLoad` reads on first use; an :class:`AsyncLoad`
reads on ``await session.aload()``, and a synchronous first use on its event
loop's thread raises :class:`~serversession.core.session.SessionNotLoadedError`
rather than block the loop (from a worker thread, such as Starlette's pool for a
plain ``def`` endpoint, it runs the read on the request's loop and waits).

Both read at most once: later uses get the same session, and a failed read
raises the same store error again instead of reading twice in one request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..core.events import SessionEvent
from ..core.session import Session, SessionNotLoadedError, deferred
from ..core.transport import IncomingToken
from ..exceptions import StoreError

if TYPE_CHECKING:
    from ..manager import AsyncSessionManager, SessionManager

NOT_LOADED = (
    "this request's session has not been read from the store yet, and reading it here would block the event "
    "loop: call `await session.aload()` first (or the integration's awaited accessor), then use the session"
)


class SyncLoad:
    """Reads one request's session with a :class:`~serversession.SessionManager`, once."""

    __slots__ = ("_error", "_loaded", "ip", "manager", "now", "token", "user_agent")

    def __init__(self, manager: SessionManager, token: IncomingToken, user_agent: str, ip: str, now: float) -> None:
        self.manager, self.token, self.user_agent, self.ip, self.now = manager, token, user_agent, ip, now
        self._loaded: Session | None = None
        self._error: StoreError | None = None

    @property
    def failed(self) -> bool:
        """The read was tried and the store failed."""
        return self._error is not None

    def load(self) -> Session:
        """The loaded session (the store is read the first time only)."""
        if self._loaded is not None:
            return self._loaded
        if self._error is not None:
            raise self._error
        manager = self.manager
        try:
            session = manager.load(self.token, user_agent=self.user_agent, ip=self.ip)
        except StoreError as exc:
            self._error = exc
            raise
        self._loaded = session
        event = observe(manager, self.token, session, self.ip, self.now)
        if event is not None:
            manager.emit(event)
        return session

    async def aload(self) -> Session:
        """The same blocking read: a sync manager has no other."""
        return self.load()


class AsyncLoad:
    """Reads one request's session with an :class:`~serversession.AsyncSessionManager`, once.

    Built inside the request's event loop, which it remembers for a synchronous
    use from a worker thread.
    """

    __slots__ = ("_error", "_loaded", "_waiters", "ip", "loop", "manager", "now", "token", "user_agent")

    def __init__(self, manager: AsyncSessionManager, token: IncomingToken, user_agent: str, ip: str,
                 now: float) -> None:  # fmt: skip
        self.manager, self.token, self.user_agent, self.ip, self.now = manager, token, user_agent, ip, now
        self.loop = asyncio.get_running_loop()
        self._loaded: Session | None = None
        self._error: StoreError | None = None
        # None: no read under way; a list: one is, and these futures wait for its answer.
        self._waiters: list[asyncio.Future[Session]] | None = None

    @property
    def failed(self) -> bool:
        """The read was tried and the store failed."""
        return self._error is not None

    def load(self) -> Session:
        """The loaded session, from a thread that may block; raises
        :class:`SessionNotLoadedError` on an event loop's thread."""
        if self._loaded is not None:
            return self._loaded
        if self._error is not None:
            raise self._error
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self.loop.is_running():  # a worker thread: the read runs on the request's loop
                return asyncio.run_coroutine_threadsafe(self.aload(), self.loop).result()
        raise SessionNotLoadedError(NOT_LOADED)

    async def aload(self) -> Session:
        """The loaded session; tasks that ask while the read is under way wait for that one."""
        if self._loaded is not None:
            return self._loaded
        if self._error is not None:
            raise self._error
        if self._waiters is not None:
            waiter: asyncio.Future[Session] = self.loop.create_future()
            self._waiters.append(waiter)
            return await waiter
        waiters: list[asyncio.Future[Session]] = []
        self._waiters = waiters
        manager = self.manager
        try:
            session = await manager.aload(self.token, user_agent=self.user_agent, ip=self.ip)
        except BaseException as exc:
            if isinstance(exc, StoreError):
                self._error = exc
            self._waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        self._loaded = session
        self._waiters = None
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(session)
        event = observe(manager, self.token, session, self.ip, self.now)
        if event is not None:
            await manager.aemit(event)
        return session


def observe(manager: SessionManager | AsyncSessionManager, token: IncomingToken, session: Session, ip: str,
            now: float) -> SessionEvent | None:  # fmt: skip
    """The guard's guessing event for a presented ID that did not load, if any."""
    return manager.guard.observe(token, session, ip, now)


def lazy_session(manager: SessionManager, token: IncomingToken, user_agent: str, ip: str, now: float) -> Session:
    """The request's session, read from the store at its first use (at most once).

    Without a token there is nothing to read and the fresh session is built at
    once. The guard's guessing observation happens with the read. A store
    failure raises :class:`~serversession.exceptions.StoreError` at that first
    use, and again at any later one.
    """
    load = SyncLoad(manager, token, user_agent, ip, now)
    if token.value is None:
        return load.load()
    return deferred(manager.config, load, via_header=token.via_header)


async def alazy_session(manager: AsyncSessionManager, token: IncomingToken, user_agent: str, ip: str,
                        now: float) -> Session:  # fmt: skip
    """Async twin of :func:`lazy_session` (awaited in the request's event loop): the read
    happens on ``await session.aload()``; a synchronous first use on the loop raises
    :class:`~serversession.core.session.SessionNotLoadedError`."""
    load = AsyncLoad(manager, token, user_agent, ip, now)
    if token.value is None:
        return await load.aload()
    return deferred(manager.config, load, via_header=token.via_header)
