"""``redis://``, ``redis+cluster://`` and their TLS and Valkey spellings: sessions in Redis.

Layout (``prefix`` defaults to ``"ss:"``):

* ``{prefix}s:{key}``: one HASH per session. Metadata lives in the one-letter
  fields of :func:`~serversession.core.codec.encode_meta`, data key ``cart`` in
  field ``d:cart`` (its JSON text). Expiry is the key's native TTL (PEXPIREAT).
* A rotated-away key is a *tombstone*: a hash whose single field ``m`` names the
  new key, living ``grace`` seconds. It never loads; commits on it answer MOVED.
* ``{prefix}u:{user}``: a sorted set of the user's storage keys scored by their
  absolute deadline (Unix seconds). Every write to it drops entries past their
  deadline and sets the set's own expiry to the highest score left (an exact
  PEXPIREAT rather than ``GT``, since ``GT`` never touches a key without a TTL),
  so indexes never grow forever and no keyspace notifications are needed.

Costs: a load is one HGETALL; a commit or create is one EVALSHA of a Lua script
that checks and writes atomically (EVAL when the server lost its script cache).
On standalone servers the user index is written by the same script; on a cluster
it is in another slot, so indexing costs one more command. Rotation is atomic
on standalone servers; see :meth:`RedisStore.rotate` for the cluster.

The per-user cap (``Commit.user_cap``), and an ended session's marker (a hash
``{m: "", r: reason}`` with the session's remaining TTL), see
:mod:`._redis_scripts`. On a standalone server it is part of the write's one
script: atomic, and no extra command. On a cluster the user's sessions live in
other slots than their index, so no script can see them all; there the write
comes first, then :data:`~._redis_scripts.CLAIM` indexes the session and answers
the index's members in one atomic step, which orders the binds of a user: each
sees every session bound before it. The store reads their hashes (``HMGET``,
one per member, pipelined), ends the least recently used beyond the cap with
:data:`~._redis_scripts.FINISH` (one per session ended; it skips one another
bind ended first) and drops ended and stale entries from the index (one ZREM).
The last of concurrent binds thus sees all of them and brings the user down to
the cap: it holds once every bind in flight has finished (between a write and
its claim, one round trip, the user may have one session more). A refusal is
found after the write too, and undone: a created session is deleted, a
rotation's old session put back (:data:`~._redis_scripts.RESTORE`), a binding
commit's user set back (its data changes stay). A client that dies between the
write and the claim leaves the user over the cap until their next sign-in.

Both faces live on this class: the sync one uses :class:`redis.Redis` or
:class:`redis.cluster.RedisCluster`; the async one uses ``redis.asyncio``
clients, created on first use. Every operation is written once as a *plan*, a
generator yielding typed Redis steps (:mod:`._redis_steps`: ``fields = yield from
HGetAll(skey).ask()``), which :meth:`RedisStore._run` and :meth:`RedisStore._arun`
carry out, so the two faces share all logic; the driver's errors become
:class:`StoreError` / :class:`StoreUnavailableError` in one place (``_ERRORS``). Calls are
bounded by the socket timeouts and never retried: a retried commit could apply a
compare-and-set twice. The next call after an outage simply reconnects.

With ``near_cache`` on, :meth:`RedisStore._load` asks the near cache
(:mod:`._near_cache`) first and fills it under a ticket taken before the
HGETALL is sent; the runners evict the session keys of every script step
(every write: create, commit, rotate, delete, the cap's endings, undo and
restore) once it is answered or has failed.

Replication is asynchronous: a logout acknowledged by a master that dies before
a replica read it comes back after the failover. With ``wait_replicas=N``
(standalone servers; also ``?wait_replicas=N&wait_timeout=S`` in the URL) a
delete (logout, revocation, expiry) is followed by ``WAIT N`` on the same
connection, so it is acknowledged only once N replicas have it, or after
``wait_timeout`` seconds (0.1) with a warning in the log.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..core.codec import decode_meta, encode_meta_fields
from ..core.records import (
    REFUSED,
    Commit,
    CommitResult,
    Outcome,
    StoredSession,
    UserCap,
    apply_commit,
    committed,
    ended_marker,
    least_recently_used,
)
from ..exceptions import ConfigurationError
from . import _redis_scripts as scripts
from ._near_cache import NearCache, NearCacheConfig, split_url_options, store_config
from ._plans import DriverErrors, adrive, drive
from ._redis_batch import LoadBatcher
from ._redis_sentinel import SentinelTarget, is_sentinel_url, parse_sentinel_url
from ._redis_steps import AsyncTarget, HGetAll, HMGet, Ping, Pipeline, RedisStep, Script, ScriptAndWait, ZRem
from ._redis_url import check_seconds, parse_url

T = TypeVar("T")
_Plan = Generator[RedisStep[Any], Any, T]

_UNAVAILABLE = (
    redis.exceptions.ConnectionError,  # BusyLoadingError, MaxConnectionsError, auth failures
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError, redirection TTL spent
    redis.exceptions.TryAgainError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.RedisClusterException,  # no reachable node, slot not covered
    OSError,
)
#: Anything else a driver raises (redis-py's cluster clients have raised AttributeError
#: from a torn-down connection mid-failover) is still a store failure, never a 500.
_ERRORS = DriverErrors("redis", "Redis", unavailable=_UNAVAILABLE, caught=(Exception,))


def _seconds(text: str | None) -> float:
    """A hash's ``s`` (last seen) field as seconds; 0 (least recent) if unreadable."""
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Session store in Redis or Valkey, standalone or cluster, with both faces.

    ``url``: ``redis://`` or ``valkey://`` for one server; ``redis+cluster://``
    or ``valkey+cluster://`` with any seed node for a cluster;
    ``redis+sentinel://[user:pass@]host:port[,host:port...]/service[/db]`` for
    the master a set of sentinels names, found again after a failover (see
    :mod:`._redis_sentinel`); ``rediss`` and ``valkeys`` for TLS (see
    :data:`~serversession.stores.url.REDIS_SCHEMES`).
    ``prefix`` (``"ss:"``) starts every key. ``socket_timeout`` and
    ``connect_timeout`` (2.0 s each, above 0) bound every call; past them, and
    whenever the server cannot answer, operations raise :class:`StoreUnavailableError`.
    ``wait_replicas`` and ``wait_timeout``: see the module docs (standalone only).
    ``near_cache`` (off): True, a mapping of
    :class:`~._near_cache.NearCacheConfig` fields or a config keeps the records
    this process read in memory, so a repeated load costs no round trip; each
    is evicted when Redis reports a change by any process (``CLIENT TRACKING``
    BCAST), and the cache is bypassed whenever that report could be missed. In
    the URL: ``?near_cache=1`` with ``near_cache_max_entries`` and
    ``near_cache_max_bytes`` (the argument, if given, wins over the URL's
    switch). Standalone and Cluster; not with Sentinel. See ``docs/concurrency.md``.
    Other driver failures raise :class:`StoreError`. ``client_options`` go to
    the redis-py clients. Raises :class:`ConfigurationError` for a bad URL: an
    unknown scheme or query option, or a value redis-py could not use (the
    options each kind of URL takes are listed in :mod:`._redis_url`).

    The async client is made on first async use and bound to that event loop;
    call :meth:`aclose` (not just :meth:`close`) once the async face was used.
    A cluster that is down at start-up is reached on the first call instead.
    """

    kind = "redis"

    def __init__(
        self, url: str, *, prefix: str = "ss:", socket_timeout: float = 2.0,
        connect_timeout: float = 2.0, wait_replicas: int | None = None,
        wait_timeout: float | None = None,
        near_cache: bool | str | Mapping[str, Any] | NearCacheConfig | None = None, **client_options: Any,
    ) -> None:  # fmt: skip
        url, near_options = split_url_options(url)
        self._near_config = store_config(near_cache, near_options)
        self._sentinel: SentinelTarget | None = None
        if is_sentinel_url(url):
            self._sentinel, own = parse_sentinel_url(url)
            self._url, self.cluster = self._sentinel.data_url, False
        else:
            self._url, self.cluster, own = parse_url(url)
        try:
            check_seconds(socket_timeout)
            check_seconds(connect_timeout)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"socket_timeout and connect_timeout must be seconds above 0: {exc}") from None
        try:
            self.wait_replicas = int(own.get("wait_replicas", 0) if wait_replicas is None else wait_replicas)
            self.wait_timeout = float(own.get("wait_timeout", 0.1) if wait_timeout is None else wait_timeout)
        except ValueError as exc:
            raise ConfigurationError(f"bad wait_replicas or wait_timeout in the Redis store URL: {exc}") from exc
        if self.wait_replicas < 0 or not 0 < self.wait_timeout <= 60:
            raise ConfigurationError("wait_replicas must be >= 0 and wait_timeout in (0, 60] seconds")
        if self.wait_replicas and self.cluster:
            raise ConfigurationError("wait_replicas is not supported on a Redis Cluster yet (see the RedisStore docs)")
        if self._near_config is not None and self._sentinel is not None:
            raise ConfigurationError("near_cache is not supported with Sentinel yet (standalone and Cluster URLs only)")
        self.prefix = prefix
        self._near: NearCache | None = None
        self._near_lock = threading.Lock()
        self._near_options = client_options
        # Only for pruning indexes and immediate expiries: TTLs run on the server's clock.
        self._clock = time.time
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout,
            **client_options, "decode_responses": True,
        }  # fmt: skip
        self._client: Any = None
        self._aclient: Any = None
        self._finder: Any = None  # the Sentinel managers of the sync and async clients, closed with them
        self._afinder: Any = None
        self._abatcher: LoadBatcher | None = None
        self._ainitialized = False
        self._ainit_lock: asyncio.Lock | None = None
        try:  # now, so a bad option fails at start-up; a cluster that is down is retried later
            self._sync_client()
        except _UNAVAILABLE:
            pass
        except (redis.RedisError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"bad Redis store URL or option: {exc}") from exc

    def _sync_client(self) -> Any:
        if self._client is None:  # a cluster client asks its seed node for the slot map here
            options = {"retry": Retry(NoBackoff(), 0), **self._options}
            if self._sentinel is not None:  # no I/O yet: the master is looked up on the first connect
                self._client, self._finder = self._sentinel.sync_client(options)
            else:
                factory = redis.cluster.RedisCluster if self.cluster else redis.Redis
                self._client = factory.from_url(self._url, **options)
        return self._client

    def _async_client(self) -> Any:
        if self._aclient is None:
            options = {"retry": AsyncRetry(NoBackoff(), 0), **self._options}
            if self._sentinel is not None:
                self._aclient, self._afinder = self._sentinel.async_client(options)
            else:
                factory = redis.asyncio.cluster.RedisCluster if self.cluster else redis.asyncio.Redis
                self._aclient = factory.from_url(self._url, **options)
            # Standalone only: a cluster pipeline splits by node and would cost more than it saves.
            self._abatcher = None if self.cluster else LoadBatcher(self._aclient)
        return self._aclient

    async def _ready_async_client(self) -> Any:
        """The async client, its cluster slots mapped once before concurrent use.

        redis-py's async cluster client maps the cluster on its first command;
        many first commands at once each start that mapping and some fail. One
        ``initialize()`` under a lock makes the first burst of requests safe.
        """
        client = self._async_client()
        if self.cluster and not self._ainitialized:
            if self._ainit_lock is None:
                self._ainit_lock = asyncio.Lock()
            async with self._ainit_lock:
                if not self._ainitialized:
                    await client.initialize()
                    self._ainitialized = True
        return client

    @property
    def near_cache(self) -> NearCache | None:
        """The near cache (None unless ``near_cache`` is on): its :meth:`~NearCache.stats`,
        and what :class:`~._near_metrics.NearCacheCollector` reads. Made on first use,
        again after :meth:`close`; its listener starts at the first lookup."""
        if self._near_config is None:
            return None
        near = self._near
        if near is None:
            with self._near_lock:
                if self._near is None:
                    options = {k: v for k, v in self._near_options.items() if k != "retry"}
                    self._near = NearCache(self._url, self._skey(""), cluster=self.cluster,
                                           config=self._near_config, **options)  # fmt: skip
                near = self._near
        return near

    def _evict_written(self, step: RedisStep[Any]) -> None:
        """After a write step is answered or failed: drop this process's copies of its sessions."""
        near = self._near
        if near is not None and isinstance(step, Script | ScriptAndWait):
            cut = self._skey("")
            near.evict(*(k for k in step.keys if k.startswith(cut)))

    # -- shared logic: keys, argument packing, replies ------------------------------
    def _skey(self, key: str) -> str:
        return f"{self.prefix}s:{key}"

    def _ikey(self, user: str) -> str:
        return f"{self.prefix}u:{user}"

    def _keys(self, skeys: list[str], user: str | None) -> list[str]:
        """Standalone scripts also write the user index; cluster ones cannot (other slot)."""
        return [*skeys, self._ikey(user)] if user and not self.cluster else skeys

    @staticmethod
    def _split(fields: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """Hash fields -> (data, meta)."""
        data = {f[2:]: v for f, v in fields.items() if f.startswith("d:")}
        return data, {f: v for f, v in fields.items() if not f.startswith("d:")}

    def _session(self, key: str, fields: Mapping[str, str]) -> StoredSession | None:
        """Decode one HGETALL reply; None for a missing key or a tombstone, an ended
        marker's :func:`~serversession.core.records.ended_marker` for one."""
        if fields.get("m") == "":
            return ended_marker(key, fields.get("r", ""))
        if not fields or "m" in fields:
            return None
        data, meta = self._split(fields)
        return StoredSession(key, data, decode_meta(meta))

    def _index(self, user: str | None, commit: Commit, key: str, expiry_ms: int) -> _Plan[None]:
        """The user index in its own script call (its slot differs from the session's)."""
        if user:
            bare = Commit(expires_at=commit.expires_at, absolute_at=commit.absolute_at)
            spec = scripts.pack(bare, self._clock(), None, key)
            yield from Script("index", [self._ikey(user)], [expiry_ms, *spec]).ask()

    def _claim(self, user: str, cap: UserCap, commit: Commit, key: str, expiry_ms: int,
               keep: str = "") -> _Plan[list[str] | None]:  # fmt: skip
        """The per-user cap on a cluster, after the write (see the module docs): the keys
        ended, or None to refuse (``key`` is then out of the index; the caller undoes its write)."""
        ikey = self._ikey(user)
        bare = Commit(expires_at=commit.expires_at, absolute_at=commit.absolute_at)
        spec = scripts.pack(bare, self._clock(), None, key)
        members = yield from Script("claim", [ikey], [expiry_ms, *spec]).ask()
        others = [m for m in members if m not in (key, keep)]
        live, stale = [], []
        if others:
            replies = yield from Pipeline(tuple(HMGet(self._skey(m), ("u", "s", "m")) for m in others)).ask()
            for member, (u, seen, moved) in zip(others, replies, strict=True):
                if u == user and moved is None:
                    live.append((_seconds(seen), member))
                else:
                    stale.append(member)
        chosen = least_recently_used(live, cap)
        if chosen is None:
            yield from ZRem(ikey, (key, *stale)).ask()
            return None
        ended = []
        for member in chosen:
            if (yield from Script("finish", [self._skey(member)], [user, cap.reason]).ask()):
                ended.append(member)
        if stale or chosen:
            yield from ZRem(ikey, (*stale, *chosen)).ask()
        return ended

    # -- plans: every operation once, for both faces ---------------------------------
    def _load(self, key: str) -> _Plan[StoredSession | None]:
        skey = self._skey(key)
        near = self.near_cache
        if near is None:
            fields = yield from HGetAll(skey).ask()
            return self._session(key, fields)
        cached = near.get(skey)
        if cached is not None:  # no round trip
            return self._session(key, cached)
        ticket = near.begin(skey)  # before the read is sent: an invalidation overtaking it spoils the fill
        try:
            fields = yield from HGetAll(skey).ask()
            near.fill(ticket, fields)
        finally:
            near.release(ticket)
        return self._session(key, fields)

    def _spec(self, commit: Commit, now: float, expires_at: float | None, key: str, keep: str = "") -> list[Any]:
        """A write's spec; with its per-user cap on a standalone server (a cluster claims after)."""
        spec = scripts.pack(commit, now, expires_at, key)
        return spec if self.cluster else spec + scripts.cap_args(commit, self._skey(""), keep)

    def _create(self, key: str, commit: Commit) -> _Plan[CommitResult]:
        now = self._clock()
        spec = self._spec(commit, now, commit.expires_at or now, key)
        reply = yield from Script("create", self._keys([self._skey(key)], commit.index_user), spec).ask()

        def undo() -> Script:  # refused: the new session goes
            return Script("delete", [self._skey(key)], [])

        return (yield from self._index_after_write(key, commit, reply, undo))

    def _commit(self, key: str, commit: Commit) -> _Plan[CommitResult]:
        spec = self._spec(commit, self._clock(), commit.expires_at, key)
        reply = yield from Script("commit", self._keys([self._skey(key)], commit.index_user), spec).ask()

        def undo() -> Script:  # refused: the session goes back to its user before (the data written stays)
            back = Commit(meta=encode_meta_fields(user=reply[3] or None))
            return Script("commit", [self._skey(key)], scripts.pack(back, self._clock(), None))

        return (yield from self._index_after_write(key, commit, reply, undo))

    def _index_after_write(
        self, key: str, commit: Commit, reply: Any, undo: Callable[[], Script]
    ) -> _Plan[CommitResult]:
        """On a cluster the user index lives in its own slot: after a create or commit that
        binds a user, index it (the cap claimed there; ``undo()``'s step sent if it refuses)."""
        result = scripts.result(reply)
        user, cap = commit.index_user, commit.user_cap
        if result.outcome is not Outcome.OK or not self.cluster or not user:
            return result
        if cap is None:
            yield from self._index(user, commit, key, reply[1])
            return result
        evicted = yield from self._claim(user, cap, commit, key, reply[1])
        if evicted is None:
            yield from undo().ask()
            return REFUSED
        return committed(evicted)

    def _rotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> _Plan[CommitResult]:
        now = self._clock()
        expires_at = commit.expires_at or now
        if self.cluster:
            reply = yield from Script("take", [self._skey(old_key)], [new_key, scripts.ms(grace)]).ask()
            if reply[0] != "ok":
                return scripts.result(reply)
            taken = reply[2:]
            it = iter(taken)
            data, meta = self._split(dict(zip(it, it, strict=True)))
            apply_commit(data, meta, Commit(commit.set_data, commit.unset_data, commit.meta))
            user = commit.index_user or meta.get("u") or None
            moved = Commit(data, frozenset(), meta, expires_at, user, commit.absolute_at,
                           user_cap=commit.user_cap if commit.index_user else None)  # fmt: skip
            created = yield from self._create(new_key, moved)  # the old key, a tombstone now, never counts
            if created.outcome is Outcome.REFUSED:  # put the session back where it was
                yield from Script("restore", [self._skey(old_key)], [new_key, reply[1], *taken]).ask()
            elif created.outcome is not Outcome.OK:
                raise ValueError(f"rotation target {new_key!r} is taken")
            return created
        # The index user is the merged "u" (as in every store): known up front
        # unless the commit leaves "u" alone, else indexed after the script.
        known = bool(commit.index_user) or "u" in commit.meta
        user = commit.index_user or commit.meta.get("u")
        spec = self._spec(commit, now, expires_at, new_key, keep=old_key)
        keys = self._keys([self._skey(old_key), self._skey(new_key)], user)
        reply = yield from Script("rotate", keys, [scripts.ms(grace), new_key, *spec]).ask()
        result = scripts.result(reply)
        if result.outcome is Outcome.OK and not known:
            yield from self._index(reply[2], commit, new_key, reply[1])
        return result

    def _delete(self, key: str) -> _Plan[bool]:
        if self.wait_replicas:
            wait = (self.wait_replicas, max(1, round(self.wait_timeout * 1000)))
            return bool((yield from ScriptAndWait("delete", [self._skey(key)], [], *wait).ask()))
        return bool((yield from Script("delete", [self._skey(key)], []).ask()))

    def _list_user(self, user: str) -> _Plan[list[StoredSession]]:
        ikey = self._ikey(user)
        members = yield from Script("members", [ikey], [repr(self._clock())]).ask()
        if not members:
            return []
        replies = yield from Pipeline(tuple(HGetAll(self._skey(m)) for m in members)).ask()
        found, stale = [], []
        for member, fields in zip(members, replies, strict=True):
            session = self._session(member, fields)
            if session is None or session.meta.user != user:
                stale.append(member)
            else:
                found.append(session)
        if stale:
            yield from ZRem(ikey, tuple(stale)).ask()
        return found

    def _ping(self) -> _Plan[None]:
        yield from Ping().ask()

    # -- carrying plans out -----------------------------------------------------------
    def _run(self, operation: str, plan: _Plan[T]) -> T:
        with _ERRORS.mapped(operation):
            client = self._sync_client()
            if self._near_config is None:
                return drive(plan, lambda step: step.call(client))

            def carry_out(step: RedisStep[Any]) -> Any:
                try:
                    return step.call(client)
                finally:  # answered or failed (a timed-out write may have been applied)
                    self._evict_written(step)

            return drive(plan, carry_out)

    async def _arun(self, operation: str, plan: _Plan[T]) -> T:
        with _ERRORS.mapped(operation):
            target = AsyncTarget(await self._ready_async_client(), self._abatcher)
            if self._near_config is None:
                return await adrive(plan, lambda step: step.acall(target))

            async def carry_out(step: RedisStep[Any]) -> Any:
                try:
                    return await step.acall(target)
                finally:
                    self._evict_written(step)

            return await adrive(plan, carry_out)

    # -- sync face --------------------------------------------------------------------
    def load(self, key: str) -> StoredSession | None:
        """See :meth:`Store.load`: one HGETALL."""
        return self._run("load", self._load(key))

    def create(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`Store.create`: one script call (plus the index call on a cluster)."""
        return self._run("create", self._create(key, commit))

    def commit(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`Store.commit`: one script call (plus the index call on a cluster)."""
        return self._run("commit", self._commit(key, commit))

    def rotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """See :meth:`Store.rotate`; atomic on a standalone server.

        On a cluster the keys live in different slots, so rotation takes two steps:
        a script turns the old hash into the tombstone and returns its fields, then
        the merged session is created under ``new_key``. Between the two round trips
        a concurrent commit on the old key follows the tombstone to a key that does
        not exist yet and answers MISSING; a crash of the client or the new key's
        master in that window loses the session (the user signs in again).
        """
        return self._run("rotate", self._rotate(old_key, new_key, commit, grace))

    def delete(self, key: str) -> bool:
        """See :meth:`Store.delete`; a tombstone is left alone and answers False."""
        return self._run("delete", self._delete(key))

    def list_user(self, user: str) -> list[StoredSession]:
        """See :meth:`Store.list_user`; drops index entries that no longer match."""
        return self._run("list_user", self._list_user(user))

    def scan(self) -> Iterator[StoredSession]:
        """See :meth:`Store.scan`: SCAN over every master. Administrative use only."""
        pattern = _glob_escape(self.prefix) + "s:*"
        with _ERRORS.mapped("scan"):
            batch: list[str] = []
            client = self._sync_client()
            for skey in client.scan_iter(match=pattern, count=500):
                batch.append(skey)
                if len(batch) == 200:
                    yield from self._fetch(client, batch)
                    batch = []
            yield from self._fetch(client, batch)

    def _fetch(self, client: Any, skeys: list[str]) -> Iterator[StoredSession]:
        cut = len(self._skey(""))
        replies = Pipeline(tuple(HGetAll(k) for k in skeys)).call(client)
        for skey, fields in zip(skeys, replies, strict=True):
            session = self._session(skey[cut:], fields)
            if session is not None and session.ended is None:
                yield session

    def purge_expired(self, limit: int = 1000) -> int:
        """Return 0: Redis expires keys itself."""
        return 0

    def ping(self) -> None:
        """See :meth:`Store.ping`: PING (every node of a cluster)."""
        self._run("ping", self._ping())

    def close(self) -> None:
        """Close the sync client's connections (see :meth:`aclose` for the async face)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        near, self._near = self._near, None  # a later call makes a new one
        if near is not None:
            near.close()
        finder, self._finder = self._finder, None
        if finder is not None:
            finder.close()

    # -- async face ----------------------------------------------------------------------
    async def aload(self, key: str) -> StoredSession | None:
        """See :meth:`AsyncStore.aload`."""
        return await self._arun("load", self._load(key))

    async def acreate(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`AsyncStore.acreate`."""
        return await self._arun("create", self._create(key, commit))

    async def acommit(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`AsyncStore.acommit`."""
        return await self._arun("commit", self._commit(key, commit))

    async def arotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """See :meth:`AsyncStore.arotate` and :meth:`rotate`."""
        return await self._arun("rotate", self._rotate(old_key, new_key, commit, grace))

    async def adelete(self, key: str) -> bool:
        """See :meth:`AsyncStore.adelete`."""
        return await self._arun("delete", self._delete(key))

    async def alist_user(self, user: str) -> list[StoredSession]:
        """See :meth:`AsyncStore.alist_user`."""
        return await self._arun("list_user", self._list_user(user))

    async def apurge_expired(self, limit: int = 1000) -> int:
        """Return 0: Redis expires keys itself."""
        return 0

    async def aping(self) -> None:
        """See :meth:`AsyncStore.aping`."""
        await self._arun("ping", self._ping())

    async def aclose(self) -> None:
        """Close both clients' connections."""
        client, self._aclient = self._aclient, None
        self._abatcher = None
        self._ainitialized = False
        if client is not None:
            await client.aclose()
        finder, self._afinder = self._afinder, None
        if finder is not None:
            await finder.aclose()
        self.close()


__all__ = ["RedisStore"]
