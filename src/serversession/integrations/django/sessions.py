"""List and revoke a user's sessions from Django views ("your active sessions").

Sessions are bound to the user Django signs in (``_auth_user_id``) when they are
saved. Every function takes the user object; ``request`` / ``keep`` accept an
``HttpRequest`` or its ``request.session``. All are sync (one store call or
two); from async views wrap them in ``sync_to_async``.
"""

from __future__ import annotations

from typing import Any

from ...core.lifecycle import SessionInfo
from ...core.session import Session
from .backend import SessionStore, get_manager


def user_key(user: Any) -> str:
    """The string a session is bound to for ``user``: its primary key, as Django stores it."""
    return str(user._meta.pk.value_to_string(user))


def _session_of(request_or_session: Any) -> Session | None:
    session = getattr(request_or_session, "session", request_or_session)
    return session.raw if isinstance(session, SessionStore) else None


def list_user_sessions(user: Any, request: Any = None) -> list[SessionInfo]:
    """``user``'s live sessions, oldest first; the one of ``request`` has ``current=True``.

    Each :class:`~serversession.SessionInfo` names a session by its public
    ``handle`` (safe to show), never by its ID.
    """
    return get_manager().list_sessions(user_key(user), current=_session_of(request))


def revoke_user_sessions(user: Any, keep: Any = None) -> int:
    """End all of ``user``'s sessions except ``keep``'s ("sign out everywhere else"); return how many."""
    return get_manager().revoke_user(user_key(user), keep=_session_of(keep))


def revoke_session(user: Any, handle: str) -> bool:
    """End ``user``'s session with public ``handle``; False if there is none (or not theirs)."""
    return get_manager().revoke(user_key(user), handle)
