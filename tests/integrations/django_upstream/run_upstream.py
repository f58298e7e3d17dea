"""Run Django's own session tests against ``SESSION_ENGINE = "serversession.django"``.

``python run_upstream.py UPSTREAM STORE_URL OUT_JSON``: ``UPSTREAM`` is a folder
holding ``sessions_tests/`` from Django's source release (the wheel ships no
tests); the script binds ``SessionTestsMixin`` to our ``SessionStore`` and runs
it and ``SessionMiddlewareTests`` (which reads ``SESSION_ENGINE``) with Django's
test runner on the store at ``STORE_URL``, then writes each test's outcome to
``OUT_JSON`` as ``{"Class.test": {"outcome": ..., "detail": ...}}``. Deciding
what may fail is the caller's job (tests/integrations/test_django_upstream.py).
"""

from __future__ import annotations

import json
import sys
import traceback
import unittest
from typing import Any

UPSTREAM, STORE_URL, OUT = sys.argv[1:4]
sys.path.insert(0, UPSTREAM)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    SECRET_KEY="django-upstream-suite-only-" + "k" * 40,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",  # the upstream module imports its model
        "sessions_tests",  # and its own custom session model
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    ROOT_URLCONF=__name__,
    USE_TZ=True,
    SESSION_ENGINE="serversession.django",
    SERVERSESSION_STORE=STORE_URL,
)
urlpatterns: list[Any] = []
django.setup()

from django.test import SimpleTestCase  # noqa: E402
from django.test.runner import DiscoverRunner  # noqa: E402
from sessions_tests import tests as upstream  # noqa: E402

from serversession.django.backend import SessionStore  # noqa: E402


class SessionTestsMixin(upstream.SessionTestsMixin, SimpleTestCase):  # type: ignore[misc]
    """Django's engine-independent session tests, bound to our engine."""

    backend = SessionStore


class SessionMiddlewareTests(upstream.SessionMiddlewareTests):  # type: ignore[misc]
    """Django's middleware tests; the middleware builds sessions from ``SESSION_ENGINE`` (ours)."""


class Recorder(unittest.TestResult):
    """Each test's outcome under its ``Class.test`` name; a failing subtest fails its test."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, dict[str, str]] = {}

    @staticmethod
    def name(test: unittest.TestCase) -> str:
        return f"{type(test).__name__}.{test._testMethodName}"

    def _set(self, test: unittest.TestCase, outcome: str, detail: str = "") -> None:
        previous = self.outcomes.get(self.name(test))
        if previous is None or previous["outcome"] == "passed":
            self.outcomes[self.name(test)] = {"outcome": outcome, "detail": detail}

    @staticmethod
    def _detail(err: Any) -> str:
        lines = traceback.format_exception(*err)
        return "".join(lines)[-1500:]

    def addSuccess(self, test: unittest.TestCase) -> None:
        self._set(test, "passed")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        self._set(test, "failed", self._detail(err))

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        self._set(test, "failed", self._detail(err))

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        self._set(test, "skipped", reason)

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        if err is not None:
            self._set(test, "failed", self._detail(err))


def main() -> None:
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in (SessionTestsMixin, SessionMiddlewareTests))
    runner = DiscoverRunner(verbosity=0, interactive=False)
    runner.setup_test_environment()
    databases = runner.setup_databases()
    result = Recorder()
    try:
        suite.run(result)
    finally:
        runner.teardown_databases(databases)
        runner.teardown_test_environment()
    with open(OUT, "w", encoding="utf-8") as out:
        json.dump(result.outcomes, out, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
