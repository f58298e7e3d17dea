"""``nox``: the fast test subset on the lowest and the highest Python we support.

``./dev test`` runs everything on Python 3.11, then this: the core, the memory
and SQLite stores, the store conformance suite against those two, every
integration's in-process tests, Django's upstream session suite and the package
checks, on Python 3.10 and 3.13, each in a fresh virtualenv (made by uv, in
seconds) with the newest framework versions that Python allows, so a change that
only breaks on one end of the range shows up. ``nox -R`` reuses the virtualenvs
(no install) for a quick second run; arguments after ``--`` go to pytest
(``nox -- -x``).

nox looks for ``python3.10`` and ``python3.13`` on ``PATH``; ``./dev test`` puts
pyenv's interpreters there when it finds them. By hand:
``PYENV_VERSION=3.10.13:3.13.0 nox``.
"""

from __future__ import annotations

import nox

#: The lowest and highest Python of ``requires-python`` that we test.
PYTHONS = ["3.10", "3.13"]
#: The fast subset: no PostgreSQL, Redis Cluster or browser. Every integration's in-process
#: tests and Django's upstream session suite run; the live-server behaviour suite and the
#: Django project walk (minutes, the same code paths) run on the main Python only.
FAST = ["tests/core", "tests/stores/test_memory.py", "tests/stores/test_sqlite.py", "tests/integrations",
        "--ignore=tests/integrations/test_behaviour.py", "--ignore=tests/integrations/test_django_project.py",
        "tests/test_package.py"]  # fmt: skip
#: The conformance suite against the stores that need no server.
CONFORMANCE = ["tests/stores/test_conformance.py", "-k", "memory or sqlite"]

nox.options.sessions = ["fast"]
#: uv makes the two fresh virtualenvs in seconds; plain virtualenv + pip where uv is absent.
nox.options.default_venv_backend = "uv|virtualenv"


@nox.session(python=PYTHONS)
def fast(session: nox.Session) -> None:
    """The fast subset on one Python, in two pytest runs (``-k`` would filter both)."""
    # The newest release of each framework this Python allows; atheris (the fuzzer) is
    # left out below 3.11 by its marker in pyproject.toml (no wheel there, and its sdist
    # needs clang and libFuzzer).
    session.install("pip", "-e", ".[test]")  # pip: the package and Django-suite tests call it
    pytest = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    session.run(*pytest, *FAST, *session.posargs)
    session.run(*pytest, *CONFORMANCE, *session.posargs)
