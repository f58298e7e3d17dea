"""Old import path of :mod:`serversession.integrations.django.sessions`."""

from ..integrations.django.sessions import list_user_sessions, revoke_session, revoke_user_sessions, user_key

__all__ = ["list_user_sessions", "revoke_session", "revoke_user_sessions", "user_key"]
