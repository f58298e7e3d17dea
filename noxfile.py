"""``nox``: the fast test subset on the lowest and the highest Python we support.

``./dev test`` runs everything on one Python. This runs the part that needs no
database server or browser (the core, the memory and SQLite stores, the store
conformance suite against those two, the framework integrations, the package
checks) on Python 3.10 and 3.13, each in a fresh virtualenv with the newest
framework versions that Python allows, so a change that only breaks on one end
of the range shows up. ``nox -R`` reuses the virtualenvs (no install) for a
quick second run; arguments after ``--`` go to pytest (``nox -- -x``).

nox looks for ``python3.10`` and ``python3.13`` on ``PATH``. With pyenv, make
both visible for the one command without touching the global setting:
``PYENV_VERSION=3.10.13:3.13.0 nox``.
"""

from __future__ import annotations

import nox

#: The lowest and highest Python of ``requires-python`` that we test.
PYTHONS = ["3.10", "3.13"]
#: The fast subset: no PostgreSQL, Redis Cluster or browser.
FAST = ["tests/core", "tests/stores/test_memory.py", "tests/stores/test_sqlite.py", "tests/integrations",
        "tests/test_package.py"]  # fmt: skip
#: The conformance suite against the stores that need no server.
CONFORMANCE = ["tests/stores/test_conformance.py", "-k", "memory or sqlite"]

nox.options.sessions = ["fast"]


@nox.session(python=PYTHONS)
def fast(session: nox.Session) -> None:
    """The fast subset on one Python, in two pytest runs (``-k`` would filter both)."""
    # --prefer-binary: atheris 3 ships no wheel for 3.10 and its sdist needs clang and
    # libFuzzer; 2.3 has one. The frameworks are pure-Python wheels either way, so each
    # Python still gets the newest release it allows.
    session.install("--prefer-binary", "-e", ".[test]")
    pytest = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    session.run(*pytest, *FAST, *session.posargs)
    session.run(*pytest, *CONFORMANCE, *session.posargs)
