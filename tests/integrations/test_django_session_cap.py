"""Django: the per-user session cap from its settings, and ``login()`` beyond it.

Each case runs in a fresh interpreter: Django's settings are configured once per process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SETUP = """
import django
from django.conf import settings
settings.configure(
    SECRET_KEY="cap-test-" + "k" * 40, ALLOWED_HOSTS=["testserver"], ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
    MIDDLEWARE=["serversession.integrations.django.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    SESSION_ENGINE="serversession.integrations.django", SERVERSESSION_STORE="memory://", USE_TZ=True, **EXTRA)
django.setup()
from django.http import JsonResponse
from django.urls import path

def whoami(request):
    raw = request.session.raw
    return JsonResponse({"user": request.user.username or None, "ended_because": raw.ended_because})

urlpatterns = [path("whoami", whoami)]
from serversession.integrations.django.backend import get_manager
"""


def run(extra: str, body: str) -> subprocess.CompletedProcess[str]:
    code = f"EXTRA = {extra}\n{SETUP}\n{textwrap.dedent(body)}"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_the_settings_reach_the_session_config() -> None:
    done = run(
        '{"SERVERSESSION_MAX_SESSIONS_PER_USER": 2, "SERVERSESSION_ON_LIMIT": "refuse",'
        ' "SERVERSESSION_CONFIG": {"max_sessions_per_user": 9, "rotation_grace": 5}}',
        """
        config = get_manager().config
        assert (config.max_sessions_per_user, config.on_limit, config.rotation_grace) == (2, "refuse", 5), config
        assert get_manager() is get_manager()
        """,
    )
    assert done.returncode == 0, done.stderr
    done = run("{}", "assert get_manager().config.max_sessions_per_user == 0")
    assert done.returncode == 0, done.stderr


def test_a_bad_cap_setting_is_a_configuration_error() -> None:
    done = run(
        '{"SERVERSESSION_MAX_SESSIONS_PER_USER": "two"}',
        """
        from serversession import ConfigurationError
        try:
            get_manager()
        except ConfigurationError as exc:
            assert "max_sessions_per_user" in str(exc)
        else:
            raise AssertionError("no ConfigurationError")
        """,
    )
    assert done.returncode == 0, done.stderr


def test_login_beyond_the_cap_signs_the_least_recently_used_device_out() -> None:
    done = run(
        '{"SERVERSESSION_MAX_SESSIONS_PER_USER": 1}',
        """
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from django.test import Client
        call_command("migrate", verbosity=0)
        User.objects.create_user("alice", password="pw")
        first, second = Client(), Client()
        assert first.login(username="alice", password="pw")
        assert first.get("/whoami").json() == {"user": "alice", "ended_because": None}
        assert second.login(username="alice", password="pw")
        assert second.get("/whoami").json()["user"] == "alice"
        assert first.get("/whoami").json() == {
            "user": None, "ended_because": "signed out because you signed in on another device"}
        assert len(get_manager().list_sessions(str(User.objects.get().pk))) == 1
        """,
    )
    assert done.returncode == 0, done.stderr
