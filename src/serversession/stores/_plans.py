"""What the stores with plans of their own share: the runner loop and the one error mapping.

The Redis and PostgreSQL stores write each operation once, as a *plan*: a
generator yielding typed driver steps (:class:`~serversession.core.steps.Step`
subclasses in :mod:`._redis_steps` and :mod:`._postgres_steps`), which their sync and
async faces carry out, the same pattern as the lifecycle's plans and the
managers. :func:`drive` and :func:`adrive` are that loop, written once.

:class:`DriverErrors` is where a store says, once, which of its driver's errors
mean "the store cannot answer" (:class:`~serversession.exceptions.StoreUnavailableError`,
a 503 the client may retry) and which are any other failure
(:class:`~serversession.exceptions.StoreError`); every call of the store goes
through :meth:`DriverErrors.mapped`, so a new code path cannot leak a raw driver
exception or classify one differently.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, TypeVar

from ..exceptions import StoreError, StoreUnavailableError

S = TypeVar("S")
T = TypeVar("T")
_Errors = tuple[type[BaseException], ...]


def drive(plan: Generator[S, Any, T], carry_out: Callable[[S], Any]) -> T:
    """Run ``plan`` to its end, answering each step with ``carry_out(step)``.

    A step that fails (or a cancellation) closes the plan at once, so its
    ``finally`` blocks run now rather than whenever the traceback is dropped
    (the near cache's read ticket is released in one).
    """
    try:
        step = next(plan)
        while True:
            step = plan.send(carry_out(step))
    except StopIteration as done:
        value: T = done.value
        return value
    finally:
        plan.close()


async def adrive(plan: Generator[S, Any, T], carry_out: Callable[[S], Awaitable[Any]]) -> T:
    """Async twin of :func:`drive`: each answer is ``await carry_out(step)``."""
    try:
        step = next(plan)
        while True:
            step = plan.send(await carry_out(step))
    except StopIteration as done:
        value: T = done.value
        return value
    finally:
        plan.close()


class DriverErrors:
    """One store's driver errors, mapped to the library's error tree.

    ``kind`` is the store's :attr:`~serversession.stores.base.Store.kind`,
    ``label`` the name in messages ("Redis"); ``unavailable`` are the driver's
    errors that become :class:`StoreUnavailableError`; any other of ``caught``
    becomes :class:`StoreError`. Errors outside ``caught`` (``BaseException``
    such as a cancellation) pass through untouched.
    """

    __slots__ = ("caught", "kind", "label", "unavailable")

    def __init__(self, kind: str, label: str, *, unavailable: _Errors, caught: _Errors = (Exception,)) -> None:
        self.kind, self.label, self.unavailable, self.caught = kind, label, unavailable, caught

    def error(self, operation: str, exc: BaseException) -> StoreError:
        """The error a failed ``operation`` raises, with ``exc`` to be its ``__cause__``."""
        cls = StoreUnavailableError if isinstance(exc, self.unavailable) else StoreError
        message = f"{self.label} {operation} failed: {type(exc).__name__}: {exc}"
        return cls(message, store=self.kind, operation=operation)

    def mapped(self, operation: str) -> _Mapped:
        """``with errors.mapped("load"):`` raises only library errors: a driver's
        mapped (``__cause__``), a :class:`StoreError` from below (a corrupt record)
        named after this store and ``operation``."""
        return _Mapped(self, operation)


class _Mapped:
    """The context manager :meth:`DriverErrors.mapped` returns (a class: no generator per call)."""

    __slots__ = ("errors", "operation")

    def __init__(self, errors: DriverErrors, operation: str) -> None:
        self.errors, self.operation = errors, operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, StoreError):  # raised below (a corrupt record): name this store
            exc.store, exc.operation = self.errors.kind, self.operation
        elif isinstance(exc, self.errors.caught):
            raise self.errors.error(self.operation, exc) from exc
