"""What only the SQLite store has: its file, its connections, its transactions.

The contract itself is checked by test_conformance.py; these cases came from a
review of the store and each failed before its fix.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import threading
import time
import warnings
import weakref
from contextlib import closing
from pathlib import Path

import pytest

from serversession.core.codec import SessionMeta, encode_meta
from serversession.core.ids import new_session_id, storage_key
from serversession.core.records import Commit, UserCap
from serversession.exceptions import ConfigurationError, CorruptRecordError, StoreError, StoreUnavailableError
from serversession.stores import _sqlite_connections as sqlite_connections
from serversession.stores import open_store
from serversession.stores.sqlite import SQLiteStore


def fresh(ttl: float = 60.0) -> Commit:
    now = time.time()
    return Commit(set_data={"a": '"x"'}, meta=encode_meta(SessionMeta(created_at=now, last_seen_at=now)),
                  expires_at=now + ttl)  # fmt: skip


def new_key() -> str:
    return storage_key(new_session_id())


def test_no_connection_is_left_open_by_the_constructor(tmp_path: Path) -> None:
    """A server that forks after building the store (gunicorn --preload) must not
    hand its workers an open SQLite connection: their writes would be lost."""
    store = SQLiteStore(tmp_path / "s.db")
    assert store._connections.open == [] and (tmp_path / "s.db").exists()
    key = new_key()
    assert store.create(key, fresh())
    store.close()


def test_an_unexpected_error_inside_a_write_releases_the_lock(tmp_path: Path) -> None:
    one, two = SQLiteStore(tmp_path / "s.db", busy_timeout=0.3), SQLiteStore(tmp_path / "s.db", busy_timeout=0.3)
    key = new_key()
    try:
        assert one.create(key, fresh())
        with pytest.raises(StoreError):
            one.commit(key, Commit(expires_at=2**64))  # OverflowError while binding
        assert two.create(new_key(), fresh())  # not "database is locked"
    finally:
        one.close()
        two.close()


def test_a_nan_expiry_is_refused_not_taken_for_a_used_key(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        with pytest.raises(StoreError, match="NaN"):
            store.create(new_key(), Commit(meta=fresh().meta, expires_at=float("nan")))
    finally:
        store.close()


def test_a_row_that_is_not_json_is_a_corrupt_record(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    key = new_key()
    try:
        assert store.create(key, fresh())
        with closing(sqlite3.connect(tmp_path / "s.db")) as raw, raw:  # closed, not only committed
            raw.execute("UPDATE serversession SET data = 'not json' WHERE key = ?", (key,))
        with pytest.raises(CorruptRecordError):
            store.load(key)
        with pytest.raises(CorruptRecordError):
            list(store.scan())
    finally:
        store.close()


def test_a_relative_path_is_pinned_when_the_store_is_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("rel.db")
    assert store.path == os.path.join(str(tmp_path), "rel.db")
    store.close()


def test_a_query_in_the_url_is_refused_and_escapes_are_decoded(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        open_store(f"sqlite:///{tmp_path}/s.db?busy_timeout=1")
    store = open_store(f"sqlite:///{tmp_path}/my%20sessions.db")
    try:
        assert store.path.endswith("my sessions.db")
    finally:
        store.close()


def test_a_lone_surrogate_in_session_data_round_trips(tmp_path: Path) -> None:
    import json

    from serversession import SessionManager
    from serversession.core.transport import IncomingToken

    store = SQLiteStore(tmp_path / "s.db")
    manager = SessionManager(store)
    odd = json.loads('"abc\\ud800"')
    try:
        s = manager.load(IncomingToken(None, via_header=True))
        s["q"] = odd
        token = manager.save(s).header_token
        assert manager.load(IncomingToken(token, via_header=True))["q"] == odd
    finally:
        store.close()


def test_connections_of_finished_threads_are_closed(tmp_path: Path) -> None:
    """A thread-per-request server must not leak a connection per thread."""
    store = SQLiteStore(tmp_path / "s.db")
    try:
        for _ in range(50):
            worker = threading.Thread(target=store.load, args=(new_key(),))
            worker.start()
            worker.join()
        assert len(store._connections.open) <= 2  # the last thread's, and this one's if it used the store
    finally:
        store.close()


@pytest.mark.parametrize("path", [":memory:", ""])
def test_an_in_memory_sqlite_database_is_refused(path: str) -> None:
    """Each thread's connection would be its own empty database: sessions written by
    one thread would not exist for the next. memory:// is the in-process store."""
    with pytest.raises(ConfigurationError, match="memory://"):
        SQLiteStore(path)


def bound(user: str, cap: UserCap | None = None) -> Commit:
    now = time.time()
    meta = encode_meta(SessionMeta(created_at=now, last_seen_at=now, user=user))
    return Commit(meta=meta, expires_at=now + 60, index_user=user, absolute_at=now + 120, user_cap=cap)


def test_statements_per_capped_sign_in(tmp_path: Path) -> None:
    """The cap adds one indexed SELECT of the user's rows to the create's transaction, and
    one UPDATE when it ends sessions; the write lock is the file's, held throughout."""
    store = SQLiteStore(tmp_path / "s.db")
    try:
        for _ in range(3):
            assert store.create(new_key(), bound("alice"))
        statements: list[str] = []
        store._conn().set_trace_callback(lambda text: statements.append(text.split()[0].upper()))
        assert store.create(new_key(), bound("alice"))
        assert statements == ["BEGIN", "DELETE", "INSERT", "COMMIT"]
        statements.clear()
        result = store.create(new_key(), bound("alice", UserCap(3, reason="elsewhere")))
        assert len(result.evicted) == 2
        assert statements == ["BEGIN", "DELETE", "INSERT", "SELECT", "UPDATE", "UPDATE", "COMMIT"]  # one each
        statements.clear()
        assert store.load(result.evicted[0]).ended == "elsewhere"  # type: ignore[union-attr]
        assert statements == ["SELECT"]  # a load stays one statement
    finally:
        store.close()


# -- every connection the store opens, the store closes (Python 3.13 warns otherwise) ------


def is_closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.total_changes  # noqa: B018  # any use of a closed connection raises
    except sqlite3.ProgrammingError:
        return True
    return False


def connections_in_two_threads(store: SQLiteStore) -> list[sqlite3.Connection]:
    """Use the store from this thread and from a worker that is still running; return both
    connections. The worker ends once the caller has checked what it needs."""
    assert store.create(new_key(), fresh())
    opened, done = threading.Event(), threading.Event()

    def worker() -> None:
        store.load(new_key())
        opened.set()
        done.wait(timeout=30)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    assert opened.wait(timeout=30)
    conns = [conn for _, conn in store._connections.open]
    assert len(conns) == 2
    done.set()
    thread.join(timeout=30)
    return conns


def test_close_closes_the_connection_of_every_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    conns = connections_in_two_threads(store)
    store.close()
    assert all(is_closed(conn) for conn in conns)
    assert store.load(new_key()) is None  # a closed store reopens if used anyway (a test's leftovers)
    store.close()


def test_a_store_dropped_without_close_closes_its_connections(tmp_path: Path) -> None:
    """Left to the garbage collector, a sqlite3 connection warns on Python 3.13 (an error
    under this suite's warning filter); the store's finalizer closes them first, and does
    not keep the store alive."""
    store = SQLiteStore(tmp_path / "s.db")
    conns = connections_in_two_threads(store)
    dropped = weakref.ref(store)
    del store
    gc.collect()
    assert dropped() is None
    assert all(is_closed(conn) for conn in conns)


def open_descriptors(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path)) if fds.is_dir() else 0


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc")
def test_a_connection_that_fails_to_set_up_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "not-a-database.db"
    path.write_bytes(b"this is no SQLite file" * 100)
    with pytest.raises(StoreUnavailableError, match="not a database"):
        SQLiteStore(path)
    assert open_descriptors(path) == 0


def test_a_directory_that_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreUnavailableError):
        SQLiteStore(tmp_path / "file" / "s.db")  # its parent would have to be a directory


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_neither_uses_nor_closes_the_parents_connection(tmp_path: Path) -> None:
    """SQLite forbids closing an inherited connection in the child (its clean-up may remove
    files the parent still uses); the child sets them aside and opens its own."""
    store = SQLiteStore(tmp_path / "s.db")
    try:
        assert store.create(new_key(), fresh())
        (parents,) = [conn for _, conn in store._connections.open]
        key = new_key()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded process": none run here
            pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            status = 1
            try:
                assert store.create(key, fresh())
                store.close()
                gc.collect()
                if not is_closed(parents) and any(c is parents for c in sqlite_connections._INHERITED):
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
        assert store.load(key) is not None  # the child's write is there, through the parent's connection
        assert [conn for _, conn in store._connections.open] == [parents]
    finally:
        store.close()
