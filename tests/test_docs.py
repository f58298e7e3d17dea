"""The documentation site: its examples run as written, and ``mkdocs build --strict`` passes.

A python block preceded by ``<!-- runnable -->`` on the getting-started pages
is executed as it stands (in a temporary directory, so its ``sqlite:///``
store lands there) and the app it defines is driven through the framework's
test client. Every other python block of the pages this file lists is compiled,
so a typo in a fragment fails here rather than in a reader's editor.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
#: Pages whose python blocks are checked here (the site's other pages hold fragments of larger code).
PAGES = ["index.md", "configuration.md", *(f"frameworks/{n}.md" for n in ("asgi", "flask", "django", "wsgi"))]
BLOCK = re.compile(
    r"^(?P<marker><!-- runnable -->\n)?(?P<indent>[ \t]*)```python[^\n]*\n(?P<code>.*?)^(?P=indent)```", re.S | re.M
)


def blocks(page: str) -> list[tuple[bool, str]]:
    """(runnable, source) of every python block of ``page``, dedented (tabs indent theirs)."""
    text = (DOCS / page).read_text()
    return [(bool(m.group("marker")), textwrap.dedent(m.group("code"))) for m in BLOCK.finditer(text)]


def run(page: str, index: int) -> dict[str, Any]:
    """Execute the ``index``-th runnable block of ``page``; return its namespace."""
    runnable = [code for marked, code in blocks(page) if marked]
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(runnable[index], f"docs/{page}", "exec"), namespace)
    return namespace


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # sqlite:///sessions.db is relative to the working directory


@pytest.mark.parametrize("page", PAGES)
def test_every_python_block_compiles(page: str) -> None:
    found = blocks(page)
    assert found, f"no python block found in {page}: did the fence change?"
    for _, code in found:
        compile(code, f"docs/{page}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_the_getting_started_pages_mark_their_examples_runnable() -> None:
    pages = ("asgi", "flask", "django", "wsgi")
    counts = {page: sum(marked for marked, _ in blocks(f"frameworks/{page}.md")) for page in pages}
    assert counts == {"asgi": 2, "flask": 1, "django": 1, "wsgi": 1}


def test_configuration_example(monkeypatch: pytest.MonkeyPatch) -> None:
    from serversession import SessionConfig

    monkeypatch.setenv("SESSION_KEYS", "a-new-key-of-32-bytes-0123456789 the-older-key-still-accepted")
    config = run("configuration.md", 0)["config"]
    assert isinstance(config, SessionConfig)
    assert config.signer is not None and config.cookie_name == "__Host-session"


def test_fastapi_example() -> None:
    from starlette.testclient import TestClient

    with TestClient(run("frameworks/asgi.md", 0)["app"], base_url="https://testserver") as client:
        csrf = client.get("/api/session").json()["csrf_token"]
        assert client.post("/api/cart").status_code == 403  # no token
        assert client.post("/api/cart", headers={"x-csrf-token": csrf}).json() == {"n": 1}
        rotated = client.post("/api/login", headers={"x-csrf-token": csrf}).json()["csrf_token"]
        assert rotated != csrf
        assert client.post("/api/cart", headers={"x-csrf-token": rotated}).json() == {"n": 2}
        client.post("/api/logout", headers={"x-csrf-token": rotated})
        fresh = client.get("/api/session").json()["csrf_token"]
        assert client.post("/api/cart", headers={"x-csrf-token": fresh}).json() == {"n": 1}


def test_starlette_example() -> None:
    from starlette.testclient import TestClient

    with TestClient(run("frameworks/asgi.md", 1)["app"], base_url="https://testserver") as client:
        assert [client.get("/").text for _ in range(2)] == ["visit 1", "visit 2"]


def test_flask_example() -> None:
    client = run("frameworks/flask.md", 0)["app"].test_client()
    https = {"base_url": "https://localhost"}  # the cookie is Secure

    def token(page: str) -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, page
        return found.group(1)

    page = client.get("/", **https).text
    assert page.startswith("You are not signed in")
    assert client.post("/login", data={"username": "alice"}, **https).status_code == 403
    client.post("/login", data={"username": "alice", "csrf_token": token(page)}, **https)
    page = client.get("/", **https).text
    assert page.startswith("Signed in as alice")
    client.post("/logout", data={"csrf_token": token(page)}, **https)
    assert client.get("/", **https).text.startswith("You are not signed in")


def test_wsgi_example() -> None:
    from werkzeug.test import Client

    client = Client(run("frameworks/wsgi.md", 0)["application"])
    visits = [client.get("/", base_url="https://localhost").get_data() for _ in range(2)]
    assert visits == [b"visit 1", b"visit 2"]


DJANGO_PROJECT = """
import sys
from django.conf import settings
from django.http import HttpResponse
from django.urls import path

namespace = {}
exec(compile(sys.stdin.read(), "docs/frameworks/django.md", "exec"), namespace)


def count(request):
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(f"visit {request.session['visits']}")


urlpatterns = [path("", count)]
settings.configure(
    **{name: value for name, value in namespace.items() if name.isupper()},
    SECRET_KEY="docs-example", ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"],
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.messages"],
)
import django

django.setup()
from django.test import Client

client = Client()
print([client.get("/", secure=True).content.decode() for _ in range(2)])
"""


def test_django_settings_example(tmp_path: Path) -> None:
    """The settings block configures a project whose views count visits (in a fresh process: Django configures once)."""
    settings_block = next(code for marked, code in blocks("frameworks/django.md") if marked)
    done = subprocess.run(
        [sys.executable, "-c", DJANGO_PROJECT], input=settings_block, capture_output=True, text=True,
        cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['visit 1', 'visit 2']"
    assert (tmp_path / "sessions.db").exists()  # the store the block names, not a default


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (the docs extra)")
def test_site_builds_strictly(tmp_path: Path) -> None:
    """No broken link, no missing page in the nav, no reference the API docs cannot find.

    Not ``--quiet``: it silences the warnings ``--strict`` counts, and the build then passes.
    """
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "reference" / "serversession" / "index.html").exists()
