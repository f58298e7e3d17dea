"""Optional: Django's ``SessionMiddleware`` with the request boundary of every integration.

Put it in Django's place in ``MIDDLEWARE``
(``"serversession.integrations.django.middleware.SessionMiddleware"``) to get what the ASGI
and WSGI middleware give, decided by the same guard
(:mod:`serversession.core.guard`):

* a store outage answers ``503`` with ``{"error": ...}`` and ``Retry-After: 1``
  (at the session's first use, in a view, at save) instead of Django's 500; a
  lost session race 409;
* the session is read at its first use, as Django's own engines do: a request
  that never touches ``request.session`` (a static file, a health check) costs
  no store command;
  ``request.session.require_recent_auth()`` failing in a view, 401 with
  ``"reauth_required": true``;
* the session cookie sent twice is served as no session and cleared;
* an address guessing session IDs gets 429 without a store round trip;
* an unsafe cross-site request is refused with 403 before the view (Django's
  ``CSRF_TRUSTED_ORIGINS`` are trusted too, wildcards included; a view marked
  ``@csrf_exempt`` is exempt), and ``json_only_paths`` answer 415;
* ``logout()`` answers with ``Clear-Site-Data``.

Django's ``CsrfViewMiddleware`` stays in charge of CSRF tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

from ...core.config import normal_origin
from ...core.events import EventKind, SessionEvent
from ...core.guard import STORE_UNAVAILABLE, Refusal, refusal_for_error
from ...core.transport import IncomingToken, client_ip
from ...exceptions import SessionError, StoreError
from ..kit import refuse
from ..wsgi import facts_from_environ
from .backend import SessionStore, get_manager, remember_client

log = logging.getLogger("serversession")

_STATE = "_serversession_state"


class SessionMiddleware(DjangoSessionMiddleware):  # type: ignore[misc]
    """Django's session middleware plus the request guard, 503 on store failure, 409 on a lost race.

    Needs ``SESSION_ENGINE = "serversession.integrations.django"``.
    """

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        manager = get_manager()
        meta = request.META
        ambiguous = manager.config.refuse_ambiguous_cookies and _sent_twice(
            meta.get("HTTP_COOKIE") or "", settings.SESSION_COOKIE_NAME
        )
        if ambiguous:  # Django's cookie parser keeps the last one: neither value is believed
            request.session = self.SessionStore(None)
            reason = "the session cookie was sent more than once"
            manager.emit(SessionEvent(EventKind.REFUSED, manager.clock(), reason=reason))
        else:
            super().process_request(request)
        session = request.session
        if not isinstance(session, SessionStore):
            return None
        remember_client(meta)
        ip = client_ip(manager.config, meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"))
        token = IncomingToken(None if ambiguous else request.COOKIES.get(settings.SESSION_COOKIE_NAME), False)
        now = manager.clock()
        refusal = manager.guard.throttle(token, ip, now)
        if refusal is not None:
            refuse(refusal, None, manager)
            return _answer(refusal)
        # Not read here: Django reads the session at its first use, so a request that never
        # touches request.session costs no store command. The engine observes guessed IDs then.
        setattr(request, _STATE, ambiguous)
        return None

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        session = getattr(request, "session", None)
        if not isinstance(session, SessionStore):
            return None
        manager = get_manager()
        exempt = bool(getattr(view, "csrf_exempt", False))
        try:
            host = request.get_host()  # Django's view of it: USE_X_FORWARDED_HOST, ALLOWED_HOSTS
        except DisallowedHost:
            host = None  # Django answers 400 itself; an Origin cannot match it meanwhile
        facts = replace(
            facts_from_environ(request.META), path=request.path, scheme=request.scheme, host=host, exempt=exempt
        )
        refusal = manager.guard.screen(facts, via_header=False, now=manager.clock())
        if refusal is not None and refusal.reason == "cross_site" and _django_trusts(facts.origin):
            refusal = None
        if refusal is None:
            return None
        refuse(refusal, facts, manager)
        return _answer(refusal)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        try:
            result: HttpResponse = super().process_response(request, response)
        except StoreError as exc:
            log.warning("session store failed: %s", exc)
            return _answer(STORE_UNAVAILABLE)
        except SessionError as exc:  # a sign-in the per-user cap refused (409), a lost race
            refusal = refusal_for_error(exc)
            if refusal is None:
                raise
            log.warning("session save refused: %s: %s", type(exc).__name__, exc)
            return _answer(refusal)
        except SessionInterrupted:
            if getattr(request.session, "moved_away", False):
                return response  # saved into the rotated session; the cookie is the rotating response's
            raise
        ambiguous = getattr(request, _STATE, False)
        session = getattr(request, "session", None)
        if isinstance(session, SessionStore) and session.read_error is not None and result.status_code == 500:
            # The first read failed somewhere Django turned the StoreError into its own 500 (another
            # middleware, a template): the answer is the 503 as anywhere else.
            return _answer(STORE_UNAVAILABLE)
        if not isinstance(session, SessionStore):
            return result
        had_session = bool(session.presented_live)
        if ambiguous and settings.SESSION_COOKIE_NAME not in result.cookies:
            result.delete_cookie(
                settings.SESSION_COOKIE_NAME,
                path=settings.SESSION_COOKIE_PATH,
                domain=settings.SESSION_COOKIE_DOMAIN,
                samesite=settings.SESSION_COOKIE_SAMESITE,
            )
        if had_session and session.session_key is None:
            # The session lived when the request came and is gone now: logout() (flush).
            config = session.raw.config
            if config.clear_site_data:
                result["Clear-Site-Data"] = ", ".join(f'"{d}"' for d in config.clear_site_data)
        return result

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        refusal = refusal_for_error(exception)
        if refusal is None:
            return None
        log.warning("session error in a view: %s: %s", type(exception).__name__, exception)
        return _answer(refusal)


def _answer(refusal: Refusal) -> HttpResponse:
    body = refusal.body()
    response = HttpResponse(body, status=refusal.status, content_type="application/json")
    for name, value in refusal.headers(body):
        if name not in ("Content-Type", "Content-Length"):
            response[name] = value
    return response


def _sent_twice(header: str, name: str) -> bool:
    """Whether cookie ``name`` appears more than once in a Cookie header."""
    count = 0
    for part in header.split(";"):
        key, eq, _ = part.strip().partition("=")
        if eq and key == name:
            count += 1
            if count > 1:
                return True
    return False


def _django_trusts(origin: str | None) -> bool:
    """Whether Django's ``CSRF_TRUSTED_ORIGINS`` list ``origin`` (``https://*.example.com`` wildcards too)."""
    shown = normal_origin(origin)
    if shown is None:
        return False
    for entry in getattr(settings, "CSRF_TRUSTED_ORIGINS", ()):
        scheme, _, host = str(entry).partition("://")
        if host.startswith("*."):
            own_scheme, _, own_host = shown.partition("://")
            if own_scheme == scheme.lower() and own_host.endswith(host[1:].lower()):
                return True
        elif normal_origin(str(entry)) == shown:
            return True
    return False

