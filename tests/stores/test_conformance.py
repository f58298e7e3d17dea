"""The store contract, tested once and run unchanged against every store and both faces.

Each test is written against :class:`Face`, which hands out the store's sync
methods (wrapped as coroutines, still running synchronously) or its ``a``-prefixed
async twins, so one test body checks both faces of every store.
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from serversession import AsyncSessionManager, SessionConfig, SessionManager
from serversession.core.codec import SessionMeta, decode_meta, encode_meta, encode_meta_fields, encode_value
from serversession.core.ids import new_session_id, public_handle, storage_key
from serversession.core.lifecycle import SaveResult
from serversession.core.records import Commit, CommitResult, Outcome, UserCap
from serversession.core.session import Session
from serversession.core.transport import IncomingToken
from serversession.stores.base import AsyncStore, Store

from . import cap_worker

pytestmark = pytest.mark.anyio


class Face:
    """One face of a store: ``await face.load(key)`` is ``store.load`` or ``store.aload``."""

    def __init__(self, store: Any, is_async: bool) -> None:
        self.store = store
        self.is_async = is_async

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        if self.is_async:
            return getattr(self.store, "a" + name)  # type: ignore[no-any-return]
        method = getattr(self.store, name)

        async def call(*args: Any) -> Any:
            return method(*args)

        return call


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest, astore: Any) -> Face:
    return Face(astore, request.param == "async")


def new_key() -> str:
    return storage_key(new_session_id())


def enc(key: str, value: Any) -> str:
    return encode_value(key, value)


def session_meta(user: str | None = None, now: float | None = None) -> SessionMeta:
    now = time.time() if now is None else now
    return SessionMeta(created_at=now, last_seen_at=now, user=user, user_agent="UA/1.0", ip="192.0.2.7",
                       persistent=user is not None, csrf_secret="csrf-base")  # fmt: skip


def fresh(data: dict[str, Any] | None = None, user: str | None = None, ttl: float = 60.0) -> Commit:
    """A create commit, as the lifecycle builds one."""
    now = time.time()
    return Commit(
        set_data={k: enc(k, v) for k, v in (data or {}).items()}, meta=encode_meta(session_meta(user, now)),
        expires_at=now + ttl, index_user=user, absolute_at=now + 2 * ttl,
    )  # fmt: skip


async def created(face: Face, data: dict[str, Any] | None = None, user: str | None = None) -> str:
    key = new_key()
    assert await face.create(key, fresh(data, user))
    return key


async def stored_data(face: Face, key: str) -> dict[str, Any]:
    loaded = await face.load(key)
    assert loaded is not None
    return dict(loaded.data)


def test_implements_both_protocols(store: Any) -> None:
    assert isinstance(store, Store)
    assert isinstance(store, AsyncStore)
    assert store.kind


async def test_load_missing_is_none(face: Face) -> None:
    assert await face.load(new_key()) is None


async def test_create_then_load_round_trip(face: Face) -> None:
    key, commit = new_key(), fresh({"cart": [1, {"sku": "é"}], "n": 3}, user="alice")
    assert await face.create(key, commit)
    loaded = await face.load(key)
    assert loaded is not None
    assert loaded.key == key
    assert dict(loaded.data) == {"cart": '[1,{"sku":"é"}]', "n": "3"}
    assert loaded.meta == decode_meta(dict(commit.meta))
    assert loaded.meta.user == "alice" and loaded.meta.persistent


async def test_create_refuses_a_taken_key(face: Face) -> None:
    key = await created(face, {"a": 1})
    assert (await face.create(key, fresh({"a": 2}))).outcome is Outcome.TAKEN
    assert await stored_data(face, key) == {"a": "1"}


async def test_commit_merges_deltas(face: Face) -> None:
    key = await created(face, {"a": 1, "b": 2})
    assert (await face.commit(key, Commit(set_data={"a": enc("a", 10)}))).outcome is Outcome.OK
    later = encode_meta_fields(last_seen_at=time.time() + 5)
    result = await face.commit(key, Commit(set_data={"c": "3"}, unset_data=frozenset({"b"}), meta=later))
    assert result.outcome is Outcome.OK
    loaded = await face.load(key)
    assert loaded is not None
    assert dict(loaded.data) == {"a": "10", "c": "3"}
    assert loaded.meta.last_seen_at == float(later["s"])
    assert loaded.meta.user_agent == "UA/1.0"  # untouched meta fields stay


async def test_commit_on_missing_never_resurrects(face: Face) -> None:
    key = new_key()
    result = await face.commit(key, Commit(set_data={"a": "1"}, meta=encode_meta(session_meta()),
                                           expires_at=time.time() + 60))  # fmt: skip
    assert result.outcome is Outcome.MISSING
    assert await face.load(key) is None
    assert await face.create(key, fresh({"b": 2}))  # nothing was left under the key
    assert await stored_data(face, key) == {"b": "2"}


async def test_expect_guard_is_compare_and_set(face: Face) -> None:
    key = await created(face, {"n": 1})
    ok = await face.commit(key, Commit(set_data={"n": "2"}, expect={"n": "1"}))
    assert ok.outcome is Outcome.OK
    stale = await face.commit(key, Commit(set_data={"n": "9", "other": "1"}, expect={"n": "1", "z": None}))
    assert stale.outcome is Outcome.CONFLICT
    assert dict(stale.current or {}) == {"n": "2", "z": None}
    assert await stored_data(face, key) == {"n": "2"}  # a conflict writes nothing
    absent = await face.commit(key, Commit(set_data={"z": "1"}, expect={"z": None}))
    assert absent.outcome is Outcome.OK
    again = await face.commit(key, Commit(set_data={"z": "2"}, expect={"z": None}))
    assert again.outcome is Outcome.CONFLICT and dict(again.current or {}) == {"z": "1"}
    assert await stored_data(face, key) == {"n": "2", "z": "1"}


N = 50


async def test_concurrent_cas_increments_lose_nothing(face: Face) -> None:
    key = await created(face, {"n": 0})

    def attempt(seen: str, result: CommitResult) -> str | None:
        """None when done, else the fresher value to retry with."""
        if result.outcome is Outcome.OK:
            return None
        assert result.outcome is Outcome.CONFLICT and result.current is not None
        return result.current["n"]

    def commit_for(seen: str) -> Commit:
        return Commit(set_data={"n": str(int(seen) + 1)}, expect={"n": seen})

    if face.is_async:
        async def increment() -> None:
            seen: str | None = "0"
            while seen is not None:
                seen = attempt(seen, await face.store.acommit(key, commit_for(seen)))

        await asyncio.gather(*(increment() for _ in range(N)))
    else:
        def increment_sync(_: int) -> None:
            seen: str | None = "0"
            while seen is not None:
                seen = attempt(seen, face.store.commit(key, commit_for(seen)))

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(increment_sync, range(N)))
    assert await stored_data(face, key) == {"n": str(N)}


async def test_expiry_is_honoured(astore: Any) -> None:
    sync, async_ = Face(astore, False), Face(astore, True)
    keys = [new_key(), new_key()]
    for f, key in zip((sync, async_), keys, strict=True):
        assert await f.create(key, fresh({"a": 1}, ttl=1.0))
        assert await f.load(key) is not None
    time.sleep(1.2)  # one short sleep for both faces
    for f in (sync, async_):
        for key in keys:
            assert await f.load(key) is None
            assert (await f.commit(key, Commit(set_data={"a": "2"}))).outcome is Outcome.MISSING
    for f, key in zip((sync, async_), keys, strict=True):  # an expired record under the target gives way
        old, now = await created(f, {"b": 1}), time.time()
        assert (await f.rotate(old, key, Commit(expires_at=now + 60, absolute_at=now + 120), 5.0)).outcome is Outcome.OK
        assert (await f.load(key)).data == {"b": "1"}  # type: ignore[union-attr]


async def test_rotate_moves_the_session(face: Face) -> None:
    old = await created(face, {"a": 1, "b": 2}, user="alice")
    new, now = new_key(), time.time()
    fields = encode_meta_fields(last_seen_at=now, ip="198.51.100.1", user="alice", persistent=True,
                                csrf_secret="rotated")  # fmt: skip
    commit = Commit(set_data={"c": "3"}, unset_data=frozenset({"b"}), meta=fields, expires_at=now + 60,
                    index_user="alice", absolute_at=now + 120)  # fmt: skip
    assert (await face.rotate(old, new, commit, 5.0)).outcome is Outcome.OK
    loaded = await face.load(new)
    assert loaded is not None
    assert dict(loaded.data) == {"a": "1", "c": "3"}
    assert (loaded.meta.ip, loaded.meta.csrf_secret, loaded.meta.user_agent) == ("198.51.100.1", "rotated", "UA/1.0")
    assert await face.load(old) is None
    moved = await face.commit(old, Commit(set_data={"d": "4"}))
    assert (moved.outcome, moved.moved_to) == (Outcome.MOVED, new)
    again = await face.rotate(old, new_key(), commit, 5.0)
    assert (again.outcome, again.moved_to) == (Outcome.MOVED, new)
    assert [s.key for s in await face.list_user("alice")] == [new]
    assert (await face.rotate(new_key(), new_key(), commit, 5.0)).outcome is Outcome.MISSING


async def test_delete_once(face: Face) -> None:
    key = await created(face, {"a": 1})
    assert await face.delete(key) is True
    assert await face.delete(key) is False
    assert await face.load(key) is None
    assert (await face.commit(key, Commit(set_data={"a": "2"}))).outcome is Outcome.MISSING
    assert await face.delete(new_key()) is False


async def test_list_user_follows_the_index(face: Face) -> None:
    a1, a2 = await created(face, {"i": 1}, "alice"), await created(face, {"i": 2}, "alice")
    b1 = await created(face, {"i": 3}, "bob")
    await created(face, {"i": 4})
    assert sorted(s.key for s in await face.list_user("alice")) == sorted([a1, a2])
    assert all(s.meta.user == "alice" for s in await face.list_user("alice"))
    assert await face.delete(a1) is True
    assert [s.key for s in await face.list_user("alice")] == [a2]
    rebind = Commit(meta=encode_meta_fields(user="bob"), index_user="bob", absolute_at=time.time() + 60)
    assert (await face.commit(a2, rebind)).outcome is Outcome.OK
    assert await face.list_user("alice") == []
    assert sorted(s.key for s in await face.list_user("bob")) == sorted([a2, b1])
    assert await face.list_user("nobody") == []


async def test_scan_sees_live_sessions(face: Face) -> None:
    live = {await created(face, {"i": i}, "alice" if i else None) for i in range(3)}
    gone, rotated, target = await created(face), await created(face), new_key()
    assert await face.delete(gone) is True
    commit = Commit(expires_at=time.time() + 60)
    assert (await face.rotate(rotated, target, commit, 5.0)).outcome is Outcome.OK
    found = {s.key: s for s in face.store.scan()}  # admin only: a sync iterator on every store
    assert set(found) == live | {target}
    assert all(s.meta.csrf_secret == "csrf-base" for s in found.values())


async def test_ping_and_purge(face: Face) -> None:
    await face.ping()
    assert await face.purge_expired(10) >= 0


async def test_a_session_past_the_expiry_its_app_set_is_gone(astore: Any) -> None:
    """Session.set_expiry reaches every store through the expiry a commit sends: shorter
    than the one the session was created with, and at once when already reached."""
    config = SessionConfig(idle_timeout=60, absolute_timeout=120)
    sync, async_ = SessionManager(astore, config), AsyncSessionManager(astore, config)

    async def load(manager: Any, sid: str | None) -> Session:
        token = IncomingToken(sid, via_header=False)
        return await manager.aload(token) if manager is async_ else manager.load(token)

    async def save(manager: Any, session: Session) -> SaveResult:
        return await manager.asave(session) if manager is async_ else manager.save(session)

    async def started(manager: Any, idle: float | None = None, at: float | None = None) -> tuple[str, str]:
        s = await load(manager, None)
        s["a"] = 1
        sid = (await save(manager, s)).set_cookies[0].split(";")[0].split("=", 1)[1]
        s = await load(manager, sid)
        s.set_expiry(idle, at=at)
        await save(manager, s)
        return sid, s.key or ""

    waiting = []
    for manager in (sync, async_):
        waiting += [await started(manager, idle=1.0), await started(manager, at=time.time() + 1.0)]
        _, ended = await started(manager, idle=-1.0)
        assert astore.load(ended) is None  # ended at its save
    for _, key in waiting:
        assert astore.load(key) is not None
    time.sleep(1.2)  # one short sleep for every store and both faces
    for sid, key in waiting:
        assert astore.load(key) is None  # the store's own expiry, not the lifecycle's check
        assert (await load(sync, sid)).expired


# -- the per-user cap (Commit.user_cap) -----------------------------------------------------

REASON = "signed out because you signed in on another device"


async def seeded(face: Face, user: str, n: int) -> list[str]:
    """``n`` sessions of ``user``, least recently used first (one second apart)."""
    now, keys = time.time(), []
    for i in range(n):
        key, seen = new_key(), now - 300 + i
        commit = Commit(meta=encode_meta(session_meta(user, seen)), expires_at=seen + 600, index_user=user,
                        absolute_at=now + 3000)  # fmt: skip
        assert await face.create(key, commit)
        keys.append(key)
    return keys


def binding(user: str, cap: UserCap, **changes: Any) -> Commit:
    """A write that binds ``user`` with ``cap``, seen now, as the lifecycle sends it."""
    now = time.time()
    return Commit(meta=encode_meta(session_meta(user, now)), expires_at=now + 600, index_user=user,
                  absolute_at=now + 3000, user_cap=cap, **changes)  # fmt: skip


async def alive(face: Face, user: str) -> set[str]:
    return {s.key for s in await face.list_user(user)}


async def test_user_cap_ends_the_least_recently_used(face: Face) -> None:
    old = await seeded(face, "alice", 3)
    bobs = await created(face, {"i": 0}, "bob")
    cap = UserCap(3, reason=REASON)
    key = new_key()
    result = await face.create(key, binding("alice", cap, set_data={"i": "1"}))
    assert result.outcome is Outcome.OK and result.evicted == (old[0],)
    assert await alive(face, "alice") == {old[1], old[2], key}
    assert await alive(face, "bob") == {bobs}  # another user's sessions neither count nor go

    marker = await face.load(old[0])  # the ended marker: no session, but it says why
    assert marker is not None and marker.ended == REASON and dict(marker.data) == {}
    assert (await face.commit(old[0], Commit(set_data={"a": "1"}))).outcome is Outcome.MISSING
    assert (await face.rotate(old[0], new_key(), binding("alice", cap), 5.0)).outcome is Outcome.MISSING
    assert await face.delete(old[0]) is False
    assert (await face.load(old[0])).ended == REASON  # type: ignore[union-attr]  # it stays
    assert old[0] not in {s.key for s in face.store.scan()}

    # A rotation of one of the user's own sessions: its old key does not count.
    again = new_key()
    assert (await face.rotate(old[1], again, binding("alice", cap), 5.0)).evicted == ()
    # An anonymous session rotated into the user: the least recently used goes.
    anonymous, target = await created(face, {"cart": 1}), new_key()
    result = await face.rotate(anonymous, target, binding("alice", cap), 5.0)
    assert result.outcome is Outcome.OK and result.evicted == (old[2],)
    assert (await face.load(old[2])).ended == REASON  # type: ignore[union-attr]
    # A commit that binds the user (no rotation) counts as a sign-in too.
    oldest = min((s.meta.last_seen_at, s.key) for s in await face.list_user("alice"))[1]
    other = await created(face, {"cart": 2})
    result = await face.commit(other, binding("alice", cap))
    assert result.outcome is Outcome.OK and result.evicted == (oldest,)
    assert await alive(face, "alice") == {key, again, target, other} - {oldest}
    if target != oldest:  # sessions of one millisecond tie on last_seen_at: the key decides, maybe target
        assert await stored_data(face, target) == {"cart": "1"}


async def test_user_cap_refuses_and_writes_nothing(face: Face) -> None:
    old = await seeded(face, "alice", 2)
    cap = UserCap(2, evict=False, reason=REASON)
    key = new_key()
    assert (await face.create(key, binding("alice", cap, set_data={"i": "1"}))).outcome is Outcome.REFUSED
    assert await face.load(key) is None

    anonymous, target = await created(face, {"cart": 1}), new_key()
    assert (await face.rotate(anonymous, target, binding("alice", cap), 5.0)).outcome is Outcome.REFUSED
    assert await face.load(target) is None
    loaded = await face.load(anonymous)  # the session stays where it was, as it was
    assert loaded is not None and loaded.meta.user is None and dict(loaded.data) == {"cart": "1"}
    assert (await face.commit(anonymous, binding("alice", cap))).outcome is Outcome.REFUSED
    assert (await face.load(anonymous)).meta.user is None  # type: ignore[union-attr]
    assert await alive(face, "alice") == set(old)
    assert (await face.commit(anonymous, Commit(set_data={"cart": "2"}))).outcome is Outcome.OK  # still a session

    assert await face.delete(old[0]) is True  # room for one again
    result = await face.create(key, binding("alice", cap))
    assert result.outcome is Outcome.OK and result.evicted == ()
    assert await alive(face, "alice") == {old[1], key}


# -- the cap under concurrent sign-ins from several processes --------------------------------

WORKERS = 4


def _worker_spec(request: pytest.FixtureRequest, store: Any) -> dict[str, Any] | None:
    """How a worker process opens the test's store; None for memory (threads instead)."""
    kind = request.node.callspec.params["store"]
    if kind == "memory":
        return None
    if kind == "sqlite":
        return {"kind": "sqlite", "path": store.path}
    if kind == "postgres":
        return {"kind": "postgres", "url": request.getfixturevalue("postgres_server").url, "table": store.table}
    server = request.getfixturevalue("fresh_redis" if kind == "redis" else "fresh_cluster")
    return {"kind": "redis", "url": server.url}


class SignIns:
    """``WORKERS`` workers signing "alice" in, each with its own store object and manager:
    processes (:mod:`.cap_worker`), or threads sharing the one store for memory, which
    lives in one process. :meth:`round` starts one sign-in in each at once and returns
    their reports once all are done, so the test checks the store between rounds."""

    def __init__(self, request: pytest.FixtureRequest, store: Any, tmp_path: Path, rounds: int, limit: int,
                 on_limit: str = "evict") -> None:  # fmt: skip
        spec, self.next = _worker_spec(request, store), 0
        self.procs: list[subprocess.Popen[str]] = []
        if spec is None:
            self.barrier = threading.Barrier(WORKERS + 1, timeout=60)
            self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
            self.pool = ThreadPoolExecutor(WORKERS)
            work = (cap_worker.sign_in_rounds, store, "alice", rounds, limit, on_limit,
                    lambda r: self.barrier.wait(), self.reports.put)  # fmt: skip
            self.threads = [self.pool.submit(*work) for _ in range(WORKERS)]
            return
        self.go = tmp_path / f"go-{uuid.uuid4().hex}"
        spec.update(user="alice", rounds=rounds, limit=limit, on_limit=on_limit, go=str(self.go))
        argv = [sys.executable, cap_worker.__file__, json.dumps(spec)]
        self.procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(WORKERS)]

    def round(self) -> list[dict[str, Any]]:
        if not self.procs:
            self.barrier.wait()
            return [self.reports.get(timeout=60) for _ in range(WORKERS)]
        for proc in self.procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "a worker failed"
        Path(f"{self.go}-{self.next}").touch()
        self.next += 1
        return [json.loads(proc.stdout.readline()) for proc in self.procs]  # type: ignore[union-attr]

    def __enter__(self) -> SignIns:
        return self

    def __exit__(self, failed: type[BaseException] | None, *exc: object) -> None:
        if not self.procs:
            if failed:
                self.barrier.abort()  # the workers waiting for a round that will not come stop
            self.pool.shutdown()
            if not failed:
                for thread in self.threads:
                    thread.result()
            return
        for proc in self.procs:
            try:
                if not failed:
                    proc.wait(timeout=60)
            finally:
                proc.kill()
                proc.wait()
                proc.stdout.close()  # type: ignore[union-attr]
        assert failed or all(proc.returncode == 0 for proc in self.procs)


def handles(keys: Any) -> list[str]:
    return sorted(public_handle(k) for k in keys)


def test_parallel_sign_ins_keep_the_cap_and_end_exactly_the_least_recently_used(
    request: pytest.FixtureRequest, store: Any, tmp_path: Path
) -> None:
    limit, rounds = 10, 6
    asyncio.run(seeded(Face(store, False), "alice", limit))
    with SignIns(request, store, tmp_path, rounds, limit) as sign_ins:
        for _ in range(rounds):
            before = store.list_user("alice")
            oldest = [key for _, key in sorted((s.meta.last_seen_at, s.key) for s in before)[:WORKERS]]
            reports = sign_ins.round()
            new = {r["created"] for r in reports}
            assert None not in new and len(new) == WORKERS
            # The user is at the cap, and what went is exactly the least recently used,
            # each reported by one REVOKED event.
            assert {s.key for s in store.list_user("alice")} == ({s.key for s in before} - set(oldest)) | new
            assert sorted(h for r in reports for h in r["revoked"]) == handles(oldest)
            assert all(store.load(key).ended == REASON for key in oldest)


def test_parallel_sign_ins_beyond_the_cap_in_one_go_end_every_older_session(
    request: pytest.FixtureRequest, store: Any, tmp_path: Path
) -> None:
    limit, rounds = 2, 4
    asyncio.run(seeded(Face(store, False), "alice", limit))
    with SignIns(request, store, tmp_path, rounds, limit) as sign_ins:
        for _ in range(rounds):
            before = {s.key for s in store.list_user("alice")}
            reports = sign_ins.round()
            new = {r["created"] for r in reports}
            after = {s.key for s in store.list_user("alice")}
            assert None not in new and len(after) == limit and after <= new
            assert sorted(h for r in reports for h in r["revoked"]) == handles(before | (new - after))


def test_parallel_sign_ins_beyond_the_cap_are_refused(
    request: pytest.FixtureRequest, store: Any, tmp_path: Path
) -> None:
    limit, rounds = 5, 3
    alive = set(asyncio.run(seeded(Face(store, False), "alice", 2)))
    with SignIns(request, store, tmp_path, rounds, limit, on_limit="refuse") as sign_ins:
        for _ in range(rounds):
            reports = sign_ins.round()
            accepted = {r["created"] for r in reports} - {None}
            assert len(accepted) == min(WORKERS, limit - len(alive))  # no more, and no fewer
            alive |= accepted
            assert {s.key for s in store.list_user("alice")} == alive
            assert not any(r["revoked"] for r in reports)
            # A sign-in refused as it rotated left the anonymous session as it was.
            assert all(r["intact"] in (None, True) for r in reports)


# -- the authentication controls: the authentication time, credential changes ---------------


async def test_the_authentication_time_is_kept_carried_and_cleared(face: Face) -> None:
    now = time.time()
    key = new_key()
    meta = session_meta("alice", now).with_changes(authenticated_at=round(now - 5, 3))
    assert await face.create(key, Commit(meta=encode_meta(meta), expires_at=now + 60, index_user="alice",
                                         absolute_at=now + 120))  # fmt: skip
    assert (await face.load(key)).meta.authenticated_at == round(now - 5, 3)  # type: ignore[union-attr]
    renewed = encode_meta_fields(authenticated_at=now)
    assert (await face.commit(key, Commit(meta=renewed))).outcome is Outcome.OK
    moved = new_key()
    assert (await face.rotate(key, moved, Commit(meta=encode_meta_fields(csrf_secret="new"),
                                                 expires_at=now + 60), 5.0)).outcome is Outcome.OK  # fmt: skip
    loaded = await face.load(moved)
    assert loaded is not None and loaded.meta.authenticated_at == round(now, 3)
    assert [s.meta.authenticated_at for s in await face.list_user("alice")] == [round(now, 3)]
    signed_out = encode_meta_fields(user=None, authenticated_at=None)  # as the lifecycle clears them
    assert (await face.commit(moved, Commit(meta=signed_out))).outcome is Outcome.OK
    assert (await face.load(moved)).meta.authenticated_at is None  # type: ignore[union-attr]


def twin(request: pytest.FixtureRequest, store: Any) -> Any:
    """A second store object on the same backend as ``store``: another process's view of it
    (the same object for memory, which lives in one process)."""
    from serversession.stores.postgres import PostgresStore
    from serversession.stores.redis import RedisStore
    from serversession.stores.sqlite import SQLiteStore

    kind = request.node.callspec.params["store"]
    if kind == "memory":
        return store
    if kind == "sqlite":
        return SQLiteStore(store.path)
    if kind == "postgres":
        return PostgresStore(request.getfixturevalue("postgres_server").url, table=store.table)
    return RedisStore(request.getfixturevalue("fresh_redis" if kind == "redis" else "fresh_cluster").url)


AUTH_CONFIG = SessionConfig(idle_timeout=600, absolute_timeout=3600)


def sign_in(manager: SessionManager, user: str = "alice") -> str:
    s = manager.load(IncomingToken(None, via_header=False))
    s.user = user
    s.rotate()
    result = manager.save(s)
    assert not result.ended
    return str(result.set_cookies[0].split(";")[0].split("=", 1)[1])


def loaded(manager: SessionManager, session_id: str) -> Session:
    return manager.load(IncomingToken(session_id, via_header=False))


class Hooked:
    """``store`` with ``hook`` run once, just before the first call ``when`` matches."""

    def __init__(self, store: Any, when: Callable[[str, tuple[Any, ...]], bool], hook: Callable[[], None]) -> None:
        self.store, self.when, self.hook, self.fired = store, when, hook, False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.store, name)
        if not callable(target):
            return target

        def call(*args: Any) -> Any:
            if not self.fired and self.when(name, args):
                self.fired = True
                self.hook()
            return target(*args)

        return call


def test_a_credential_change_ends_the_users_sessions_on_another_process(
    request: pytest.FixtureRequest, store: Any
) -> None:
    other = twin(request, store)
    try:
        mine, theirs = SessionManager(store, AUTH_CONFIG), SessionManager(other, AUTH_CONFIG)
        revoked: list[str] = []
        mine.add_listener(lambda e: revoked.append(e.reason) if e.kind.value == "revoked" else None)
        phones = [sign_in(theirs) for _ in range(3)]
        bobs = sign_in(theirs, "bob")
        laptop = loaded(mine, sign_in(mine))
        laptop["note"] = "mine"
        assert mine.credential_changed(laptop, reason="password changed") == 3
        assert revoked == ["password changed"] * 3
        new_id = mine.save(laptop).set_cookies[0].split(";")[0].split("=", 1)[1]
        for phone in phones:
            assert loaded(theirs, phone).is_new
        fresh = loaded(theirs, new_id)
        assert fresh.user == "alice" and fresh["note"] == "mine"
        assert fresh.authenticated_at is not None and abs(fresh.authenticated_at.timestamp() - time.time()) < 30
        assert [i.handle for i in theirs.list_sessions("alice")] == [fresh.handle]
        assert not loaded(theirs, bobs).is_new
    finally:
        if other is not store:
            other.close()


@pytest.mark.parametrize("moment", ["before the sweep lists", "during the sweep's deletes", "after the change"])
def test_a_sign_in_checked_before_a_credential_change_never_survives(
    request: pytest.FixtureRequest, store: Any, moment: str
) -> None:
    """Another process's sign-in loaded its request (and checked the old password) before
    the change and binds the user at one of the moments the change is most exposed to."""
    other = twin(request, store)
    try:
        mine, theirs = SessionManager(store, AUTH_CONFIG), SessionManager(other, AUTH_CONFIG)
        laptop, phone = loaded(mine, sign_in(mine)), sign_in(theirs)
        pending = theirs.load(IncomingToken(None, via_header=False))
        results: list[SaveResult] = []

        def bind() -> None:
            pending.user = "alice"
            pending.rotate()
            results.append(theirs.save(pending))

        when = {
            "before the sweep lists": lambda name, args: name == "list_user" and args == ("alice",),
            "during the sweep's deletes": lambda name, args: name == "delete",
            "after the change": lambda name, args: False,
        }[moment]
        time.sleep(0.002)  # the change comes strictly after that load on any clock resolution
        mine.store = Hooked(store, when, bind)
        mine.credential_changed(laptop)
        if not results:
            bind()
        assert pending.key is not None and store.load(pending.key) is None
        assert loaded(theirs, phone).is_new
        assert [i.handle for i in mine.list_sessions("alice")] == [laptop.handle]
        later = sign_in(theirs)  # a sign-in after the change stays
        assert not loaded(mine, later).is_new
    finally:
        if other is not store:
            other.close()


def test_sign_ins_racing_a_credential_change_from_other_processes(request: pytest.FixtureRequest, store: Any) -> None:
    """``WORKERS`` threads, each its own store object and manager, sign the user in over
    and over while one credential change runs: no session whose request was loaded before
    the change survives, and every sign-in bound after the change returned does."""
    workers = 4
    others = [twin(request, store) for _ in range(workers)]
    mine = SessionManager(store, AUTH_CONFIG)
    laptop = loaded(mine, sign_in(mine))
    stop = threading.Event()
    changed_at: list[float] = []

    def worker(index: int) -> list[tuple[str | None, float, float, bool]]:
        manager = SessionManager(others[index], AUTH_CONFIG)
        seen: list[tuple[str | None, float, float, bool]] = []
        while not stop.is_set():
            s = manager.load(IncomingToken(None, via_header=False))
            time.sleep(0.001 * (index + 1))
            s.user = "alice"
            if len(seen) % 2:
                s.rotate()
            started = time.time()
            result = manager.save(s)
            seen.append((s.key, s.loaded_at, started, result.ended))
        return seen

    try:
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(worker, i) for i in range(workers)]
            time.sleep(0.3)
            clock = mine.clock
            mine.clock = lambda: changed_at.append(clock()) or changed_at[-1]
            mine.credential_changed(laptop)
            returned = time.time()
            mine.clock = clock
            time.sleep(0.3)
            stop.set()
            outcomes = [o for f in futures for o in f.result(timeout=60)]
        change = changed_at[0]
        alive = {s.key for s in store.list_user("alice")}
        before = [o for o in outcomes if o[1] < change]
        # Loaded after the change returned: it checked the new credential and must live. (A sign-in
        # loaded before the change and saved after it is voided, by design: it checked the old one.)
        after = [o for o in outcomes if o[1] > returned]
        assert before and after  # the change really ran among the sign-ins
        assert not alive & {o[0] for o in before}, "a sign-in checked before the change survived"
        assert {o[0] for o in after} <= alive and not any(o[3] for o in after)
        assert laptop.key in alive
    finally:
        for other in others:
            if other is not store:
                other.close()


async def test_acredential_changed_on_the_async_face(astore: Any) -> None:
    manager = AsyncSessionManager(astore, AUTH_CONFIG)
    sessions = []
    for _ in range(3):
        s = await manager.aload(IncomingToken(None, via_header=False))
        s.user = "alice"
        await manager.asave(s)
        sessions.append(s)
    s = sessions[0]
    s.reauthenticated()
    assert await s.acredential_changed("password changed") == 2
    result = await manager.asave(s)
    assert result.set_cookies and s.session_id is not None
    assert [i.handle for i in await manager.alist_sessions("alice")] == [s.handle]
    with pytest.raises(TypeError):
        s.credential_changed()
