"""PostgreSQL-specific behaviour: row layout, migrations, purging, timeouts and outages.

The contract itself is checked by ``test_conformance.py``; this file checks what
only PostgreSQL has, against the run's real server, reading the rows
back with plain SQL. Each test gets its own table, so tests never see each
other's rows, and a fake clock, so expiry needs no sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from servers import PostgresServer
from serversession.core.codec import SessionMeta, encode_meta, encode_meta_fields
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit, CommitResult, Outcome, UserCap
from serversession.exceptions import ConfigurationError, CorruptRecordError, StoreError, StoreUnavailableError
from serversession.stores import _postgres_sql, open_store
from serversession.stores import postgres as postgres_store
from serversession.stores._postgres_steps import Statement
from serversession.stores.postgres import NoAnswerError, PostgresStore

N = 30  # concurrent compare-and-set increments


class FakeClock:
    """An injectable ``time.time`` that moves only when told."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex}"


@pytest.fixture
def store(postgres_server: PostgresServer, clock: FakeClock, table: str) -> Iterator[PostgresStore]:
    built = PostgresStore(postgres_server.url, table=table, clock=clock, timeout=2.0)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
async def astore(store: PostgresStore, anyio_backend: str) -> AsyncIterator[PostgresStore]:
    try:
        yield store
    finally:
        await store.aclose()


def query(server: PostgresServer, text: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of our own; its rows, if any."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        cur = conn.execute(text, params or None)
        return cur.fetchall() if cur.description else []


def new_key() -> str:
    return storage_key(new_session_id())


def fresh(clock: FakeClock, data: dict[str, str] | None = None, user: str | None = None, ttl: float = 60.0) -> Commit:
    meta = encode_meta(SessionMeta(created_at=clock.now, last_seen_at=clock.now, user=user, csrf_secret="c"))
    return Commit(set_data=data or {}, meta=meta, expires_at=clock.now + ttl, index_user=user,
                  absolute_at=clock.now + 2 * ttl)  # fmt: skip


def row(server: PostgresServer, table: str, key: str) -> tuple[Any, ...] | None:
    rows = query(server, f"SELECT data, meta, user_name, expires_at, moved_to FROM {table} WHERE key = %s", key)
    return rows[0] if rows else None


# -- layout and the basic operations ---------------------------------------------------
def test_round_trip_and_row_layout(store: PostgresStore, postgres_server: PostgresServer, clock: FakeClock,
                                   table: str) -> None:  # fmt: skip
    key, commit = new_key(), fresh(clock, {"cart": '[1,{"sku":"é"}]', "n": "3"}, user="alice")
    assert store.create(key, commit)
    assert store.create(key, fresh(clock)).outcome is Outcome.TAKEN
    loaded = store.load(key)
    assert loaded is not None and dict(loaded.data) == {"cart": '[1,{"sku":"é"}]', "n": "3"}
    assert loaded.meta.user == "alice"
    data, meta, user, expires_at, moved_to = row(postgres_server, table, key) or ()
    assert data == {"cart": '[1,{"sku":"é"}]', "n": "3"}  # jsonb object of encoded text, as in every store
    assert meta == dict(commit.meta) and user == "alice" and moved_to is None
    assert expires_at == commit.expires_at


@pytest.mark.anyio
async def test_async_face_uses_its_own_pool(astore: PostgresStore, clock: FakeClock) -> None:
    key = new_key()
    assert await astore.acreate(key, fresh(clock, {"a": "1"}))
    assert (await astore.acommit(key, Commit(set_data={"b": "2"}))).outcome is Outcome.OK
    loaded = await astore.aload(key)
    assert loaded is not None and dict(loaded.data) == {"a": "1", "b": "2"}
    await astore.aping()
    assert astore._pool is None  # no sync pool, hence no thread, behind the async face


def test_delta_merge_and_cas_conflict(store: PostgresStore, postgres_server: PostgresServer, clock: FakeClock,
                                      table: str) -> None:  # fmt: skip
    key = new_key()
    store.create(key, fresh(clock, {"a": "1", "b": "2"}, user="alice"))
    seen = encode_meta_fields(last_seen_at=clock.now + 5, user="bob")
    merge = Commit(set_data={"c": "3"}, unset_data=frozenset({"b"}), meta=seen, expires_at=clock.now + 90)
    assert store.commit(key, merge).outcome is Outcome.OK
    data, meta, user, expires_at, _ = row(postgres_server, table, key) or ()
    assert data == {"a": "1", "c": "3"} and meta["u"] == "bob" and meta["x"] == "c"
    assert (user, expires_at) == ("bob", clock.now + 90)
    stale = store.commit(key, Commit(set_data={"a": "9"}, expect={"a": "0", "z": None}))
    assert stale.outcome is Outcome.CONFLICT and dict(stale.current or {}) == {"a": "1", "z": None}
    assert (row(postgres_server, table, key) or ())[0] == {"a": "1", "c": "3"}  # a conflict writes nothing
    assert store.commit(key, Commit(expires_at=None)).outcome is Outcome.OK
    assert (row(postgres_server, table, key) or ())[3] == clock.now + 90  # None keeps the expiry


def _increment(result: CommitResult, seen: str) -> str | None:
    """None when done, else the fresher value to retry with."""
    if result.outcome is Outcome.OK:
        return None
    assert result.outcome is Outcome.CONFLICT and result.current is not None
    return result.current["n"]


def _bump(seen: str) -> Commit:
    return Commit(set_data={"n": str(int(seen) + 1)}, expect={"n": seen})


def test_concurrent_cas_increments_threads(store: PostgresStore, clock: FakeClock) -> None:
    key = new_key()
    store.create(key, fresh(clock, {"n": "0"}))

    def increment(_: int) -> None:
        seen: str | None = "0"
        while seen is not None:
            seen = _increment(store.commit(key, _bump(seen)), seen)

    with ThreadPoolExecutor(max_workers=N) as pool:
        list(pool.map(increment, range(N)))
    loaded = store.load(key)
    assert loaded is not None and loaded.data["n"] == str(N)


@pytest.mark.anyio
async def test_concurrent_cas_increments_gather(astore: PostgresStore, clock: FakeClock) -> None:
    key = new_key()
    await astore.acreate(key, fresh(clock, {"n": "0"}))

    async def increment() -> None:
        seen: str | None = "0"
        while seen is not None:
            seen = _increment(await astore.acommit(key, _bump(seen)), seen)

    await asyncio.gather(*(increment() for _ in range(N)))
    loaded = await astore.aload(key)
    assert loaded is not None and loaded.data["n"] == str(N)


def test_rotate_leaves_a_tombstone(store: PostgresStore, postgres_server: PostgresServer, clock: FakeClock,
                                   table: str) -> None:  # fmt: skip
    old, new = new_key(), new_key()
    store.create(old, fresh(clock, {"a": "1"}, user="alice"))
    commit = Commit(set_data={"b": "2"}, meta=encode_meta_fields(csrf_secret="new"), expires_at=clock.now + 60)
    assert store.rotate(old, new, commit, grace=5.0).outcome is Outcome.OK
    assert row(postgres_server, table, old) == ({}, {}, None, clock.now + 5.0, new)
    data, meta, user, *_ = row(postgres_server, table, new) or ()
    assert (data, meta["x"], meta["u"], user) == ({"a": "1", "b": "2"}, "new", "alice", "alice")
    assert store.load(old) is None
    moved = store.commit(old, Commit(set_data={"c": "3"}))
    assert (moved.outcome, moved.moved_to) == (Outcome.MOVED, new)
    assert store.delete(old) is False  # in-flight requests must still find the marker
    assert [s.key for s in store.list_user("alice")] == [new]
    clock.advance(6)
    assert store.commit(old, Commit(set_data={"c": "3"})).outcome is Outcome.MISSING
    assert store.create(old, fresh(clock))  # an expired tombstone is replaced


def test_rotate_onto_a_taken_key_changes_nothing(store: PostgresStore, postgres_server: PostgresServer,
                                                 clock: FakeClock, table: str) -> None:  # fmt: skip
    old, taken = new_key(), new_key()
    store.create(old, fresh(clock, {"a": "1"}))
    store.create(taken, fresh(clock, {"t": "1"}))
    before = row(postgres_server, table, old)
    with pytest.raises(StoreError) as info:
        store.rotate(old, taken, Commit(expires_at=clock.now + 60), grace=5.0)
    assert not isinstance(info.value, StoreUnavailableError) and info.value.operation == "rotate"
    assert row(postgres_server, table, old) == before  # the transaction was rolled back


def test_no_resurrection_after_delete(store: PostgresStore, postgres_server: PostgresServer, clock: FakeClock,
                                      table: str) -> None:  # fmt: skip
    key = new_key()
    store.create(key, fresh(clock, {"a": "1"}))
    assert store.delete(key) is True
    full = Commit(set_data={"a": "2"}, meta=encode_meta(SessionMeta(clock.now, clock.now)), expires_at=clock.now + 60)
    assert store.commit(key, full).outcome is Outcome.MISSING
    assert store.rotate(key, new_key(), full, 5.0).outcome is Outcome.MISSING
    assert row(postgres_server, table, key) is None and store.load(key) is None


def test_list_user_skips_expired_and_tombstones(store: PostgresStore, clock: FakeClock) -> None:
    a1, a2, gone, moved, b1 = (new_key() for _ in range(5))
    store.create(a1, fresh(clock, user="alice"))
    store.create(a2, fresh(clock, user="alice", ttl=600))
    store.create(gone, fresh(clock, user="alice", ttl=10))
    store.create(moved, fresh(clock, user="alice", ttl=600))
    store.create(b1, fresh(clock, user="bob"))
    target = new_key()
    store.rotate(moved, target, Commit(meta=encode_meta_fields(user="carol"), expires_at=clock.now + 600), 5.0)
    assert sorted(s.key for s in store.list_user("alice")) == sorted([a1, a2, gone])
    clock.advance(30)
    assert sorted(s.key for s in store.list_user("alice")) == sorted([a1, a2])
    assert [s.key for s in store.list_user("carol")] == [target]
    assert store.list_user("nobody") == []


def test_scan_pages_through_every_live_row(store: PostgresStore, clock: FakeClock) -> None:
    keys = {new_key() for _ in range(1234)}
    for key in keys:
        store.create(key, fresh(clock, ttl=10 if key < "8" else 600))
    clock.advance(30)
    assert {s.key for s in store.scan()} == {k for k in keys if k >= "8"}


# -- purging --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_purge_expired_with_a_fake_clock(astore: PostgresStore, postgres_server: PostgresServer,
                                               clock: FakeClock, table: str) -> None:  # fmt: skip
    for ttl in (10, 10, 10, 10, 10, 100, 100):
        assert astore.create(new_key(), fresh(clock, ttl=ttl))
    assert astore.purge_expired() == 0
    clock.advance(50)
    assert astore.purge_expired(3) == 3
    assert await astore.apurge_expired(10) == 2
    assert astore.purge_expired() == 0
    assert query(postgres_server, f"SELECT count(*) FROM {table}") == [(2,)]


def test_every_64th_create_purges_a_batch(store: PostgresStore, postgres_server: PostgresServer, clock: FakeClock,
                                          table: str) -> None:  # fmt: skip
    for _ in range(10):
        store.create(new_key(), fresh(clock, ttl=10))
    clock.advance(30)
    for _ in range(53):
        store.create(new_key(), fresh(clock))
    assert query(postgres_server, f"SELECT count(*) FROM {table}") == [(63,)]
    store.create(new_key(), fresh(clock))  # the 64th
    assert query(postgres_server, f"SELECT count(*) FROM {table}") == [(54,)]


def test_create_replaces_an_expired_row(store: PostgresStore, clock: FakeClock) -> None:
    key = new_key()
    store.create(key, fresh(clock, {"old": "1"}, ttl=10))
    assert store.create(key, fresh(clock, {"new": "1"})).outcome is Outcome.TAKEN
    clock.advance(30)
    assert store.load(key) is None
    assert store.create(key, fresh(clock, {"new": "1"}))
    loaded = store.load(key)
    assert loaded is not None and dict(loaded.data) == {"new": "1"}


# -- migrations ----------------------------------------------------------------------------
def test_migrations_are_idempotent_and_race_free(postgres_server: PostgresServer, table: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    stores = [PostgresStore(postgres_server.url, table=table) for _ in range(6)]
    try:
        with ThreadPoolExecutor(max_workers=len(stores)) as pool:  # every process starting at once
            list(pool.map(lambda s: s.ping(), stores))
        latest = len(_postgres_sql.MIGRATIONS)
        assert query(postgres_server, f"SELECT version FROM {table}_schema") == [(latest,)]
        # A release adding migration N+1: applied once, by whichever store starts first.
        monkeypatch.setattr(_postgres_sql, "MIGRATIONS",
                            [*_postgres_sql.MIGRATIONS, "ALTER TABLE {table} ADD COLUMN extra text"])  # fmt: skip
        upgraded = [PostgresStore(postgres_server.url, table=table) for _ in range(2)]
        stores += upgraded
        for s in upgraded:
            s.ping()  # ADD COLUMN twice would fail
        assert query(postgres_server, f"SELECT version FROM {table}_schema") == [(latest + 1,)]
        stores[0].ping()  # older code on a newer schema keeps working
    finally:
        for s in stores:
            s.close()


# -- failures -------------------------------------------------------------------------------
def test_statement_timeout_bounds_a_blocked_commit(store: PostgresStore, postgres_server: PostgresServer,
                                                   clock: FakeClock, table: str) -> None:  # fmt: skip
    key = new_key()
    store.create(key, fresh(clock, {"a": "1"}))
    quick = PostgresStore(postgres_server.url, table=table, clock=clock, timeout=0.5)
    with psycopg.connect(postgres_server.url) as blocker:
        blocker.execute(f"SELECT 1 FROM {table} WHERE key = %s FOR UPDATE", (key,))  # holds the lock
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            quick.commit(key, Commit(set_data={"a": "2"}))
        assert time.monotonic() - start < 1.5
        assert isinstance(info.value.__cause__, psycopg.errors.QueryCanceled)
        blocker.rollback()
    quick.close()
    assert store.commit(key, Commit(set_data={"a": "2"})).outcome is Outcome.OK


def test_corrupt_row_and_missing_table_are_store_errors(store: PostgresStore, postgres_server: PostgresServer,
                                                        clock: FakeClock, table: str) -> None:  # fmt: skip
    key = new_key()
    store.create(key, fresh(clock))
    query(postgres_server, f"UPDATE {table} SET meta = '{{}}' WHERE key = %s", key)
    with pytest.raises(StoreError) as info:
        store.load(key)
    assert isinstance(info.value, CorruptRecordError) and isinstance(info.value.__cause__, KeyError)
    assert info.value.store == "postgres"
    query(postgres_server, f"DROP TABLE {table}")
    with pytest.raises(StoreError) as info:
        store.load(key)
    assert type(info.value) is StoreError and isinstance(info.value.__cause__, psycopg.errors.UndefinedTable)


def test_broken_connections_are_replaced_at_once(postgres_server: PostgresServer, table: str) -> None:
    """After a server restart every pooled connection is dead; the next call must not wait on them."""
    store = PostgresStore(postgres_server.url, table=table, min_size=4, application_name="ss-broken")
    try:
        store.ping()
        count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ss-broken'"
        deadline = time.monotonic() + 5
        while query(postgres_server, count)[0][0] < 4:  # the pool fills up in the background
            assert time.monotonic() < deadline
            time.sleep(0.01)
        query(postgres_server, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                               " WHERE application_name = 'ss-broken'")  # fmt: skip
        start = time.monotonic()
        store.ping()
        assert time.monotonic() - start < 0.5  # psycopg_pool's own check would sleep 1 s, then 2 s...
    finally:
        store.close()


@pytest.mark.anyio
async def test_outage_is_bounded_and_recovers(anyio_backend: str, table: str) -> None:
    server = PostgresServer().start()
    store = PostgresStore(server.url, table=table, timeout=1.0)
    try:
        key = new_key()
        assert store.create(key, fresh(FakeClock()))
        await store.aping()
        server.stop()
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            store.load(key)
        assert time.monotonic() - start < 2.0 and info.value.operation == "load"
        assert isinstance(info.value.__cause__, psycopg.OperationalError)
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await store.aload(key)
        assert time.monotonic() - start < 2.0
        # The server comes back on the same address (empty, so another store makes the schema).
        server = PostgresServer(port=server.port).start()
        schema = PostgresStore(server.url, table=table)
        schema.ping()
        schema.close()
        deadline = time.monotonic() + 5.0
        while True:
            try:
                store.ping()
                await store.aping()
                break
            except StoreUnavailableError:
                assert time.monotonic() < deadline, "the store did not recover"
        assert store.create(new_key(), fresh(FakeClock()))
    finally:
        await store.aclose()
        server.stop()


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{"table": "bad-name"}, {"table": "x" * 57}, {"min_size": 5, "max_size": 2},
                                     {"timeout": 0}, {"timeout": float("inf")}, {"timeout": float("nan")},
                                     {"timeout": "soon"}, {"max_size": "many"}])  # fmt: skip
def test_bad_options_fail_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        PostgresStore("postgresql://localhost/db", **options)


def test_bad_url_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError):
        PostgresStore("postgresql://localhost/db?nonsense=1")
    with pytest.raises(ConfigurationError):
        PostgresStore("host=localhost nonsense=1")  # a key=value string: libpq refuses it itself


def test_an_unknown_url_option_is_named_with_the_ones_that_exist() -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresStore("postgresql://localhost/db?connect_timout=3&sslmode=require")
    message = str(info.value)
    assert "'connect_timout'" in message and "sslmode" not in message.split(";")[0]
    assert "connect_timeout" in message.split(";")[1] and "timeout" in message  # libpq's and the store's own
    with pytest.raises(ConfigurationError) as info:
        PostgresStore("postgres://localhost/db?a=1&b=2")
    assert "options 'a', 'b'" in str(info.value)


@pytest.mark.parametrize("query", ["timeout=soon", "timeout=", "timeout", "timeout=-1", "timeout=inf", "timeout=nan",
                                   "max_size=2.5", "min_size=x", "connect_timeout=abc", "keepalives_idle=1.5",
                                   "tcp_user_timeout=", "min_size=5&max_size=2"])  # fmt: skip
def test_a_malformed_url_option_value_is_refused(query: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresStore(f"postgresql://localhost/db?{query}")
    assert query.split("=")[0] in str(info.value) or "min_size" in str(info.value)


def test_the_store_reads_its_own_options_from_the_url() -> None:
    store = PostgresStore("postgresql://localhost/db?timeout=0.5&max_size=3&min_size=0"
                          "&options=-c%20search_path%3Dsessions&application_name=a+b")  # fmt: skip
    assert store._timeout == 0.5 and (store._pool_options["min_size"], store._pool_options["max_size"]) == (0, 3)
    params = conninfo_to_dict(store._conninfo)
    assert "timeout" not in params and "max_size" not in params  # not passed on to libpq
    assert params["options"] == "-c statement_timeout=400 -c search_path=sessions"  # 80% of the timeout
    assert params["application_name"] == "a+b"  # the rest of the query reaches libpq as written
    assert PostgresStore("postgresql://localhost/db?timeout=0.5", timeout=3)._timeout == 3.0  # an argument wins
    assert PostgresStore("postgresql://localhost/db")._timeout == 2.0


def test_the_deadline_spans_the_whole_call_and_closes_the_connection(postgres_server: PostgresServer,
                                                                     table: str) -> None:  # fmt: skip
    """Each statement is within statement_timeout (80% of 1 s), the call is not: the client's
    deadline ends it, whatever the server is doing, and the next call gets a working connection."""
    slow = PostgresStore(postgres_server.url, table=table, timeout=1.0, max_size=1)

    def two_sleeps() -> Any:
        yield Statement(sql.SQL("SELECT pg_sleep(0.6)"), {})
        yield Statement(sql.SQL("SELECT pg_sleep(0.6)"), {})

    try:
        slow.ping()
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            slow._run("sleep", two_sleeps())
        assert 0.9 <= time.monotonic() - start < 2.0
        assert isinstance(info.value.__cause__, NoAnswerError) and "connection closed" in str(info.value)
        assert slow._pool is not None and slow._pool.get_stats().get("returns_bad") == 1
        slow.ping()  # max_size=1: this is a new connection
    finally:
        slow.close()


@pytest.mark.anyio
async def test_the_deadline_holds_on_the_async_face(postgres_server: PostgresServer, table: str,
                                                    anyio_backend: str) -> None:  # fmt: skip
    slow = PostgresStore(postgres_server.url, table=table, timeout=1.0, max_size=1)

    def two_sleeps() -> Any:
        yield Statement(sql.SQL("SELECT pg_sleep(0.6)"), {})
        yield Statement(sql.SQL("SELECT pg_sleep(0.6)"), {})

    try:
        await slow.aping()
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            await slow._arun("sleep", two_sleeps())
        assert 0.9 <= time.monotonic() - start < 2.0
        assert isinstance(info.value.__cause__, NoAnswerError)
        await slow.aping()
    finally:
        await slow.aclose()


def test_opened_by_url(postgres_server: PostgresServer) -> None:
    for url in (postgres_server.url, postgres_server.url.replace("postgresql://", "postgres://")):
        opened = open_store(url)
        try:
            assert isinstance(opened, PostgresStore)
            opened.ping()
        finally:
            opened.close()


# -- found by review: each failed before -------------------------------------------------


_TWO_LOOPS = """
import asyncio, sys, time
import psycopg
from serversession.core.codec import SessionMeta, encode_meta
from serversession.core.records import Commit
from serversession.stores.postgres import NoAnswerError, PostgresStore
url, table, key, name = sys.argv[1:5]
store = PostgresStore(url, table=table, timeout=2.0, application_name=name)
now = time.time()
store.create(key, Commit(set_data={"a": "1"}, meta=encode_meta(SessionMeta(created_at=now, last_seen_at=now)),
                         expires_at=now + 60))
first = asyncio.new_event_loop()  # ends with its pool open, as a finished thread's loop does
assert first.run_until_complete(store.aload(key)) is not None
first.close()
with psycopg.connect(url, autocommit=True) as conn:  # the old pool's connections die
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,))
async def second():
    try:
        return await store.aload(key)
    finally:
        await store.aclose()
loaded = asyncio.run(second())
store.close()
print("ok" if loaded is not None and loaded.data == {"a": "1"} else f"wrong: {loaded!r}")
"""


def test_a_second_event_loop_gets_a_working_pool_after_connections_were_lost(
    postgres_server: PostgresServer, table: str
) -> None:
    """The async pool's workers die with the loop that opened it: a later loop
    (another asyncio.run, a thread's own loop) must get a pool of its own. In a
    subprocess: the abandoned first pool complains when collected, by design."""
    import subprocess
    import sys

    argv = [sys.executable, "-c", _TWO_LOOPS, postgres_server.url, table, new_key(), f"ss-{table[-8:]}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip().splitlines()[-1:] == ["ok"], done.stdout + done.stderr[-2000:]


def test_a_nan_expiry_is_refused(store: PostgresStore, clock: FakeClock) -> None:
    with pytest.raises(StoreError):
        store.create(new_key(), Commit(set_data={"a": "1"}, meta=fresh(clock).meta, expires_at=float("nan")))


def test_corrupt_data_values_are_a_corrupt_record(
    store: PostgresStore, postgres_server: PostgresServer, clock: FakeClock, table: str
) -> None:
    key = new_key()
    store.create(key, fresh(clock, {"a": '"x"'}))
    query(postgres_server, f'UPDATE "{table}" SET data = \'{{"a": 1}}\' WHERE key = %s', key)
    with pytest.raises(CorruptRecordError):
        store.load(key)


@pytest.mark.parametrize("suffix", ["_schema", "_expires", "_user"])
def test_a_table_named_like_another_tables_companion_is_refused(postgres_server: PostgresServer, suffix: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresStore(postgres_server.url, table=f"sessions{suffix}")


# -- the per-user cap: what a sign-in costs ------------------------------------------------


def test_round_trips_per_capped_sign_in(store: PostgresStore, clock: FakeClock,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Round trips, counted where each reply is waited for (``_Connection.wait``): the cap adds BEGIN and
    COMMIT around the create, the user's advisory lock, the SELECT ... FOR UPDATE of their
    rows and, when it ends sessions, one UPDATE."""
    for _ in range(3):
        assert store.create(new_key(), fresh(clock, user="alice"))
    me, waits = threading.get_ident(), []
    wait = postgres_store._Connection.wait

    def counted(conn: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
        # Not the pool's background work, nor its commit of a connection it gets back: with
        # autocommit and no transaction open, that sends nothing.
        if threading.get_ident() == me and "_commit_gen" not in getattr(gen, "__qualname__", ""):
            waits.append(1)
        return wait(conn, gen, *args, **kwargs)

    monkeypatch.setattr(postgres_store._Connection, "wait", counted)
    cap = UserCap(3, reason="elsewhere")
    assert store.create(new_key(), fresh(clock, user="alice"))
    assert len(waits) == 2  # the checkout's empty query + INSERT
    waits.clear()
    result = store.create(new_key(), dataclasses.replace(fresh(clock, user="alice"), user_cap=cap))
    assert len(result.evicted) == 2 and len(waits) == 7  # + BEGIN, lock, SELECT, UPDATE, COMMIT
    waits.clear()
    result = store.create(new_key(), dataclasses.replace(fresh(clock, user="alice"), user_cap=UserCap(9)))
    assert result.evicted == () and len(waits) == 6  # room: no UPDATE
    waits.clear()
    assert store.load(new_key()) is None and len(waits) == 2  # a load stays one statement
