"""The behaviour-suite endpoints as a one-module Django project.

``SESSION_ENGINE = "serversession.integrations.django"``, Django's own CSRF middleware, real
``login()`` / ``logout()``, and serversession's optional middleware so that a
store outage answers 503 like the other integrations.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import timedelta
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="behaviour-suite-only-" + "k" * 40,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    MIDDLEWARE=[
        "serversession.integrations.django.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SS_DB"]}},
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    USE_TZ=True,
    SESSION_ENGINE="serversession.integrations.django",
    SERVERSESSION_STORE=os.environ["SS_STORE"],
    SERVERSESSION_CONFIG={
        "json_only_paths": ["/set"],
        "guess_limit": int(os.environ.get("SS_GUESS_LIMIT", "100")),
        "max_sessions_per_user": int(os.environ.get("SS_CAP", "0")),
        "on_limit": os.environ.get("SS_ON_LIMIT", "evict"),
    },
    SESSION_COOKIE_AGE=int(float(os.environ.get("SS_IDLE", "2"))),
    SESSION_EXPIRE_AT_BROWSER_CLOSE=True,
)
django.setup()

from django.contrib.auth import get_user_model, login, logout, update_session_auth_hash  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import path  # noqa: E402
from django.utils import timezone  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402

from serversession.integrations.django import credential_changed, list_user_sessions, revoke_user_sessions  # noqa: E402

REAUTH = float(os.environ.get("SS_REAUTH") or 1)


def ok(request: HttpRequest, **payload: Any) -> JsonResponse:
    return JsonResponse({**payload, "csrf": get_token(request)})


@require_GET
def untouched(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})  # never touches request.session: costs no store command


@require_GET
def get_value(request: HttpRequest, key: str) -> JsonResponse:
    return JsonResponse({"value": request.session.get(key)})


@require_GET
def csrf(request: HttpRequest) -> JsonResponse:
    return ok(request)


@require_POST
def set_value(request: HttpRequest, key: str) -> JsonResponse:
    request.session[key] = json.loads(request.body)
    time.sleep(float(request.GET.get("sleep", 0)))
    return ok(request)


@require_POST
def incr(request: HttpRequest, key: str) -> JsonResponse:
    return ok(request, value=request.session.modify(key, lambda n: n + 1, 0))  # type: ignore[attr-defined]


@require_POST
def rotate(request: HttpRequest) -> JsonResponse:
    request.session.cycle_key()
    return ok(request, key=request.session.session_key)  # as login() receivers would record it


@require_POST
def save_now(request: HttpRequest) -> JsonResponse:
    """The common idiom for "give me a session key now"."""
    if not request.session.session_key:
        request.session.save()
    return ok(request, key=request.session.session_key)


@require_POST
def expiry(request: HttpRequest) -> JsonResponse:
    """``set_expiry()`` with each kind of value Django takes: ``{"kind": ..., "seconds": n}``."""
    spec = json.loads(request.body)
    kind, seconds = spec["kind"], spec.get("seconds")
    value: Any = None
    if kind == "int":
        value = seconds
    elif kind == "datetime":
        value = timezone.now() + timedelta(seconds=seconds)
    elif kind == "timedelta":
        value = timedelta(seconds=seconds)
    request.session.set_expiry(value)
    return ok(request, key=request.session.session_key)


@require_POST
def login_view(request: HttpRequest, name: str) -> JsonResponse:
    time.sleep(float(request.GET.get("sleep", 0)))  # a slow password check
    user, _ = get_user_model().objects.get_or_create(username=name)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return ok(request)


@require_POST
def logout_view(request: HttpRequest) -> JsonResponse:
    logout(request)
    return JsonResponse({})


@require_GET
def meta(request: HttpRequest) -> JsonResponse:
    raw = request.session.raw  # type: ignore[attr-defined]
    return JsonResponse({"user_agent": raw.meta.user_agent, "ip": raw.meta.ip})


@require_GET
def sessions(request: HttpRequest) -> JsonResponse:
    infos = list_user_sessions(request.user, request) if request.user.is_authenticated else []
    return JsonResponse({"sessions": [{"handle": i.handle, "current": i.current} for i in infos]})


@require_POST
def revoke_others(request: HttpRequest) -> JsonResponse:
    return ok(request, revoked=revoke_user_sessions(request.user, keep=request))


def iso(request: HttpRequest) -> str | None:
    at = request.session.authenticated_at  # type: ignore[attr-defined]
    return None if at is None else at.isoformat()


@require_POST
def sensitive(request: HttpRequest) -> JsonResponse:
    request.session.require_recent_auth(REAUTH)  # type: ignore[attr-defined]  # 401 with reauth_required
    return ok(request, authenticated_at=iso(request))


@require_POST
def reauth(request: HttpRequest) -> JsonResponse:
    request.session.reauthenticated()  # type: ignore[attr-defined]
    return ok(request, authenticated_at=iso(request))


@require_POST
def password(request: HttpRequest) -> JsonResponse:
    """A password change the recommended way: ``credential_changed(request, user)``."""
    user = request.user
    user.set_password(uuid.uuid4().hex)  # type: ignore[union-attr]
    user.save()  # type: ignore[union-attr]
    revoked = credential_changed(request, user, reason="password changed")
    return ok(request, revoked=revoked, authenticated_at=iso(request), key=request.session.session_key)


@require_POST
def password_django(request: HttpRequest) -> JsonResponse:
    """A password change Django's way: ``update_session_auth_hash()`` (its ``cycle_key()``)."""
    user = request.user
    user.set_password(uuid.uuid4().hex)  # type: ignore[union-attr]
    user.save()  # type: ignore[union-attr]
    update_session_auth_hash(request, user)  # type: ignore[arg-type]
    return ok(request, authenticated_at=iso(request), key=request.session.session_key)


urlpatterns = [
    path("untouched", untouched),
    path("get/<str:key>", get_value),
    path("csrf", csrf),
    path("set/<str:key>", set_value),
    path("incr/<str:key>", incr),
    path("rotate", rotate),
    path("save-now", save_now),
    path("expiry", expiry),
    path("login/<str:name>", login_view),
    path("logout", logout_view),
    path("sessions", sessions),
    path("meta", meta),
    path("revoke-others", revoke_others),
    path("sensitive", sensitive),
    path("reauth", reauth),
    path("password", password),
    path("password-django", password_django),
]

call_command("migrate", verbosity=0)
app = get_wsgi_application()
asgi_app = get_asgi_application()  # the same project under an ASGI server
