"""Old import path of :mod:`serversession.integrations.django.backend`."""

from ..integrations.django.backend import SessionStore, credential_changed, get_manager, remember_client

__all__ = ["SessionStore", "credential_changed", "get_manager", "remember_client"]
