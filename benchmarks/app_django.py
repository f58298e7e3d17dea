"""The benchmark app for Django: settings, routes and views in one module.

``BENCH_KIND`` picks ``SESSION_ENGINE``: ``ours`` (``serversession.integrations.django``,
store ``BENCH_STORE``), ``cache`` (Django's cache sessions on the Redis cache
backend at ``BENCH_STORE``), ``db`` (Django's database sessions in the SQLite
file ``BENCH_DB``) or ``floor`` (no session middleware). Every engine runs with
``SESSION_SAVE_EVERY_REQUEST = True``: the peers need it for a sliding expiry,
and ours gets the same setting so no target runs with lighter settings (ours
renews by itself; the extra save() is a no-op without a store command).
No CSRF middleware on any target. gunicorn imports
``benchmarks.app_django:application``.
"""

from __future__ import annotations

import os
from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

from . import instrument

instrument.install()

KIND = os.environ.get("BENCH_KIND", "floor")
STORE = os.environ.get("BENCH_STORE", "")
USER = "bench"

_ENGINES = {"ours": "serversession.integrations.django", "cache": "django.contrib.sessions.backends.cache",
            "db": "django.contrib.sessions.backends.db"}  # fmt: skip
if KIND not in (*_ENGINES, "floor"):
    raise SystemExit(f"unknown BENCH_KIND {KIND!r}")

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-secret-" * 4,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    USE_TZ=True,
    INSTALLED_APPS=["django.contrib.sessions"] if KIND == "db" else [],
    MIDDLEWARE=[] if KIND == "floor" else ["django.contrib.sessions.middleware.SessionMiddleware"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["BENCH_DB"]}}
    if KIND == "db" else {},
    CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": STORE}}
    if KIND == "cache" else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    SESSION_ENGINE=_ENGINES.get(KIND, "django.contrib.sessions.backends.cache"),
    SESSION_SAVE_EVERY_REQUEST=True,
    SESSION_COOKIE_SECURE=False,
    SESSION_COOKIE_AGE=1800,
    SERVERSESSION_STORE=STORE,
)  # fmt: skip
django.setup()

if KIND == "db":
    from django.core.management import call_command

    call_command("migrate", "sessions", verbosity=0)


def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def start(request: HttpRequest) -> JsonResponse:
    request.session["started"] = True
    return JsonResponse({"csrf": ""})


def login(request: HttpRequest) -> JsonResponse:
    request.session["user"] = USER
    request.session.cycle_key()  # what django.contrib.auth.login() does
    return JsonResponse({"csrf": ""})


def read(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"user": request.session.get("user")})


def write(request: HttpRequest) -> JsonResponse:
    session: Any = request.session
    if KIND == "ours":
        n = session.modify("n", lambda n: n + 1, 0)
    else:
        n = session["n"] = session.get("n", 0) + 1
    return JsonResponse({"n": n})


def counter(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"n": request.session.get("n", 0)})


_views = {"bare": bare} if KIND == "floor" else {
    "bare": bare, "start": start, "login": login, "read": read, "write": write, "counter": counter}  # fmt: skip
urlpatterns = [path(name, view) for name, view in _views.items()]

from django.core.wsgi import get_wsgi_application  # noqa: E402 - needs the settings above

application = instrument.wsgi(get_wsgi_application())
