"""Django's own session test suite, run against ``SESSION_ENGINE = "serversession.integrations.django"``.

Django's wheel ships no tests, so the source release of exactly the installed
Django version is fetched once with ``pip download`` and cached beside the
virtualenv (``<venv>/django-upstream/<version>/``); only its
``tests/sessions_tests`` is extracted, and none of it is committed here.
``django_upstream/run_upstream.py`` binds ``SessionTestsMixin`` to our engine and
runs it and ``SessionMiddlewareTests`` under Django's test runner in a
subprocess, one per store.

What does not pass is listed in ``EXPECTED_FAILURES`` with its reason. The test
fails when a test not listed fails, and when a listed one passes (or no longer
exists), so the list stays true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path, PurePosixPath

import django
import pytest

RUNNER = Path(__file__).parent / "django_upstream" / "run_upstream.py"
REPO = Path(__file__).resolve().parents[2]

#: Upstream tests our engine fails on purpose, each with the reason (the same on every store).
EXPECTED_FAILURES = {
    "SessionTestsMixin.test_session_key_valid_string_saved": (
        "strict mode: a client-chosen key ('12345678') is never adopted; only well-formed, server-made IDs are keys"
    ),
    "SessionMiddlewareTests.test_empty_session_saved": (
        "reads the session back through django.contrib.sessions' database model, which our engine does not use"
    ),
}


def _cache_root() -> Path:
    """Beside the virtualenv when there is one (it lives as long as the installed Django), else test-artifacts/."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "django-upstream"
    return REPO / "test-artifacts" / "django-upstream"


def _download_sdist(version: str, into: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", f"django=={version}", "--no-binary", ":all:", "--no-deps",
         "--disable-pip-version-check", "-q", "-d", str(into)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    found = sorted(into.glob("*.tar.gz"))
    if done.returncode != 0 or not found:
        pytest.fail(f"could not download Django {version}'s source release:\n{done.stdout}\n{done.stderr}")
    return found[0]


def _extract_sessions_tests(sdist: Path, dest: Path) -> None:
    """Only ``tests/sessions_tests/``, file by file, refusing any path that would leave ``dest``."""
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = PurePosixPath(member.name).parts
            if len(parts) < 4 or parts[1:3] != ("tests", "sessions_tests") or not member.isfile():
                continue
            relative = PurePosixPath(*parts[2:])
            if ".." in relative.parts:
                raise ValueError(f"unsafe path in {sdist.name}: {member.name}")
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())


@pytest.fixture(scope="module")
def upstream_tests() -> Path:
    """A folder holding Django's ``sessions_tests`` package for the installed version (cached)."""
    version = django.__version__
    root = _cache_root()
    ready = root / version
    if (ready / "sessions_tests" / "tests.py").is_file():
        return ready
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as work:
        staging = Path(work) / "tests"
        _extract_sessions_tests(_download_sdist(version, Path(work)), staging)
        if not (staging / "sessions_tests" / "tests.py").is_file():
            pytest.fail(f"Django {version}'s source release has no tests/sessions_tests/tests.py")
        try:
            os.rename(staging, ready)  # atomic: a concurrent run either sees all of it or none
        except OSError:
            if not (ready / "sessions_tests" / "tests.py").is_file():
                raise
    return ready


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
def test_djangos_session_suite_passes_but_for_the_listed_tests(
    store: str, upstream_tests: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if store == "memory":
        url = "memory://"
    elif store == "sqlite":
        url = f"sqlite:///{tmp_path / 'sessions.sqlite3'}"
    else:
        url = request.getfixturevalue("fresh_redis").url
    out = tmp_path / "outcomes.json"
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(upstream_tests), url, str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and out.is_file(), f"the upstream run broke:\n{done.stdout}\n{done.stderr[-4000:]}"
    outcomes: dict[str, dict[str, str]] = json.loads(out.read_text())
    failed = {name for name, o in outcomes.items() if o["outcome"] == "failed"}
    unexpected = {name: outcomes[name]["detail"] for name in sorted(failed - EXPECTED_FAILURES.keys())}
    fixed = sorted(name for name in EXPECTED_FAILURES if name not in failed)
    counts = Counter(o["outcome"] for o in outcomes.values())
    print(f"Django {django.__version__} sessions_tests on {store}: {counts['passed']} passed, "
          f"{len(failed & EXPECTED_FAILURES.keys())} expected failures, {counts['skipped']} skipped")  # fmt: skip
    assert not unexpected, "upstream tests failing that EXPECTED_FAILURES does not list:\n" + "\n".join(
        f"--- {name}\n{detail}" for name, detail in unexpected.items()
    )
    assert not fixed, f"listed as failing but passing (or gone): remove them from EXPECTED_FAILURES: {fixed}"
    assert counts["passed"] > 50, counts  # the suite really ran
