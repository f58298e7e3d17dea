"""serversession: server-side HTTP sessions for any Python web framework.

Start with :class:`SessionConfig` and a store from :func:`open_store`, then an
integration: :class:`serversession.integrations.asgi.SessionMiddleware`,
:mod:`serversession.integrations.wsgi`, :mod:`serversession.integrations.flask` or
``SESSION_ENGINE = "serversession.integrations.django"``.
"""

from typing import TYPE_CHECKING, Any

from .core.config import SessionConfig
from .core.lifecycle import SaveResult, SessionInfo
from .core.records import Commit, CommitResult, Outcome, StoredSession
from .core.session import Session
from .exceptions import (
    ConcurrentUpdateError,
    ConfigurationError,
    CorruptRecordError,
    CSRFError,
    NotSerializableError,
    ReauthenticationRequired,
    SessionDataError,
    SessionEndedError,
    SessionError,
    SessionLimitError,
    SessionTooLargeError,
    StoreError,
    StoreUnavailableError,
)
from .manager import AsyncSessionManager, SessionManager
from .stores import AsyncStore, MemoryStore, SQLiteStore, Store, open_store

if TYPE_CHECKING:
    from .stores.postgres import PostgresStore as PostgresStore
    from .stores.redis import RedisStore as RedisStore

__version__ = "0.1.0"

#: Stores whose drivers are optional extras: imported on first use, so that
#: ``import serversession`` needs neither redis-py nor psycopg.
_LAZY = {"RedisStore": ".stores.redis", "PostgresStore": ".stores.postgres"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


# The lazy stores are public (``from serversession import RedisStore``) but left out
# of __all__: ``from serversession import *`` would import their drivers.
__all__ = [
    "AsyncSessionManager",
    "AsyncStore",
    "CSRFError",
    "Commit",
    "CommitResult",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "CorruptRecordError",
    "MemoryStore",
    "NotSerializableError",
    "Outcome",
    "ReauthenticationRequired",
    "SQLiteStore",
    "SaveResult",
    "Session",
    "SessionConfig",
    "SessionDataError",
    "SessionEndedError",
    "SessionError",
    "SessionInfo",
    "SessionLimitError",
    "SessionManager",
    "SessionTooLargeError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "StoredSession",
    "__version__",
    "open_store",
]
