"""``postgresql://`` and ``postgres://``: sessions in PostgreSQL, with psycopg 3.

One row per session (every statement is in :mod:`._postgres_sql`): data as a
jsonb object of encoded JSON text per key, metadata as a jsonb object of the
one-letter fields, the user in an indexed column, the expiry in Unix seconds of
the application's clock. A rotated-away key is a tombstone row whose ``moved_to``
names the new key; it lives ``grace`` seconds and never loads. The schema comes
from versioned migrations, applied on first use in one transaction under
``pg_advisory_xact_lock`` (the version is the row of ``serversession_schema``),
so processes starting together neither race nor apply a migration twice.

Costs: a load, create, delete, list or purge is one statement; a commit or a
rotation is one transaction (``SELECT ... FOR UPDATE``, the merge in Python with
:func:`~serversession.core.records.apply_commit`, the writes), so it answers
MISSING, MOVED and CONFLICT exactly as the SQLite and memory stores do.

A write enforcing the per-user cap (``Commit.user_cap``; a create is then a
transaction too) first takes a transaction-scoped advisory lock on the user
(``pg_advisory_xact_lock`` on a hash of table and user: writes binding one user
take turns, others never wait), then ``SELECT ... FOR UPDATE`` of the user's
live rows, and ends the least recently used in the same transaction: an *ended
marker* is a tombstone whose ``moved_to`` is empty, its meta ``{"r": reason}``,
its expiry unchanged. Three statements more than without a cap, plus one UPDATE
when it ends any. Each
checkout first sends an empty query: a connection broken by a server restart is
dropped and the next one tried at once (psycopg_pool's own ``check`` sleeps a
second or more between tries, enough to fail requests after a restart). Nothing
is retried once sent: a retried commit could apply a compare-and-set twice.
Expired rows go through ``serversession gc`` and, 50 at a time, every 64th
create (``SKIP LOCKED``: a request never waits on that cleanup).

Every call has one deadline, ``timeout`` seconds from its start, that holds even
when the server stops answering (a frozen process, a hung VM: the kernel still
acknowledges, so TCP keepalives never fire and ``statement_timeout`` never runs).
It bounds the wait for a pooled connection and, through the connection classes
below, every wait for a reply: psycopg hands each wait to ``Connection.wait()``,
which takes a timeout, so the override passes what is left of the deadline. No
thread or task per call, one clock read per wait. Past it the connection is
closed (the server rolls back) and the pool replaces it.

Both faces live on this class, each with its own psycopg_pool pool (the async face
uses ``AsyncConnectionPool``: no threads). Every operation is written once as a
*plan*, a generator yielding typed statements (:mod:`._postgres_steps`), which
``_run`` and ``_arun`` carry out; the driver's errors become
:class:`StoreError` / :class:`StoreUnavailableError` in one place (``_ERRORS``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import nullcontext
from typing import Any, TypeVar
from urllib.parse import unquote

import psycopg
from psycopg import pq
from psycopg.abc import PQGen
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from ..core.codec import check_data, decode_meta
from ..core.records import (
    MISSING,
    REFUSED,
    TAKEN,
    Commit,
    CommitResult,
    Outcome,
    StoredSession,
    UserCap,
    apply_commit,
    checked_expiry,
    committed,
    ended_marker,
    least_recently_used,
)
from ..exceptions import ConfigurationError
from ._plans import DriverErrors, adrive, drive
from ._postgres_sql import ENDED, LOCK_CLASS, USER_LOCK_CLASS, compile_migrations, compile_queries
from ._postgres_steps import Reply, Statement
from .url import refuse_unknown_options

T = TypeVar("T")
RV = TypeVar("RV")


_Plan = Generator[Statement, Reply, T]

# Connection refused or lost, PoolTimeout, statement_timeout, shutdown; a standby or a demoted primary.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction, OSError)
_CAUGHT = (psycopg.Error, OSError, KeyError, ValueError, TypeError)
_ERRORS = DriverErrors("postgres", "PostgreSQL", unavailable=_UNAVAILABLE, caught=_CAUGHT)
_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,55}")  # room for the "_schema" suffix in 63 bytes
#: Suffixes of the version table and the indexes that go with a store's table.
_COMPANIONS = ("_schema", "_expires", "_user")
_SCAN_BATCH = 500
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: Options of the URL's query the store reads itself; every other name must be a libpq parameter.
_OWN_OPTIONS = ("timeout", "min_size", "max_size")
#: libpq parameters behind the store's bounds: malformed, each would fail every connection attempt.
_LIBPQ_INTEGERS = ("connect_timeout", "tcp_user_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                   "keepalives_count")  # fmt: skip
_INTEGER = re.compile(r"\s*-?[0-9]+\s*")  # what libpq's parse_int_param takes
_WAIT_INTERVAL = 0.1  # psycopg's own: how often a blocking wait wakes up for Ctrl-C


class NoAnswerError(psycopg.OperationalError):
    """PostgreSQL did not answer before the store call's deadline (``timeout``).

    Raised by the store's connections, then wrapped in :class:`StoreUnavailableError`
    (its ``__cause__``). The connection was closed unless nothing had been sent yet.
    """


def _overdue(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> NoAnswerError:
    """The error for a wait past the deadline; closes ``conn`` unless it is idle with nothing sent."""
    if conn.pgconn.transaction_status == pq.TransactionStatus.IDLE:
        return NoAnswerError("no time left before the call's deadline (connection kept)")
    conn.pgconn.finish()  # no round trip: the server rolls back when it sees the socket closed
    return NoAnswerError("no answer from PostgreSQL before the call's deadline (connection closed)")


class _Connection(psycopg.Connection[Any]):
    """A connection whose every wait for the server ends by ``deadline`` (monotonic seconds).

    The store sets ``deadline`` for the time it holds the connection; ``None`` (in the pool)
    waits as psycopg does.
    """

    deadline: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = _WAIT_INTERVAL, timeout: float | None = None) -> RV:
        deadline = self.deadline
        if deadline is None:
            return super().wait(gen, interval, timeout)
        left = deadline - time.monotonic()
        if left <= 0:
            raise _overdue(self)
        try:
            return super().wait(gen, interval, left if timeout is None or timeout > left else timeout)
        except psycopg.OperationalError:
            if time.monotonic() < deadline:
                raise
            raise _overdue(self) from None


class _AsyncConnection(psycopg.AsyncConnection[Any]):
    """The async twin of :class:`_Connection` (psycopg waits on the event loop with a timer)."""

    deadline: float | None = None

    async def wait(self, gen: PQGen[RV], interval: float = _WAIT_INTERVAL, timeout: float | None = None) -> RV:
        deadline = self.deadline
        if deadline is None:
            return await super().wait(gen, interval, timeout)
        left = deadline - time.monotonic()
        if left <= 0:
            raise _overdue(self)
        try:
            return await super().wait(gen, interval, left if timeout is None or timeout > left else timeout)
        except psycopg.OperationalError:
            if time.monotonic() < deadline:
                raise
            raise _overdue(self) from None


@functools.cache
def _libpq_parameters() -> frozenset[str]:
    """The connection parameters the libpq in use knows (``PQconndefaults``)."""
    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without the store's own query options, and those options (decoded).

    The rest of the query stays as written (libpq decodes it itself and reads ``+``
    literally), but each name must be a libpq parameter; one that is not is refused
    with the names that exist. A ``key=value`` string is left to libpq, which
    refuses unknown names itself (naming only the unknown one).
    """
    base, qmark, query = url.partition("?")
    if not qmark or not base.startswith(("postgresql://", "postgres://")):
        return url, {}
    own: dict[str, str] = {}
    kept, names = [], []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        name = unquote(name)
        if name in _OWN_OPTIONS:
            own[name] = unquote(value)
            continue
        kept.append(part)
        if name:  # an empty part: libpq's own message names it
            names.append(name)
    refuse_unknown_options("PostgreSQL", names, {*_libpq_parameters(), *_OWN_OPTIONS})
    return base + ("?" + "&".join(kept) if kept else ""), own


def _number(name: str, given: Any, own: Mapping[str, str], default: Any, kind: type[Any]) -> Any:
    """Option ``name`` as ``kind``: the argument, else the URL's value, else ``default``."""
    value = given if given is not None else own.get(name, default)
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        what = "a number of seconds" if kind is float else "an integer"
        raise ConfigurationError(f"PostgreSQL store option {name} must be {what}, got {value!r}") from None


def _fields(key: str, data: Any, meta: Any) -> tuple[dict[str, str], dict[str, str]]:
    """Check one row's jsonb columns; corrupt ones raise ValueError (a StoreError)."""
    if not isinstance(data, dict) or not isinstance(meta, dict):
        raise ValueError(f"corrupt session row {key!r}")
    return check_data(data), meta


def _session(key: str, data: Any, meta: Any) -> StoredSession:
    data, meta = _fields(key, data, meta)
    return StoredSession(key, data, decode_meta(meta))


class PostgresStore:
    """Session store in PostgreSQL, with both faces.

    ``url``: a libpq URL (``postgresql://user:pass@host:5432/db?sslmode=require``);
    its query takes libpq's parameters and the store's ``timeout``, ``min_size``
    and ``max_size`` (``?timeout=0.5``; an argument wins over the URL).
    ``min_size`` (1) and ``max_size`` (10) bound each pool's connections.
    ``timeout`` (2.0 s, as the Redis store's ``socket_timeout``) is the deadline
    of each call, from its start: the wait for a pooled connection and every
    reply, however many statements the call sends, even from a server that has
    stopped answering. The server cancels a statement itself after 80% of it
    (``statement_timeout``: a row-lock wait fails there and the connection stays
    usable). It also sets libpq's ``connect_timeout`` (at least 2 s, for the
    pool's background connection attempts) and ``tcp_user_timeout`` (on Linux).
    Past the deadline, and whenever the server cannot answer, operations raise
    :class:`StoreUnavailableError`; other driver failures raise
    :class:`StoreError`. ``table`` (``"serversession"``) names the table,
    ``{table}_schema`` its version table. ``clock`` (``time.time``) gives "now"
    in Unix seconds. ``connection_options`` go to ``psycopg.connect`` (say
    ``prepare_threshold=None`` behind PgBouncer). Raises
    :class:`ConfigurationError` for a bad URL (a query parameter libpq does not
    know, a malformed number), table name, size or timeout.

    Pools are made on first use (a server down at start-up is simply reached
    later); the async one is bound to the event loop of its first use, so call
    :meth:`aclose` (not just :meth:`close`) once the async face was used.
    """

    kind = "postgres"

    def __init__(
        self, url: str, *, min_size: int | None = None, max_size: int | None = None, timeout: float | None = None,
        table: str = "serversession", clock: Callable[[], float] = time.time, **connection_options: Any,
    ) -> None:  # fmt: skip
        if not _TABLE.fullmatch(table):
            raise ConfigurationError(f"table must be a plain SQL name of at most 56 characters, got {table!r}")
        if table.endswith(_COMPANIONS):  # "s_schema" would be the version table of a store named "s"
            raise ConfigurationError(f"table must not end in {', '.join(_COMPANIONS)}, got {table!r}")
        url, own = _split_url(url)
        timeout = _number("timeout", timeout, own, 2.0, float)
        min_size = _number("min_size", min_size, own, 1, int)
        max_size = _number("max_size", max_size, own, 10, int)
        if not (0 <= min_size <= max_size and max_size >= 1) or not 0 < timeout < math.inf:
            raise ConfigurationError("PostgresStore needs 0 <= min_size <= max_size, max_size >= 1 and "
                                     f"0 < timeout < inf, got {min_size}, {max_size}, {timeout}")  # fmt: skip
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigurationError(f"bad PostgreSQL store URL: {exc}") from exc
        for name in _LIBPQ_INTEGERS:
            if name in params and not _INTEGER.fullmatch(str(params[name])):
                raise ConfigurationError(f"PostgreSQL store URL option {name} must be an integer, got {params[name]!r}")
        # Our bounds come first, so the URL's own connect_timeout or -c options win. The server
        # gives up on a statement first (a row-lock wait), keeping the connection; the call's
        # deadline (_Connection) is for a server that cannot answer at all.
        options = f"-c statement_timeout={math.ceil(timeout * 800)} {params.get('options') or ''}".strip()
        defaults: dict[str, Any] = {
            "connect_timeout": max(2, math.ceil(timeout)), "application_name": "serversession",
            "tcp_user_timeout": math.ceil(timeout * 1000),  # Linux: a vanished peer fails sends in time
            # ...and keepalives find a peer that vanished, while we wait or in the pool.
            "keepalives": 1, "keepalives_idle": max(1, math.ceil(timeout)), "keepalives_interval": 1,
            "keepalives_count": 3,
        }  # fmt: skip
        self._conninfo = make_conninfo(url, **{**defaults, **params, "options": options})
        self._kwargs = {**connection_options, "autocommit": True}
        # A reconnection attempt gives up after ``timeout`` and the next request starts a new one at
        # once, so the store is back as soon as the server is (psycopg_pool backs off up to minutes).
        self._pool_options: dict[str, Any] = {
            "min_size": min_size, "max_size": max_size, "timeout": timeout, "reconnect_timeout": timeout,
            "name": f"serversession-{table}",
        }  # fmt: skip
        self.table = table
        self._sql = compile_queries(table)
        self._migrations = compile_migrations(table)
        self._clock = clock
        self._timeout = timeout
        self._creates = 0
        self._lock = threading.Lock()
        self._pool: ConnectionPool[_Connection] | None = None
        self._apool: AsyncConnectionPool[_AsyncConnection] | None = None
        # The event loop the async pool runs in: its workers die with that loop.
        self._apool_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._migrated = False

    # -- pools ---------------------------------------------------------------------------
    def _sync_pool(self) -> ConnectionPool[_Connection]:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(self._conninfo, connection_class=_Connection, kwargs=self._kwargs,
                                            open=False, **self._pool_options)  # fmt: skip
                self._pool.open()
            return self._pool

    async def _async_pool(self) -> AsyncConnectionPool[_AsyncConnection]:
        loop = asyncio.get_running_loop()
        if self._apool is not None and (self._apool_loop is None or self._apool_loop() is not loop):
            # Used from another event loop (a new asyncio.run, a test's own loop): the old
            # pool could never reconnect there, so this loop gets a pool of its own.
            self._apool = None
        if self._apool is None:  # no await before the assignment: one pool per store and loop
            self._apool = AsyncConnectionPool(self._conninfo, connection_class=_AsyncConnection, kwargs=self._kwargs,
                                              open=False, **self._pool_options)  # fmt: skip
            self._apool_loop = weakref.ref(loop)
        if self._apool.closed:  # opened here, in the running event loop it is bound to
            await self._apool.open()
        return self._apool

    # -- plans: every operation once, for both faces ------------------------------------------
    def _migrate(self) -> _Plan[None]:
        """Apply the missing migrations (run in one transaction)."""
        yield Statement(self._sql.lock, {"lock_class": LOCK_CLASS, "table_name": self.table})
        yield Statement(self._sql.create_schema, {})
        rows = (yield Statement(self._sql.get_version, {})).rows
        found = int(rows[0][0]) if rows else 0
        for migration in self._migrations[found:]:
            yield Statement(migration, {})
        if found < len(self._migrations):
            yield Statement(self._sql.set_version, {"version": len(self._migrations)})

    def _load(self, key: str) -> _Plan[StoredSession | None]:
        rows = (yield Statement(self._sql.load, {"key": key, "now": self._clock()})).rows
        if not rows:
            return None
        data, meta, moved_to = rows[0]
        if moved_to == ENDED:
            return ended_marker(key, str(meta.get("r", "")) if isinstance(meta, dict) else "")
        return _session(key, data, meta)

    @staticmethod
    def _capped(commit: Commit) -> bool:
        """Whether this write enforces the per-user cap (and so must run in a transaction)."""
        return commit.user_cap is not None and bool(commit.index_user)

    def _lock_user(self, user: str) -> _Plan[None]:
        """Take the user's advisory lock, held until the transaction ends."""
        yield Statement(self._sql.lock_user, {"lock_class": USER_LOCK_CLASS, "lock_name": f"{self.table}:{user}"})

    def _make_room(self, user: str, cap: UserCap, now: float, *keep: str) -> _Plan[list[str] | None]:
        """Under the user's lock: end the least recently used other sessions ``cap`` needs
        gone (their keys), or None to refuse."""
        rows = (yield Statement(self._sql.user_rows, {"user": user, "now": now})).rows
        others = [(decode_meta(_fields(key, {}, meta)[1]).last_seen_at, key) for key, meta in rows if key not in keep]
        chosen = least_recently_used(others, cap)
        if chosen:
            yield Statement(self._sql.end, {"keys": chosen, "meta": Jsonb({"r": cap.reason}, dumps=_dumps)})
        return chosen

    def _create(self, key: str, commit: Commit) -> _Plan[CommitResult]:
        now = self._clock()
        user, cap = commit.index_user, commit.user_cap
        if cap is not None and user:
            yield from self._lock_user(user)
        self._creates += 1
        if self._creates % 64 == 0:
            yield Statement(self._sql.purge, {"now": now, "limit": 50})
        row = self._row(key, commit.set_data, commit.meta, commit.expires_at or now, now)
        reply = yield Statement(self._sql.insert, row)
        if reply.rowcount != 1:
            return TAKEN
        evicted: list[str] | None = []
        if cap is not None and user:
            evicted = yield from self._make_room(user, cap, now, key)
            if evicted is None:
                yield Statement(self._sql.delete_row, {"key": key})  # refused: as if never inserted
                return REFUSED
        return committed(evicted or ())

    @staticmethod
    def _row(key: str, data: Mapping[str, str], meta: Mapping[str, str], expires_at: float | None,
             now: float) -> dict[str, Any]:  # fmt: skip
        if expires_at is not None:
            checked_expiry(expires_at)  # PostgreSQL sorts NaN after every time
        return {"key": key, "data": Jsonb(dict(data), dumps=_dumps), "meta": Jsonb(dict(meta), dumps=_dumps),
                "user": meta.get("u") or None, "expires_at": expires_at, "now": now}  # fmt: skip

    def _locked(self, key: str, now: float) -> _Plan[tuple[dict[str, str], dict[str, str]] | CommitResult]:
        """Lock the live row under ``key``: its (data, meta), or MISSING / MOVED."""
        rows = (yield Statement(self._sql.lock_row, {"key": key, "now": now})).rows
        if not rows or rows[0][2] == ENDED:
            return MISSING
        data, meta, moved_to = rows[0]
        if moved_to is not None:
            return CommitResult(Outcome.MOVED, moved_to=moved_to)
        return _fields(key, data, meta)

    def _commit(self, key: str, commit: Commit) -> _Plan[CommitResult]:
        now = self._clock()
        user, cap = commit.index_user, commit.user_cap
        if cap is not None and user:
            yield from self._lock_user(user)  # before the row lock, as every capped write: no deadlock
        found = yield from self._locked(key, now)
        if isinstance(found, CommitResult):
            return found
        data, meta = found
        conflict = apply_commit(data, meta, commit)
        if conflict is not None:
            return conflict
        evicted: list[str] | None = []
        if cap is not None and user:
            evicted = yield from self._make_room(user, cap, now, key)
            if evicted is None:
                return REFUSED
        yield Statement(self._sql.update, self._row(key, data, meta, commit.expires_at, now))
        return committed(evicted or ())

    def _rotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> _Plan[CommitResult]:
        now = self._clock()
        user, cap = commit.index_user, commit.user_cap
        if cap is not None and user:
            yield from self._lock_user(user)
        found = yield from self._locked(old_key, now)
        if isinstance(found, CommitResult):
            return found
        data, meta = found
        apply_commit(data, meta, Commit(commit.set_data, commit.unset_data, commit.meta))
        evicted: list[str] | None = []
        if cap is not None and user:
            evicted = yield from self._make_room(user, cap, now, old_key, new_key)
            if evicted is None:
                return REFUSED
        reply = yield Statement(self._sql.insert, self._row(new_key, data, meta, commit.expires_at or now, now))
        if reply.rowcount != 1:  # raising rolls the transaction back: the old row stays as it was
            raise ValueError(f"rotation target {new_key!r} is taken")
        yield Statement(self._sql.tombstone, {"key": old_key, "moved_to": new_key, "expires_at": now + grace})
        return committed(evicted or ())

    def _delete(self, key: str) -> _Plan[bool]:
        return (yield Statement(self._sql.delete, {"key": key, "now": self._clock()})).rowcount > 0

    def _list_user(self, user: str) -> _Plan[list[StoredSession]]:
        rows = (yield Statement(self._sql.list_user, {"user": user, "now": self._clock()})).rows
        return [_session(*row) for row in rows]

    def _scan_batch(self, after: str) -> _Plan[list[StoredSession]]:
        params = {"after": after, "now": self._clock(), "limit": _SCAN_BATCH}
        return [_session(*row) for row in (yield Statement(self._sql.scan, params)).rows]

    def _purge(self, limit: int) -> _Plan[int]:
        return (yield Statement(self._sql.purge, {"now": self._clock(), "limit": limit})).rowcount

    def _ping(self) -> _Plan[None]:
        yield Statement(self._sql.ping, {})

    # -- carrying plans out ------------------------------------------------------------------
    @staticmethod
    def _execute(conn: psycopg.Connection[Any], plan: _Plan[T], txn: bool) -> T:
        # The plan ends (StopIteration) inside the transaction, which then commits.
        with conn.transaction() if txn else nullcontext(), conn.cursor() as cur:
            return drive(plan, lambda statement: statement.call(cur))

    @staticmethod
    async def _aexecute(conn: psycopg.AsyncConnection[Any], plan: _Plan[T], txn: bool) -> T:
        async with conn.transaction() if txn else nullcontext(), conn.cursor() as cur:
            return await adrive(plan, lambda statement: statement.acall(cur))

    def _run(self, operation: str, plan: _Plan[T], txn: bool = False) -> T:
        with _ERRORS.mapped(operation):
            deadline = time.monotonic() + self._timeout
            pool = self._sync_pool()
            for _ in range(self._pool_options["max_size"] + 1):  # the pool drops a dead one on return
                with pool.connection(timeout=max(deadline - time.monotonic(), 0.0)) as conn:
                    conn.deadline = deadline  # every wait for the server below ends by it (_Connection)
                    try:
                        try:
                            conn.execute(b"")  # did a server restart break this connection?
                        except NoAnswerError:
                            raise  # a stalled server, not a broken connection: the next one would wait again
                        except psycopg.OperationalError:
                            continue
                        if not self._migrated:
                            self._execute(conn, self._migrate(), txn=True)
                            self._migrated = True
                        return self._execute(conn, plan, txn)
                    finally:
                        conn.deadline = None  # what the pool does with it later (check()) is not this call
            raise psycopg.OperationalError("every pooled connection was broken")

    async def _arun(self, operation: str, plan: _Plan[T], txn: bool = False) -> T:
        with _ERRORS.mapped(operation):
            deadline = time.monotonic() + self._timeout
            pool = await self._async_pool()
            for _ in range(self._pool_options["max_size"] + 1):
                async with pool.connection(timeout=max(deadline - time.monotonic(), 0.0)) as conn:
                    conn.deadline = deadline
                    try:
                        try:
                            await conn.execute(b"")
                        except NoAnswerError:
                            raise
                        except psycopg.OperationalError:
                            continue
                        if not self._migrated:
                            await self._aexecute(conn, self._migrate(), txn=True)
                            self._migrated = True
                        return await self._aexecute(conn, plan, txn)
                    finally:
                        conn.deadline = None
            raise psycopg.OperationalError("every pooled connection was broken")

    # -- sync face ---------------------------------------------------------------------------
    def load(self, key: str) -> StoredSession | None:
        """See :meth:`Store.load`: one SELECT."""
        return self._run("load", self._load(key))

    def create(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`Store.create`: one INSERT (an expired row under ``key`` is replaced);
        a transaction with the per-user cap."""
        return self._run("create", self._create(key, commit), txn=self._capped(commit))

    def commit(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`Store.commit`: one transaction holding the row lock."""
        return self._run("commit", self._commit(key, commit), txn=True)

    def rotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """See :meth:`Store.rotate`: the new row and the tombstone in one transaction."""
        return self._run("rotate", self._rotate(old_key, new_key, commit, grace), txn=True)

    def delete(self, key: str) -> bool:
        """See :meth:`Store.delete`; a tombstone is left alone and answers False."""
        return self._run("delete", self._delete(key))

    def list_user(self, user: str) -> list[StoredSession]:
        """See :meth:`Store.list_user`: one SELECT on the user index."""
        return self._run("list_user", self._list_user(user))

    def scan(self) -> Iterator[StoredSession]:
        """See :meth:`Store.scan`: batches of 500 in key order, no connection held in between."""
        after = ""
        while True:
            batch = self._run("scan", self._scan_batch(after))
            yield from batch
            if len(batch) < _SCAN_BATCH:
                return
            after = batch[-1].key

    def purge_expired(self, limit: int = 1000) -> int:
        """See :meth:`Store.purge_expired`: one DELETE of up to ``limit`` expired rows."""
        return self._run("purge", self._purge(limit))

    def ping(self) -> None:
        """See :meth:`Store.ping`: ``SELECT 1`` (creating the schema on first use)."""
        self._run("ping", self._ping())

    def close(self) -> None:
        """Close the sync pool (see :meth:`aclose` for the async one); a later call reopens it."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=self._timeout)

    # -- async face ----------------------------------------------------------------------------
    async def aload(self, key: str) -> StoredSession | None:
        """See :meth:`AsyncStore.aload`."""
        return await self._arun("load", self._load(key))

    async def acreate(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`AsyncStore.acreate`."""
        return await self._arun("create", self._create(key, commit), txn=self._capped(commit))

    async def acommit(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`AsyncStore.acommit`."""
        return await self._arun("commit", self._commit(key, commit), txn=True)

    async def arotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """See :meth:`AsyncStore.arotate`."""
        return await self._arun("rotate", self._rotate(old_key, new_key, commit, grace), txn=True)

    async def adelete(self, key: str) -> bool:
        """See :meth:`AsyncStore.adelete`."""
        return await self._arun("delete", self._delete(key))

    async def alist_user(self, user: str) -> list[StoredSession]:
        """See :meth:`AsyncStore.alist_user`."""
        return await self._arun("list_user", self._list_user(user))

    async def apurge_expired(self, limit: int = 1000) -> int:
        """See :meth:`AsyncStore.apurge_expired`."""
        return await self._arun("purge", self._purge(limit))

    async def aping(self) -> None:
        """See :meth:`AsyncStore.aping`."""
        await self._arun("ping", self._ping())

    async def aclose(self) -> None:
        """Close both pools."""
        pool, self._apool = self._apool, None
        if pool is not None:
            await pool.close(timeout=self._timeout)
        self.close()


__all__ = ["NoAnswerError", "PostgresStore"]
