"""The SQLite store's write line: writers of one file wait their turn instead of sleeping.

Why: SQLite lets one transaction write at a time and makes the others retry
through its busy handler, which sleeps in growing steps (1, 2, 5 ... 100 ms) and
wakes at the end of a step, not when the lock is released. Under cart adds
spread over 64 sessions (benchmarks/write_tail.py) ``BEGIN IMMEDIATE`` waited
about 100 ms at the 99th percentile and over a second at worst, although each
transaction holds the lock for well under a millisecond. A writer that blocks on
a lock is woken as soon as it is released.

Two levels, taken in this order and released in the reverse one:

* in the process, one ``threading.Lock`` per store, so only one thread of a
  process ever waits for the next level;
* across processes, ``fcntl.flock`` on a sidecar file (the database path plus
  ``-lock``), held around the transaction. The kernel releases it when its
  holder dies, even by SIGKILL, so a crashed worker cannot wedge the others.

``flock`` has no timeout, and the store promises that ``busy_timeout`` bounds a
wait. So when the sidecar is taken, a helper thread waits in ``flock`` and the
writer waits for the helper, at most until its deadline; a writer that gives up
leaves the helper waiting, and the helper hands the lock to the next writer or,
when nobody wants it any more, releases it.

Correctness never rests on the sidecar: SQLite's own lock still guards every
transaction, and a writer that skips the sidecar (an older serversession, the
``sqlite3`` shell) is still serialized by it and met by the busy handler. The
sidecar only turns waits among this store's writers into queueing.

Fork: a child must not share its parent's lock (a ``flock`` belongs to the open
file, which a forked descriptor shares, and a ``threading.Lock`` copied while
held stays held in the child), so a child that writes builds its own and closes
the inherited descriptor without unlocking it (which would unlock the parent).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

from ..exceptions import StoreUnavailableError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: writers of one process still queue
    fcntl = None  # type: ignore[assignment]


class _Sidecar:
    """One process's descriptor on the sidecar file, and the helper that waits for it.

    Only the holder of the in-process lock calls :meth:`acquire` and
    :meth:`release`; ``state`` guards what it shares with the helper thread.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.state = threading.Lock()
        self.helper: threading.Thread | None = None  # waiting in flock (owns ``fd`` until it is done)
        self.granted = threading.Event()  # set by the helper once it holds the lock for ``wanted``
        self.wanted = False
        self.closing = False

    def _open(self) -> int:
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise StoreUnavailableError(
                    f"cannot open SQLite lock file {self.path!r}: {exc}", store="sqlite", operation="lock"
                ) from exc
        return self.fd

    def acquire(self, deadline: float) -> bool:
        """Take the sidecar lock by ``deadline`` (``time.monotonic()``); False if not."""
        with self.state:
            self.closing = False
            if self.helper is None:
                fd = self._open()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    pass
                self.granted.clear()
                self.helper = threading.Thread(target=self._wait, args=(fd,), name="serversession-sqlite-lock",
                                               daemon=True)  # fmt: skip
                self.helper.start()
            self.wanted = True  # a helper left by a writer that gave up works for this one now
        self.granted.wait(max(0.0, deadline - time.monotonic()))
        with self.state:
            if self.granted.is_set():
                self.granted.clear()
                return True
            self.wanted = False  # the helper releases the lock when it finally gets it
            return False

    def _wait(self, fd: int) -> None:
        """The helper: block in flock, then hand the lock over or give it back."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            failed = False
        except OSError:  # not expected on a descriptor of ours; the writer times out and reports it
            failed = True
        with self.state:
            self.helper = None
            if not failed and self.wanted:
                self.wanted = False
                self.granted.set()
                return
            if not failed:
                fcntl.flock(fd, fcntl.LOCK_UN)
            if self.closing:  # close() left the descriptor to us while we waited on it
                os.close(fd)
                if self.fd == fd:
                    self.fd = None

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the descriptor (which releases the lock), or leave that to a waiting helper."""
        with self.state:
            if self.helper is not None:
                self.closing = True
            elif self.fd is not None:
                os.close(self.fd)
                self.fd = None

    def abandon(self) -> None:
        """In a forked child: close the inherited descriptor, which leaves the parent's lock alone."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


class WriteLock:
    """The line the writers of one SQLite file wait in (see the module docstring).

    ``timeout`` (seconds) bounds a writer's whole wait, in the process and for
    other processes; past it :meth:`turn` raises :class:`StoreUnavailableError`.
    """

    def __init__(self, db_path: str, timeout: float) -> None:
        self.sidecar_path = db_path + "-lock"
        self.timeout = timeout
        self.pid = os.getpid()
        self._local = threading.Lock()
        self._sidecar = _Sidecar(self.sidecar_path) if fcntl is not None else None

    def _mine(self) -> None:
        """In a forked child, once: a lock of its own (see the module docstring)."""
        if os.getpid() != self.pid:
            if self._sidecar is not None:
                self._sidecar.abandon()
                self._sidecar = _Sidecar(self.sidecar_path)
            self._local, self.pid = threading.Lock(), os.getpid()

    @contextlib.contextmanager
    def turn(self, operation: str) -> Iterator[None]:
        """Hold the file's write lock for one transaction; raises :class:`StoreUnavailableError`
        when it is not free within ``timeout``."""
        self._mine()
        deadline = time.monotonic() + self.timeout
        local, sidecar = self._local, self._sidecar
        if not local.acquire(timeout=self.timeout):
            raise self._late(operation, "another thread of this process")
        try:
            if sidecar is not None and not sidecar.acquire(deadline):
                raise self._late(operation, "another process")
            try:
                yield
            finally:
                if sidecar is not None:
                    sidecar.release()
        finally:
            local.release()

    def _late(self, operation: str, holder: str) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"SQLite {operation} waited {self.timeout:g} s for the write lock, held by {holder}",
            store="sqlite",
            operation=operation,
        )

    @contextlib.contextmanager
    def closing(self) -> Iterator[None]:
        """For the store's ``close()``: wait (up to ``timeout``) for the write in progress
        to commit, hold off new ones while the connections close, and close the sidecar
        descriptor (the next write reopens it). A forked child closes only its own."""
        self._mine()
        local = self._local
        drained = local.acquire(timeout=self.timeout)
        try:
            yield
            if self._sidecar is not None:
                self._sidecar.close()
        finally:
            if drained:
                local.release()
