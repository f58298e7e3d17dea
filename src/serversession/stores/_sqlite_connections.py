"""The SQLite store's connections: one per thread, each closed by the store.

Kept apart from the store so the store's finalizer can close them without
holding the store alive (see the "every connection" paragraph of
:mod:`.sqlite`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref

#: Connections a forked child inherited from its parent: kept referenced, never used or
#: closed, so neither ``close()`` nor the garbage collector finalizes them in the child.
_INHERITED: list[sqlite3.Connection] = []


class _Connections:
    """Every thread's connection to one store's file, with the thread that owns it (weakly).

    Kept apart from the store so the store's finalizer can close them without
    holding the store alive.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.open: list[tuple[weakref.ref[threading.Thread], sqlite3.Connection]] = []

    def forked(self) -> bool:
        """True once, in a forked child: the parent's connections are set aside there."""
        if os.getpid() == self.pid:
            return False
        with self.lock:
            _INHERITED.extend(conn for _, conn in self.open)
            self.open, self.pid = [], os.getpid()
        return True

    def add(self, conn: sqlite3.Connection) -> None:
        """Keep ``conn`` as the current thread's; close those of threads that ended."""
        with self.lock:
            alive = []
            for thread, other in self.open:
                owner = thread()
                if owner is not None and owner.is_alive():
                    alive.append((thread, other))
                else:
                    other.close()
            alive.append((weakref.ref(threading.current_thread()), conn))
            self.open = alive

    def close_all(self) -> None:
        """Close every thread's connection (in a forked child, only the child's own)."""
        self.forked()
        with self.lock:
            for _, conn in self.open:
                conn.close()
            self.open = []
