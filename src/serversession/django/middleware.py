"""Optional: Django's ``SessionMiddleware``, answering a store outage with 503.

With Django's own middleware a store outage surfaces as a 500. Put this one in
its place in ``MIDDLEWARE`` (``"serversession.django.middleware.SessionMiddleware"``)
to get what the ASGI and WSGI middleware give: the session is loaded up front
(at most one store read), and a store failure then, in a view
(``request.session.modify``) or while saving answers ``503`` with
``{"error": ...}`` and ``Retry-After: 1``; nothing is written.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse

from ..exceptions import StoreError
from ..integrations._common import STORE_DOWN_MESSAGE, error_body, error_headers, session_error_status
from .backend import SessionStore, remember_client

log = logging.getLogger("serversession")


class SessionMiddleware(DjangoSessionMiddleware):  # type: ignore[misc]
    """Django's session middleware plus 503 on store failure, 409 on a lost session race.

    Needs ``SESSION_ENGINE = "serversession.django"``.
    """

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        super().process_request(request)
        session = request.session
        if isinstance(session, SessionStore):
            remember_client(request.META)
            try:
                session.preload()
            except StoreError as exc:
                return _unavailable(exc)
        return None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        try:
            result: HttpResponse = super().process_response(request, response)
        except StoreError as exc:
            return _unavailable(exc)
        except SessionInterrupted:
            if getattr(request.session, "moved_away", False):
                return response  # saved into the rotated session; the cookie is the rotating response's
            raise
        return result

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        answer = session_error_status(exception)
        if answer is None:
            return None
        log.warning("session error in a view: %s: %s", type(exception).__name__, exception)
        body = error_body(answer[1])
        response = HttpResponse(body, status=answer[0], content_type="application/json")
        for name, value in error_headers(answer[0], body):
            if name == "Retry-After":
                response[name] = value
        return response


def _unavailable(exc: Any) -> HttpResponse:
    log.warning("session store failed: %s", exc)
    body = error_body(STORE_DOWN_MESSAGE)
    response = HttpResponse(body, status=503, content_type="application/json")
    response["Retry-After"] = dict(error_headers(503, body))["Retry-After"]
    return response
