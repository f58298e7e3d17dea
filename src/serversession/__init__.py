"""serversession: server-side HTTP sessions for any Python web framework.

Start with :class:`SessionConfig` and a store from :func:`open_store`, then an
integration: :class:`serversession.integrations.asgi.SessionMiddleware`,
:mod:`serversession.integrations.wsgi`, :mod:`serversession.flask` or
``SESSION_ENGINE = "serversession.django"``.
"""

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
    SessionDataError,
    SessionEndedError,
    SessionError,
    SessionTooLargeError,
    StoreError,
    StoreUnavailableError,
)
from .manager import AsyncSessionManager, SessionManager
from .stores import AsyncStore, MemoryStore, SQLiteStore, Store, open_store

__version__ = "0.1.0"

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
    "SQLiteStore",
    "SaveResult",
    "Session",
    "SessionConfig",
    "SessionDataError",
    "SessionEndedError",
    "SessionError",
    "SessionInfo",
    "SessionManager",
    "SessionTooLargeError",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "StoredSession",
    "__version__",
    "open_store",
]
