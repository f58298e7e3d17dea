"""The one error tree of serversession.

Every exception the library raises on purpose derives from :class:`SessionError`,
so an application can catch the whole family in one place::

    SessionError
    ├── ConfigurationError        a setting or store URL is wrong (raised at start-up)
    ├── StoreError                the store failed: server down, timeout, corrupt row
    │   ├── StoreUnavailableError the store cannot be reached right now (answer 503, retry later)
    │   └── CorruptRecordError    a stored session cannot be decoded (answer 503, never a 500)
    ├── SessionDataError          the application put something unstorable in a session
    │   ├── NotSerializableError  a value is not JSON-serializable (raised where it is set)
    │   └── SessionTooLargeError  the encoded session exceeds ``max_size``
    ├── ConcurrentUpdateError     an atomic ``modify()`` lost its race too many times
    ├── SessionEndedError         the session was destroyed, revoked or rotated away
    ├── SessionLimitError         a sign-in beyond ``max_sessions_per_user`` was refused (answer 409)
    ├── ReauthenticationRequired  the last sign-in is older than an action allows (answer 401)
    └── CSRFError                 the CSRF token is missing or wrong (answer 403)

A missing, expired or tampered session ID is *not* an error: the request simply
gets a fresh, empty session. Errors are kept for failures the caller must act on.
Store errors always carry the driver's exception as ``__cause__``.
"""

from __future__ import annotations

from datetime import datetime


class SessionError(Exception):
    """Base class of every error raised by serversession."""


class ConfigurationError(SessionError):
    """A setting, option or store URL is invalid.

    Raised when a manager, store or middleware is built, never in the middle of a
    request, so a misconfigured app fails at start-up.
    """


class StoreError(SessionError):
    """The session store failed to carry out an operation.

    ``operation`` names the store method ("load", "commit", ...) and ``store`` the
    store's kind ("redis", "sqlite", ...); the driver's exception is ``__cause__``.
    """

    def __init__(self, message: str, *, store: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.store = store
        self.operation = operation


class StoreUnavailableError(StoreError):
    """The store cannot be reached (connection refused, timeout, read-only replica).

    Middleware turns this into ``503 Service Unavailable`` with a JSON body; nothing
    was written and nothing is lost, so the client may retry.
    """


class CorruptRecordError(StoreError):
    """A stored session cannot be decoded: a field is missing, mistyped or not JSON.

    Only a bug, a hand-edited row or a foreign writer produces one. It is a
    :class:`StoreError` so every integration answers 503 instead of crashing,
    and the record is left alone for someone to inspect.
    """


class SessionDataError(SessionError):
    """The application tried to store something a session cannot hold."""

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class NotSerializableError(SessionDataError, TypeError):
    """A value is not JSON-serializable; raised by the assignment that set it."""


class SessionTooLargeError(SessionDataError, ValueError):
    """The encoded session would exceed the configured ``max_size`` (bytes)."""

    def __init__(self, message: str, *, key: str = "", size: int = 0, limit: int = 0) -> None:
        super().__init__(message, key=key)
        self.size = size
        self.limit = limit


class ConcurrentUpdateError(SessionError):
    """An atomic ``modify()`` kept losing its compare-and-set race and gave up.

    Only under extreme contention on one key of one session; safe to retry.
    """


class SessionEndedError(SessionError):
    """The session was destroyed, revoked or rotated by another request meanwhile."""


class SessionLimitError(SessionError):
    """A sign-in was refused: the user already has ``limit`` live sessions.

    Raised by the save that binds the user (``SessionConfig(max_sessions_per_user=N,
    on_limit="refuse")``); nothing was written, and the session the request
    carried (if any) is unchanged. The request guard answers 409; an app may
    catch it to say "sign out on another device first". ``user`` is the user
    refused, ``limit`` the cap.
    """

    def __init__(self, message: str, *, user: str = "", limit: int = 0) -> None:
        super().__init__(message)
        self.user = user
        self.limit = limit


class ReauthenticationRequired(SessionError):
    """The user must prove who they are again before this action.

    Raised by :meth:`Session.require_recent_auth
    <serversession.Session.require_recent_auth>` when the session's last
    authentication (sign-in or :meth:`~serversession.Session.reauthenticated`)
    is older than ``max_age`` seconds, or the session is anonymous. Every
    integration answers it with 401 ``{"error": ..., "reauth_required": true}``
    unless the app catches it (to show a password prompt, say). ``max_age`` is
    the limit in seconds; ``authenticated_at`` the last authentication (a
    timezone-aware UTC ``datetime``) or None.
    """

    def __init__(self, message: str, *, max_age: float, authenticated_at: datetime | None) -> None:
        super().__init__(message)
        self.max_age = max_age
        self.authenticated_at = authenticated_at


class CSRFError(SessionError):
    """The request's CSRF token is missing or does not match its session.

    ``reason`` is a short, safe-to-show explanation ("missing", "mismatch").
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"CSRF token {reason}")
        self.reason = reason
