"""The Redis store's plan steps: each a frozen request that carries itself out on either client.

The store's plans (:mod:`.redis`) yield these and get their replies back,
typed: ``fields = yield from HGetAll(skey).ask()``, as the lifecycle's plans do
with :mod:`serversession.core.steps`. Each step's :meth:`~RedisStep.call` runs it
on a sync client, :meth:`~RedisStep.acall` on an :class:`AsyncTarget` (the async
client, and the load batcher that coalesces concurrent HGETALLs); the runner is
:func:`._plans.drive` / :func:`._plans.adrive`. A script's reply is typed
``Any``: what each Lua script answers is read by :mod:`._redis_scripts`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from ..core.steps import Step
from . import _redis_scripts as scripts
from ._redis_batch import LoadBatcher

R = TypeVar("R", covariant=True)


class AsyncTarget(NamedTuple):
    """What an async step runs on: the client, and the batcher for loads (None on a cluster)."""

    client: Any
    batcher: LoadBatcher | None


class RedisStep(Step[R]):
    """One Redis call of a plan."""

    __slots__ = ()

    def call(self, client: Any) -> R:
        """Carry the step out on a sync client."""
        raise NotImplementedError

    def acall(self, target: AsyncTarget) -> Awaitable[R]:
        """Carry the step out on the async client."""
        raise NotImplementedError


class Pipelined(RedisStep[R]):
    """A command that can also be queued in a :class:`Pipeline`."""

    __slots__ = ()

    def queue(self, pipe: Any) -> None:
        """Queue the command on ``pipe`` (sync or async pipelines queue alike)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Script(RedisStep[Any]):
    """Run script ``name`` of :mod:`._redis_scripts` (EVALSHA, EVAL when the server lost it)."""

    name: str
    keys: list[str]
    argv: list[Any]

    def call(self, client: Any) -> Any:
        return scripts.call(client, self.name, self.keys, self.argv)

    def acall(self, target: AsyncTarget) -> Awaitable[Any]:
        return scripts.acall(target.client, self.name, self.keys, self.argv)


@dataclass(frozen=True, slots=True)
class ScriptAndWait(RedisStep[Any]):
    """:class:`Script`, then ``WAIT replicas timeout_ms`` on the same connection."""

    name: str
    keys: list[str]
    argv: list[Any]
    replicas: int
    timeout_ms: int

    def call(self, client: Any) -> Any:
        return scripts.call_and_wait(client, self.name, self.keys, self.argv, self.replicas, self.timeout_ms)

    def acall(self, target: AsyncTarget) -> Awaitable[Any]:
        return scripts.acall_and_wait(target.client, self.name, self.keys, self.argv, self.replicas, self.timeout_ms)


@dataclass(frozen=True, slots=True)
class HGetAll(Pipelined[dict[str, str]]):
    """HGETALL: every field of a hash (``{}`` for a missing key); batched on the async face."""

    key: str

    def call(self, client: Any) -> dict[str, str]:
        fields: dict[str, str] = client.hgetall(self.key)
        return fields

    def acall(self, target: AsyncTarget) -> Awaitable[dict[str, str]]:
        if target.batcher is not None:
            return target.batcher.hgetall(self.key)
        fields: Awaitable[dict[str, str]] = target.client.hgetall(self.key)
        return fields

    def queue(self, pipe: Any) -> None:
        pipe.hgetall(self.key)


@dataclass(frozen=True, slots=True)
class HMGet(Pipelined[list[str | None]]):
    """HMGET: the given fields of a hash, None for each one absent."""

    key: str
    fields: tuple[str, ...]

    def call(self, client: Any) -> list[str | None]:
        values: list[str | None] = client.hmget(self.key, *self.fields)
        return values

    def acall(self, target: AsyncTarget) -> Awaitable[list[str | None]]:
        values: Awaitable[list[str | None]] = target.client.hmget(self.key, *self.fields)
        return values

    def queue(self, pipe: Any) -> None:
        pipe.hmget(self.key, *self.fields)


@dataclass(frozen=True, slots=True)
class ZRem(RedisStep[int]):
    """ZREM: drop ``members`` from the sorted set ``key``; how many were there."""

    key: str
    members: tuple[str, ...]

    def call(self, client: Any) -> int:
        return int(client.zrem(self.key, *self.members))

    async def acall(self, target: AsyncTarget) -> int:
        return int(await target.client.zrem(self.key, *self.members))


@dataclass(frozen=True, slots=True)
class Ping(RedisStep[Any]):
    """PING (every node of a cluster)."""

    def call(self, client: Any) -> Any:
        return client.ping()

    def acall(self, target: AsyncTarget) -> Awaitable[Any]:
        reply: Awaitable[Any] = target.client.ping()
        return reply


@dataclass(frozen=True, slots=True)
class Pipeline(RedisStep[list[Any]]):
    """Send ``commands`` in one non-transactional pipeline; their replies, in order."""

    commands: tuple[Pipelined[Any], ...]

    def call(self, client: Any) -> list[Any]:
        with client.pipeline(transaction=False) as pipe:
            for command in self.commands:
                command.queue(pipe)
            replies: list[Any] = pipe.execute()
            return replies

    async def acall(self, target: AsyncTarget) -> list[Any]:
        async with target.client.pipeline(transaction=False) as pipe:
            for command in self.commands:
                command.queue(pipe)
            replies: list[Any] = await pipe.execute()
            return replies
