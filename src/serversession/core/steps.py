"""The typed steps a plan hands its runner: frozen requests, each with the type of its answer.

A plan (:mod:`.lifecycle`) is a generator. It never calls a store; it yields a
step, such as :class:`Load`, and is resumed with the step's answer. Each step
class is a :class:`Step` ``[R]``, ``R`` being what it answers, and is asked for
with ``yield from``::

    stored = yield from Load(key).ask()   # mypy: StoredSession | None

so mypy checks the whole protocol rather than a string table:

* what a plan builds: each step's fields are typed;
* what a plan gets back: :meth:`Step.ask` returns the step's ``R``;
* what a runner answers: each store step carries itself out on a
  :class:`~serversession.stores.base.Store` (:meth:`StoreStep.call`) and on an
  :class:`~serversession.stores.base.AsyncStore` (:meth:`StoreStep.acall`), both
  checked against the store contract's return types.

The hot path (the one load of every request) spells it
``stored = step.answer((yield step))``: the same check, a method call instead
of :meth:`~Step.ask`'s generator (about 1,300 instructions less per request).

Not checked: that a runner sends a step's answer back to the plan that yielded
that step (``Generator.send`` takes ``Any``; the two runners in
:mod:`serversession.manager` are a few lines each), and a plan that writes a bare
``x = yield step`` (``x`` is then ``Any``; ``tests/core/test_steps.py`` refuses
such a line in the core). An :class:`Emit`, whose answer is None, is yielded bare.

The stores with plans of their own (Redis, PostgreSQL) build their driver calls
on :class:`Step` the same way. Nothing here does I/O: the store types are
imported for mypy only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .events import SessionEvent
from .records import Commit, CommitResult, StoredSession

if TYPE_CHECKING:
    from typing import Self  # Python 3.11+; annotations only, so 3.10 never imports it

    from ..stores.base import AsyncStore, Store

R = TypeVar("R", covariant=True)
T = TypeVar("T")


class Step(Generic[R]):
    """A request a plan yields; its runner resumes the plan with an ``R``."""

    __slots__ = ()

    def ask(self) -> Generator[Self, Any, R]:
        """Yield this step and return its answer, typed: ``answer = yield from step.ask()``."""
        answer: R = yield self
        return answer

    def answer(self, sent: Any) -> R:
        """What the runner sent back for this step, typed: ``stored = step.answer((yield step))``.

        The same check as :meth:`ask` at the cost of a call instead of a generator,
        for the hot path (the load every request makes).
        """
        answer: R = sent
        return answer


class StoreStep(Step[R]):
    """A call on the session store, carried out by the step itself against either face."""

    __slots__ = ()

    #: The store method that carries it out (its sync spelling).
    method: ClassVar[str]
    #: The fields, in the order the store method takes them (set by ``@dataclass``).
    __match_args__: ClassVar[tuple[str, ...]]

    def call(self, store: Store) -> R:
        """Carry the step out on a sync store."""
        raise NotImplementedError

    def acall(self, store: AsyncStore) -> Awaitable[R]:
        """Carry the step out on an async store (the awaitable of its ``a``-prefixed method)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        """Deprecated: unpack as the ``(method, args)`` tuple plans yielded before typed steps.

        Kept only while code outside the core still drives plans by hand that way
        (``name, args = next(plan)``); runners use :meth:`call` / :meth:`acall`.
        """
        return iter((self.method, tuple(getattr(self, name) for name in self.__match_args__)))


@dataclass(frozen=True, slots=True)
class Load(StoreStep[StoredSession | None]):
    """Read the session under ``key`` (:meth:`Store.load <serversession.stores.base.Store.load>`)."""

    method: ClassVar[str] = "load"
    key: str

    def call(self, store: Store) -> StoredSession | None:
        return store.load(self.key)

    def acall(self, store: AsyncStore) -> Awaitable[StoredSession | None]:
        return store.aload(self.key)


@dataclass(frozen=True, slots=True)
class Create(StoreStep[CommitResult | bool]):
    """Store a new session under ``key`` (:meth:`Store.create <serversession.stores.base.Store.create>`).

    Answers a :class:`~.records.CommitResult`, or the bool that stores written
    before it answered one still give (the lifecycle accepts both).
    """

    method: ClassVar[str] = "create"
    key: str
    commit: Commit

    def call(self, store: Store) -> CommitResult | bool:
        return store.create(self.key, self.commit)

    def acall(self, store: AsyncStore) -> Awaitable[CommitResult | bool]:
        return store.acreate(self.key, self.commit)


@dataclass(frozen=True, slots=True)
class Apply(StoreStep[CommitResult]):
    """Apply a :class:`~.records.Commit` delta to the session under ``key``
    (:meth:`Store.commit <serversession.stores.base.Store.commit>`)."""

    method: ClassVar[str] = "commit"
    key: str
    commit: Commit

    def call(self, store: Store) -> CommitResult:
        return store.commit(self.key, self.commit)

    def acall(self, store: AsyncStore) -> Awaitable[CommitResult]:
        return store.acommit(self.key, self.commit)


@dataclass(frozen=True, slots=True)
class Rotate(StoreStep[CommitResult]):
    """Move the session to ``new_key`` with ``commit`` applied, leaving a marker for
    ``grace`` seconds (:meth:`Store.rotate <serversession.stores.base.Store.rotate>`)."""

    method: ClassVar[str] = "rotate"
    old_key: str
    new_key: str
    commit: Commit
    grace: float

    def call(self, store: Store) -> CommitResult:
        return store.rotate(self.old_key, self.new_key, self.commit, self.grace)

    def acall(self, store: AsyncStore) -> Awaitable[CommitResult]:
        return store.arotate(self.old_key, self.new_key, self.commit, self.grace)


@dataclass(frozen=True, slots=True)
class Delete(StoreStep[bool]):
    """Delete the session under ``key`` (:meth:`Store.delete <serversession.stores.base.Store.delete>`)."""

    method: ClassVar[str] = "delete"
    key: str

    def call(self, store: Store) -> bool:
        return store.delete(self.key)

    def acall(self, store: AsyncStore) -> Awaitable[bool]:
        return store.adelete(self.key)


@dataclass(frozen=True, slots=True)
class ListUser(StoreStep[list[StoredSession]]):
    """The sessions indexed under ``user`` (:meth:`Store.list_user <serversession.stores.base.Store.list_user>`)."""

    method: ClassVar[str] = "list_user"
    user: str

    def call(self, store: Store) -> list[StoredSession]:
        return store.list_user(self.user)

    def acall(self, store: AsyncStore) -> Awaitable[list[StoredSession]]:
        return store.alist_user(self.user)


@dataclass(frozen=True, slots=True)
class Emit(Step[None]):
    """Hand ``event`` to the manager's listeners; answered with None."""

    event: SessionEvent

    def __iter__(self) -> Iterator[Any]:
        """Deprecated: unpack as ``("emit", (event,))``; see :meth:`StoreStep.__iter__`."""
        return iter(("emit", (self.event,)))


#: A plan: yields store steps and events, returns a ``T``.
Plan = Generator[StoreStep[Any] | Emit, Any, T]

__all__ = ["Apply", "Create", "Delete", "Emit", "ListUser", "Load", "Plan", "Rotate", "Step", "StoreStep"]
