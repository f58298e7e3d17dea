"""Old import path of :mod:`serversession.integrations.django.admin` (imports Django's admin)."""

from ..integrations.django.admin import revoke_sessions

__all__ = ["revoke_sessions"]
