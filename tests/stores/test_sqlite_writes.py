"""The SQLite store's writers queue for the write lock (``stores/_sqlite_lock.py``).

Most cases turn SQLite's own busy handler off on the store's connections
(``_busy_ms = 0``): a writer that reaches ``BEGIN IMMEDIATE`` while another holds
the lock then fails at once with "database is locked" instead of sleeping, so a
broken queue shows as a StoreError rather than as a slow test. The queue itself
keeps its bound (``busy_timeout``) of several seconds; no test asserts a duration.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path

import pytest

from serversession.core.codec import SessionMeta, encode_meta
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit, CommitResult
from serversession.exceptions import StoreUnavailableError
from serversession.stores.sqlite import SQLiteStore

THREADS = 8
WRITES = 40


def fresh() -> Commit:
    now = time.time()
    return Commit(meta=encode_meta(SessionMeta(created_at=now, last_seen_at=now)), expires_at=now + 600)


def new_key() -> str:
    return storage_key(new_session_id())


def strict(store: SQLiteStore) -> SQLiteStore:
    """No busy handler behind the queue: two of its writers meeting in SQLite is an error."""
    store._busy_ms = 0
    return store


def write_rounds(store: SQLiteStore, keys: list[str], writes: int, errors: list[BaseException]) -> None:
    """``writes`` delta commits, each adding its own data key, spread over ``keys``."""
    try:
        for n in range(writes):
            result = store.commit(keys[n % len(keys)], Commit(set_data={f"w{n}": str(n)}))
            if not result:
                raise AssertionError(f"commit {n} answered {result}")
    except BaseException as exc:  # handed to the test thread
        errors.append(exc)


def landed(store: SQLiteStore, keys: list[str], writes: int) -> bool:
    found: set[str] = set()
    for key in keys:
        stored = store.load(key)
        assert stored is not None
        found.update(stored.data)
    return found == {f"w{n}" for n in range(writes)}


def test_writers_in_threads_on_different_sessions_all_land(tmp_path: Path) -> None:
    store = strict(SQLiteStore(tmp_path / "s.db"))
    sessions = [[new_key(), new_key()] for _ in range(THREADS)]
    try:
        for keys in sessions:
            for key in keys:
                assert store.create(key, fresh())
        errors: list[BaseException] = []
        start = threading.Barrier(THREADS)

        def worker(keys: list[str]) -> None:
            start.wait(timeout=30)
            write_rounds(store, keys, WRITES, errors)

        threads = [threading.Thread(target=worker, args=(keys,)) for keys in sessions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []  # no "database is locked" reached a caller
        assert all(landed(store, keys, WRITES) for keys in sessions)
    finally:
        store.close()


WORKER = r"""
import json, sys, threading
from serversession.core.records import Commit, CommitResult
from serversession.stores.sqlite import SQLiteStore
sys.path.insert(0, sys.argv[1])
from test_sqlite_writes import write_rounds
spec = json.loads(sys.argv[2])
store = SQLiteStore(spec["path"])
store._busy_ms = 0
errors = []
print("ready", flush=True)
sys.stdin.readline()  # the test starts both processes' writers together
threads = [threading.Thread(target=write_rounds, args=(store, keys, spec["writes"], errors)) for keys in spec["keys"]]
for t in threads:
    t.start()
for t in threads:
    t.join()
store.close()
print(json.dumps([f"{type(e).__name__}: {e}" for e in errors]), flush=True)
"""


def test_writers_in_two_processes_on_different_sessions_all_land(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SQLiteStore(path)
    per_process = [[[new_key(), new_key()] for _ in range(4)] for _ in range(2)]
    try:
        for sessions in per_process:
            for keys in sessions:
                for key in keys:
                    assert store.create(key, fresh())
        store.close()
        here = str(Path(__file__).parent)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, here, json.dumps({"path": path, "keys": sessions, "writes": WRITES})],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for sessions in per_process
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            outputs = [proc.communicate(timeout=120)[0] for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert [proc.returncode for proc in procs] == [0, 0], outputs
        assert [json.loads(out.strip().splitlines()[-1]) for out in outputs] == [[], []]
        assert all(landed(store, keys, WRITES) for sessions in per_process for keys in sessions)
    finally:
        store.close()


def test_a_writer_that_cannot_get_its_turn_fails_within_busy_timeout(tmp_path: Path) -> None:
    """The thread lock and the sidecar both give up at the deadline, with a StoreError
    that says who holds the lock; the writer after them gets its turn."""
    one = SQLiteStore(tmp_path / "s.db", busy_timeout=0.2)
    two = SQLiteStore(tmp_path / "s.db", busy_timeout=0.2)  # its own sidecar descriptor: as another process
    key = new_key()
    try:
        assert one.create(key, fresh())
        held, done = threading.Event(), threading.Event()

        def hold() -> None:
            with one._writes.turn("test"):
                held.set()
                done.wait(timeout=60)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(timeout=30)
        try:
            with pytest.raises(StoreUnavailableError, match="another thread of this process"):
                one.commit(key, Commit(set_data={"a": "1"}))
            with pytest.raises(StoreUnavailableError, match="another process") as info:
                two.commit(key, Commit(set_data={"a": "2"}))
            assert info.value.store == "sqlite" and info.value.operation == "commit"
        finally:
            done.set()
            holder.join(timeout=30)
        # The helper left waiting by the writer that gave up hands the lock on or gives
        # it back: both stores write again (each waits at most its own busy_timeout).
        for _ in range(50):  # bounded: the helper gives the lock back once it gets it
            try:
                assert two.commit(key, Commit(set_data={"a": "2"}))
                assert one.commit(key, Commit(set_data={"b": "1"}))
                break
            except StoreUnavailableError:
                continue
        stored = one.load(key)
        assert stored is not None and stored.data.get("a") == "2" and stored.data.get("b") == "1"
    finally:
        one.close()
        two.close()


def test_close_lets_the_writes_in_progress_commit(tmp_path: Path) -> None:
    """close() waits for the transaction that holds the lock and resets the connections
    under the lock, so writers running while another thread closes the store (a server
    shutting down) neither fail on a closed connection nor lose a write."""
    store = strict(SQLiteStore(tmp_path / "s.db"))
    sessions = [[new_key()] for _ in range(4)]
    try:
        for keys in sessions:
            assert store.create(keys[0], fresh())
        errors: list[BaseException] = []
        threads = [threading.Thread(target=write_rounds, args=(store, keys, WRITES, errors)) for keys in sessions]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            store.close()  # the writers reopen what they need
            threads[0].join(timeout=0.01)
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        assert all(landed(store, keys, WRITES) for keys in sessions)
    finally:
        store.close()


def sidecar_descriptors(store: SQLiteStore) -> int:
    target = store.path + "-lock"
    return sum(1 for fd in Path("/proc/self/fd").iterdir() if os.path.realpath(fd) == target)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc")
def test_the_lock_file_is_closed_on_close_and_when_the_store_is_dropped(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    assert sidecar_descriptors(store) == 0  # not opened before a write: a fork must not inherit it
    assert store.create(new_key(), fresh())
    assert Path(store.path + "-lock").exists() and sidecar_descriptors(store) == 1
    store.close()
    assert sidecar_descriptors(store) == 0
    assert store.create(new_key(), fresh())  # reopened by the next write
    path = store.path
    del store
    gc.collect()
    assert sum(1 for fd in Path("/proc/self/fd").iterdir() if os.path.realpath(fd) == path + "-lock") == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_waits_for_its_parents_write_lock(tmp_path: Path) -> None:
    """A flock belongs to the open file, which a forked descriptor shares, and a thread
    lock copied while held stays held: a child that reused either would write while its
    parent holds the lock, or never. It takes its own, and waits for the parent's."""
    store = SQLiteStore(tmp_path / "s.db", busy_timeout=0.3)
    try:
        assert store.create(new_key(), fresh())  # the parent has opened its sidecar descriptor
        with store._writes.turn("test"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded process": the child writes alone
                pid = os.fork()
            if pid == 0:  # the child: report through the exit status only
                status = 1
                try:
                    store.create(new_key(), fresh())
                except StoreUnavailableError as exc:
                    status = 0 if "another process" in str(exc) else 2
                finally:
                    os._exit(status)
            deadline = time.monotonic() + 30
            while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            if done[0] == 0:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
        assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
        assert store.create(new_key(), fresh())  # the parent's lock was not released by the child
    finally:
        store.close()


# -- the async face: one writer thread per process -----------------------------------------


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("serversession-sqlite-writer")]


def test_async_writers_on_different_sessions_all_land_through_one_thread(tmp_path: Path) -> None:
    store = strict(SQLiteStore(tmp_path / "s.db"))
    keys = [new_key() for _ in range(16)]
    ran_on: set[str] = set()
    commit = store.commit

    def traced(key: str, change: Commit) -> object:
        ran_on.add(threading.current_thread().name)
        return commit(key, change)

    store.commit = traced  # type: ignore[method-assign]

    async def main() -> list[bool]:
        for key in keys:
            assert await store.acreate(key, fresh())
        changes = [store.acommit(keys[n % len(keys)], Commit(set_data={f"w{n}": str(n)})) for n in range(200)]
        return [bool(result) for result in await asyncio.gather(*changes)]

    try:
        assert all(asyncio.run(main()))
        assert landed(store, keys, 200)
        assert len(ran_on) == 1 and next(iter(ran_on)).startswith("serversession-sqlite-writer")
    finally:
        store.close()
    assert writer_threads() == []  # close() ended it


def test_close_lets_every_queued_async_write_commit_first(tmp_path: Path) -> None:
    """close() waits for the writes already handed to the writer thread: when it
    returns they are all in the file, none failed on a closed connection."""
    store = strict(SQLiteStore(tmp_path / "s.db"))
    keys = [new_key() for _ in range(8)]

    async def main() -> list[object]:
        for key in keys:
            assert await store.acreate(key, fresh())
        tasks = [asyncio.ensure_future(store.acommit(keys[n % 8], Commit(set_data={f"w{n}": str(n)})))
                 for n in range(200)]  # fmt: skip
        await asyncio.sleep(0)  # every task has handed its write over
        store.close()  # on the loop's thread, as a synchronous shutdown hook would
        assert landed(store, keys, 200)
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    try:
        results = asyncio.run(main())
        assert all(isinstance(r, CommitResult) and r for r in results), results
    finally:
        store.close()


def test_a_store_dropped_after_async_writes_ends_its_writer_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    assert asyncio.run(store.acreate(new_key(), fresh()))
    (thread,) = writer_threads()
    dropped = weakref.ref(store)
    del store
    gc.collect()
    assert dropped() is None
    thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_writes_through_a_writer_thread_of_its_own(tmp_path: Path) -> None:
    """The parent's writer thread does not exist in the child; handing it a write
    would wait forever."""
    store = SQLiteStore(tmp_path / "s.db")
    key = new_key()
    try:
        assert asyncio.run(store.acreate(new_key(), fresh()))  # the parent's writer thread runs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded process": the writer is idle
            pid = os.fork()
        if pid == 0:
            status = 1
            try:
                if asyncio.run(store.acreate(key, fresh())):
                    store.close()
                    status = 0
            finally:
                os._exit(status)
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if done[0] == 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        assert done[0] == pid and os.waitstatus_to_exitcode(done[1]) == 0
        assert store.load(key) is not None
        assert asyncio.run(store.acommit(key, Commit(set_data={"a": "1"})))  # the parent's still works
    finally:
        store.close()
