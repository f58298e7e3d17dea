"""Old import path of :mod:`serversession.integrations.django.middleware`."""

from ..integrations.django.middleware import SessionMiddleware

__all__ = ["SessionMiddleware"]
