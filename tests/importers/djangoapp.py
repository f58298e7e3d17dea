"""A small Django project for the import tests, one phase per run (Django's settings are per process).

    python djangoapp.py setup            migrate, create the user alice
    python djangoapp.py signin           sign alice in; print {"cookie": ...}
    python djangoapp.py check COOKIE     GET /whoami/ with that sessionid; print {"user", "cookie"}

The engine comes from the environment: ``APP_ENGINE`` is ``db`` (Django's database
sessions), ``cache`` (Django's cache sessions on ``APP_REDIS``) or ``serversession``
(``SERVERSESSION_STORE``, with ``accept_imported``). ``APP_DB`` is the SQLite file
holding the users (and the db sessions).
"""

from __future__ import annotations

import json
import os
import sys

import django
from django.conf import settings

PASSWORD = "correct horse battery staple"


def configure() -> None:
    engine = os.environ["APP_ENGINE"]
    extra: dict[str, object] = {}
    if engine == "db":
        extra["SESSION_ENGINE"] = "django.contrib.sessions.backends.db"
    elif engine == "cache":
        extra["SESSION_ENGINE"] = "django.contrib.sessions.backends.cache"
        extra["CACHES"] = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": os.environ["APP_REDIS"]}}  # fmt: skip
    else:
        extra["SESSION_ENGINE"] = "serversession.integrations.django"
        extra["SERVERSESSION_STORE"] = os.environ["SERVERSESSION_STORE"]
        extra["SERVERSESSION_CONFIG"] = {"accept_imported": True}
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ["APP_SECRET"],
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["APP_DB"]}},
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # fast; tests only
        **extra,
    )
    django.setup()


def signin_view(request: object) -> object:
    from django.contrib.auth import authenticate, login
    from django.http import HttpResponse

    user = authenticate(request, username="alice", password=PASSWORD)
    login(request, user)
    request.session["cart"] = ["tea", 2]  # type: ignore[attr-defined]
    return HttpResponse("ok")


def whoami_view(request: object) -> object:
    from django.http import JsonResponse

    user = request.user  # type: ignore[attr-defined]
    cart = request.session.get("cart")  # type: ignore[attr-defined]
    return JsonResponse({"user": user.username if user.is_authenticated else None, "cart": cart})


configure()

from django.urls import path  # noqa: E402 (after settings)

urlpatterns = [path("signin/", signin_view), path("whoami/", whoami_view)]


def main(argv: list[str]) -> None:
    from django.test import Client

    if argv[0] == "setup":
        from django.contrib.auth.models import User
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        User.objects.create_user("alice", password=PASSWORD)
    elif argv[0] == "signin":
        client = Client()
        assert client.post("/signin/").status_code == 200
        print(json.dumps({"cookie": client.cookies["sessionid"].value}))
    else:
        client = Client()
        client.cookies["sessionid"] = argv[1]
        answer = client.get("/whoami/").json()
        given = client.cookies.get("sessionid")
        print(json.dumps({**answer, "cookie": given.value if given is not None else None}))


if __name__ == "__main__":
    main(sys.argv[1:])
