"""Old import path of the Django integration, kept so existing settings keep working.

``SESSION_ENGINE = "serversession.django"`` and
``serversession.django.middleware.SessionMiddleware`` still work; the
integration lives in :mod:`serversession.integrations.django`, beside every
other framework's, and new settings should name that.
"""

from ..integrations.django import (
    SessionStore,
    credential_changed,
    get_manager,
    list_user_sessions,
    revoke_session,
    revoke_user_sessions,
)

__all__ = [
    "SessionStore",
    "credential_changed",
    "get_manager",
    "list_user_sessions",
    "revoke_session",
    "revoke_user_sessions",
]
