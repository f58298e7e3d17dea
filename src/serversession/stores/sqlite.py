"""``sqlite:///path``: the embedded default store, durable and multi-process safe.

One row per session in a WAL-mode database: readers never block the writer, and
several app processes may share one file. Every change runs in ``BEGIN
IMMEDIATE`` so a delta merge or a compare-and-set reads and writes under one
lock. Writers queue for that lock (:mod:`._sqlite_lock`: a thread lock in the
process, ``flock`` on the sidecar file ``PATH-lock`` across processes) instead
of retrying in SQLite's busy handler, which sleeps in steps and made the write
tail half a second under load; ``busy_timeout`` bounds the wait. ``synchronous=NORMAL`` in WAL mode keeps every
acknowledged commit through an application crash (SIGKILL); only a power loss or
an OS crash can drop the last transactions (a logout among them: see
docs/reliability.md).

The per-user cap (``Commit.user_cap``) is checked inside the same ``BEGIN
IMMEDIATE`` transaction as the write: SQLite's write lock is one for the whole
file, so no other process can add or end a session of the user between the
count (one indexed SELECT of the user's rows) and the write. An ended session's
row becomes an *ended marker*: ``moved_to`` is the empty string (a tombstone
moved nowhere: older versions of this store read it as a dead tombstone), the
reason in ``meta`` as ``{"r": reason}``, ``user`` NULL, its expiry unchanged.

Expired rows are purged by ``serversession gc`` and, opportunistically, 50 at a
time on every 64th create, through the index on ``expires_at``. The async face
runs reads in a worker thread (see :mod:`._threaded`) and hands every write to
one writer thread per process (see :mod:`._sqlite_writer`); each thread keeps
its own connection.

Every connection the store opens is closed by the store: a finished thread's when
the next thread opens one, all of them by :meth:`SQLiteStore.close`, and, for a
store dropped without ``close()``, when it is garbage-collected or the interpreter
exits (Python 3.13 warns about a connection left to the garbage collector). The
one exception is a forked child: connections it inherited are the parent's, and
SQLite forbids even closing them there (``sqlite3_close`` may clean up files the
parent still uses), so the child keeps them, untouched, and opens its own.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
from ..exceptions import ConfigurationError, CorruptRecordError, StoreError, StoreUnavailableError
from ._sqlite_connections import _Connections
from ._sqlite_lock import WriteLock
from ._sqlite_writer import WriterThread, WriterThreadFace

SCHEMA = """
CREATE TABLE IF NOT EXISTS serversession (
    key        TEXT PRIMARY KEY,
    data       TEXT NOT NULL,
    meta       TEXT NOT NULL,
    user       TEXT,
    expires_at REAL NOT NULL,
    moved_to   TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS serversession_expires ON serversession (expires_at);
CREATE INDEX IF NOT EXISTS serversession_user ON serversession (user) WHERE user IS NOT NULL;
"""
_SELECT = "SELECT data, meta, moved_to FROM serversession WHERE key = ? AND expires_at > ?"
_PURGE = "DELETE FROM serversession WHERE key IN (SELECT key FROM serversession WHERE expires_at <= ? LIMIT ?)"
_USER_ROWS = "SELECT key, meta FROM serversession WHERE user = ? AND expires_at > ? AND moved_to IS NULL"
#: ``moved_to`` of an ended marker: no storage key is empty.
_ENDED = ""
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_decode = json.JSONDecoder().decode


def _loads(text: str) -> Any:
    """A stored JSON column; text that is not JSON is a corrupt record (503), never a 500."""
    try:
        return _decode(text)
    except (ValueError, TypeError) as exc:
        raise CorruptRecordError(f"corrupt session row: {exc}") from exc


def _expiry(expires_at: float | None, default: float | None) -> float | None:
    """A commit's expiry for binding: SQLite binds NaN as NULL, which would read as "key taken"."""
    return default if expires_at is None else checked_expiry(expires_at) or default


class SQLiteStore(WriterThreadFace):
    """Session store in one SQLite file (``path``), created on first use.

    ``busy_timeout`` (5.0 s, 0 or more) bounds the wait for the write lock held
    by another thread or process (a writer outside this store, such as the
    ``sqlite3`` shell, may add as long again); past it operations raise
    :class:`StoreUnavailableError`. Writes also create ``PATH-lock`` beside the
    file (an empty file whose lock orders the writers). Raises
    :class:`ConfigurationError` for ``":memory:"`` or a bad ``busy_timeout``.
    """

    kind = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0, clock: Callable[[], float] = time.time) -> None:
        if str(path) in ("", ":memory:"):  # each thread's connection would be its own empty database
            raise ConfigurationError("SQLiteStore needs a file; for sessions in this process use memory://")
        if not (isinstance(busy_timeout, (int, float)) and 0 <= busy_timeout < math.inf):
            raise ConfigurationError(f"SQLiteStore busy_timeout must be seconds, 0 or more, got {busy_timeout!r}")
        self.path = os.path.abspath(path)  # pinned now: a later chdir must not point new threads elsewhere
        self._busy_ms = int(busy_timeout * 1000)
        self._clock = clock
        self._local = threading.local()
        # A thread that ended has its connection closed when another opens one, so
        # thread-per-request servers do not leak a file descriptor pair per thread.
        self._connections = _Connections()
        self._writes = WriteLock(self.path, busy_timeout)
        self._writer = WriterThread()
        # A store dropped without close() still closes what it opened (the finalizer
        # holds the connections, the lock and the writer, not the store; it also runs at exit).
        self._finalizer = weakref.finalize(self, _close, self._connections, self._writes, self._writer)
        self._creates = 0
        # Create the schema now, so configuration errors surface at start-up, but keep no
        # connection open: a server that forks its workers after this (gunicorn --preload)
        # must not hand them an open SQLite connection, which loses their writes.
        self._conn()
        self.close()

    # -- connections -------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._connections.forked():  # the parent's connections are not ours to use or close
            self._local = threading.local()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        conn = None
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_ms / 1000
            )
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self._wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:  # opened but unusable: not left for the garbage collector
                conn.close()
            raise StoreUnavailableError(
                f"cannot open SQLite store {self.path!r}: {exc}", store="sqlite", operation="connect"
            ) from exc
        self._local.conn = conn
        self._connections.add(conn)
        return conn

    def _wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL. The busy handler does not cover this pragma, so processes
        opening a fresh file at once retry it until the busy timeout runs out."""
        deadline = time.monotonic() + self._busy_ms / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _run(self, operation: str, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        conn = self._conn()
        try:
            return fn(conn)
        except BaseException as exc:
            if conn.in_transaction:  # whatever failed, never keep the write lock from every process
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreUnavailableError(
                    f"SQLite {operation} failed: {exc}", store="sqlite", operation=operation
                ) from exc
            if isinstance(exc, StoreError):  # a corrupt row found inside a transaction
                exc.store, exc.operation = "sqlite", operation
                raise
            if isinstance(exc, (sqlite3.Error, ValueError, KeyError, TypeError, OverflowError)):
                raise StoreError(f"SQLite {operation} failed: {exc}", store="sqlite", operation=operation) from exc
            raise

    def _write(self, operation: str, fn: Callable[[sqlite3.Connection, float], Any]) -> Any:
        def txn(conn: sqlite3.Connection) -> Any:
            conn.execute("BEGIN IMMEDIATE")
            result = fn(conn, self._clock())
            conn.execute("COMMIT")
            return result

        with self._writes.turn(operation):  # held until the COMMIT or the ROLLBACK is done
            return self._run(operation, txn)

    @staticmethod
    def _row(key: str, row: tuple[str, str, str | None]) -> StoredSession:
        return StoredSession(key, check_data(_loads(row[0])), decode_meta(_loads(row[1])))

    @staticmethod
    def _make_room(
        conn: sqlite3.Connection, user: str | None, cap: UserCap | None, now: float, *keep: str
    ) -> list[str] | None:
        """Inside the write transaction: end the least recently used other sessions of
        ``user`` that ``cap`` needs gone (their keys), or None to refuse."""
        if cap is None or not user:
            return []
        rows = conn.execute(_USER_ROWS, (user, now)).fetchall()
        others = [(decode_meta(_loads(meta)).last_seen_at, key) for key, meta in rows if key not in keep]
        chosen = least_recently_used(others, cap)
        if chosen:
            marker = _dumps({"r": cap.reason})
            conn.executemany(
                "UPDATE serversession SET data = '{}', meta = ?, user = NULL, moved_to = ? WHERE key = ?",
                [(marker, _ENDED, key) for key in chosen],
            )
        return chosen

    # -- Store -------------------------------------------------------------------
    def load(self, key: str) -> StoredSession | None:
        """See :meth:`Store.load`."""

        def q(conn: sqlite3.Connection) -> StoredSession | None:
            row = conn.execute(_SELECT, (key, self._clock())).fetchone()
            if row is not None and row[2] == _ENDED:
                return ended_marker(key, str(_loads(row[1]).get("r", "")))
            return None if row is None or row[2] is not None else self._row(key, row)

        result: StoredSession | None = self._run("load", q)
        return result

    def create(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`Store.create`."""

        def txn(conn: sqlite3.Connection, now: float) -> CommitResult:
            conn.execute("DELETE FROM serversession WHERE key = ? AND expires_at <= ?", (key, now))
            cur = conn.execute(
                "INSERT OR IGNORE INTO serversession (key, data, meta, user, expires_at) VALUES (?, ?, ?, ?, ?)",
                (
                    key,
                    _dumps(dict(commit.set_data)),
                    _dumps(dict(commit.meta)),
                    commit.meta.get("u") or None,
                    _expiry(commit.expires_at, now),
                ),
            )
            if cur.rowcount != 1:
                return TAKEN
            evicted = self._make_room(conn, commit.index_user, commit.user_cap, now, key)
            if evicted is None:
                conn.execute("DELETE FROM serversession WHERE key = ?", (key,))  # refused: as if never inserted
                return REFUSED
            self._creates += 1
            if self._creates % 64 == 0:
                conn.execute(_PURGE, (now, 50))
            return committed(evicted)

        result: CommitResult = self._write("create", txn)
        return result

    def commit(self, key: str, commit: Commit) -> CommitResult:
        """See :meth:`Store.commit`."""

        def txn(conn: sqlite3.Connection, now: float) -> CommitResult:
            row = conn.execute(_SELECT, (key, now)).fetchone()
            if row is None or row[2] == _ENDED:
                return MISSING
            if row[2] is not None:
                return CommitResult(Outcome.MOVED, moved_to=row[2])
            data, meta = check_data(_loads(row[0])), _loads(row[1])
            conflict = apply_commit(data, meta, commit)
            if conflict is not None:
                return conflict
            evicted = self._make_room(conn, commit.index_user, commit.user_cap, now, key)
            if evicted is None:
                return REFUSED
            conn.execute(
                "UPDATE serversession SET data = ?, meta = ?, user = ?, expires_at = COALESCE(?, expires_at)"
                " WHERE key = ?",
                (_dumps(data), _dumps(meta), meta.get("u") or None, _expiry(commit.expires_at, None), key),
            )
            return committed(evicted)

        result: CommitResult = self._write("commit", txn)
        return result

    def rotate(self, old_key: str, new_key: str, commit: Commit, grace: float) -> CommitResult:
        """See :meth:`Store.rotate`."""

        def txn(conn: sqlite3.Connection, now: float) -> CommitResult:
            row = conn.execute(_SELECT, (old_key, now)).fetchone()
            if row is None or row[2] == _ENDED:
                return MISSING
            if row[2] is not None:
                return CommitResult(Outcome.MOVED, moved_to=row[2])
            data, meta = check_data(_loads(row[0])), _loads(row[1])
            apply_commit(data, meta, Commit(commit.set_data, commit.unset_data, commit.meta))
            evicted = self._make_room(conn, commit.index_user, commit.user_cap, now, old_key, new_key)
            if evicted is None:
                return REFUSED
            # An expired row still under the new key gives way, as in create (a live one
            # fails the insert: the caller drew a key that is taken).
            conn.execute("DELETE FROM serversession WHERE key = ? AND expires_at <= ?", (new_key, now))
            conn.execute(
                "INSERT INTO serversession (key, data, meta, user, expires_at) VALUES (?, ?, ?, ?, ?)",
                (new_key, _dumps(data), _dumps(meta), meta.get("u") or None, _expiry(commit.expires_at, now)),
            )
            conn.execute(
                "UPDATE serversession SET data = '{}', meta = '{}', user = NULL, moved_to = ?, expires_at = ?"
                " WHERE key = ?",
                (new_key, now + grace, old_key),
            )
            return committed(evicted)

        result: CommitResult = self._write("rotate", txn)
        return result

    def delete(self, key: str) -> bool:
        """See :meth:`Store.delete`."""

        def q(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM serversession WHERE key = ? AND moved_to IS NULL AND expires_at > ?", (key, self._clock())
            )
            return cur.rowcount > 0

        with self._writes.turn("delete"):  # an autocommit DELETE takes the write lock too
            return bool(self._run("delete", q))

    def list_user(self, user: str) -> list[StoredSession]:
        """See :meth:`Store.list_user`."""

        def q(conn: sqlite3.Connection) -> list[StoredSession]:
            rows = conn.execute(
                "SELECT key, data, meta, moved_to FROM serversession WHERE user = ? AND expires_at > ?",
                (user, self._clock()),
            ).fetchall()
            return [self._row(r[0], r[1:]) for r in rows if r[3] is None]

        result: list[StoredSession] = self._run("list_user", q)
        return result

    def scan(self) -> Iterator[StoredSession]:
        """See :meth:`Store.scan`."""

        def q(conn: sqlite3.Connection) -> list[tuple[str, str, str, None]]:
            return conn.execute(
                "SELECT key, data, meta, moved_to FROM serversession WHERE moved_to IS NULL AND expires_at > ?",
                (self._clock(),),
            ).fetchall()

        for r in self._run("scan", q):
            try:
                yield self._row(r[0], r[1:])
            except StoreError as exc:
                exc.store, exc.operation = "sqlite", "scan"
                raise

    def purge_expired(self, limit: int = 1000) -> int:
        """See :meth:`Store.purge_expired`."""
        return int(self._write("purge", lambda conn, now: conn.execute(_PURGE, (now, limit)).rowcount))

    def ping(self) -> None:
        """See :meth:`Store.ping`."""
        self._run("ping", lambda conn: conn.execute("SELECT 1").fetchone())

    def close(self) -> None:
        """Let the writes queued and in progress commit, then close every thread's
        connection and the lock file (a forked child leaves its parent's alone). A
        store used after ``close()`` reopens what it needs."""
        self._writer.drain()
        with self._writes.closing():  # a writer let in next must not find its old, closed connection
            self._connections.close_all()
            self._local = threading.local()


def _close(connections: _Connections, writes: WriteLock, writer: WriterThread) -> None:
    """The finalizer of a store dropped without ``close()``; holds no store. Nothing
    is queued by then (a queued write holds the store), and the finalizer may run on
    the writer thread itself, so it does not wait for that thread to end."""
    writer.drain(wait=False)
    with writes.closing():
        connections.close_all()
