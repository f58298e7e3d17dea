"""Session stores: one small module each, opened by URL through :func:`open_store`."""

from .base import AsyncStore, Store
from .memory import MemoryStore
from .sqlite import SQLiteStore
from .url import DEFAULT_STORE_URL, open_store

__all__ = ["DEFAULT_STORE_URL", "AsyncStore", "MemoryStore", "SQLiteStore", "Store", "open_store"]
