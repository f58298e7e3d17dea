"""A memory store for in-process integration tests: counts loads, notes threads, fails on demand."""

from __future__ import annotations

import threading
from typing import Any

from serversession import MemoryStore, StoreUnavailableError


class FlakyStore(MemoryStore):
    """A memory store that counts loads, notes the calling thread and can fail like a dead server."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: set[str] = set()
        self.loads = 0
        self.threads: set[int] = set()

    def _check(self, operation: str) -> None:
        self.threads.add(threading.get_ident())
        if operation in self.fail:
            raise StoreUnavailableError("down", store="memory", operation=operation)

    def load(self, key: str) -> Any:
        self._check("load")
        self.loads += 1
        return super().load(key)

    def create(self, key: str, commit: Any) -> Any:
        self._check("create")
        return super().create(key, commit)

    def commit(self, key: str, commit: Any) -> Any:
        self._check("commit")
        return super().commit(key, commit)
