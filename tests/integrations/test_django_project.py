"""A small Django project (apps/djproject), written the Django-docs way, under waitress.

``SESSION_ENGINE = "serversession.integrations.django"`` and ``SERVERSESSION_STORE`` are the
only session settings; Django's own SessionMiddleware, CSRF, ``authenticate`` /
``login`` / ``logout``, templates showing ``user.username``, the admin and
``manage.py clearsessions`` are used unchanged, on SQLite, Redis and Redis
Cluster stores. The last tests use the behaviour-suite Django app for what the
project's views do not do: ``set_expiry()`` enforced on the server, and a
``save()`` that creates the session sending its key.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from live_apps import DJANGO_PROJECT, LiveApp, serve, session_cookie

from serversession.core.ids import is_well_formed

PASSWORD = "correct horse battery staple"
CREATE_USERS = f"""
from django.contrib.auth.models import User
User.objects.create_superuser("admin", "admin@example.com", {PASSWORD!r})
print(User.objects.create_user("alice", password={PASSWORD!r}).pk)
"""


@dataclass
class Project:
    url: str
    env: dict[str, str]
    alice_pk: str

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=15)

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=DJANGO_PROJECT, env={**os.environ, **self.env},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip


def csrf_token(page: httpx.Response) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def sign_in(browser: httpx.Client, username: str = "alice") -> httpx.Response:
    token = csrf_token(browser.get("/login/"))
    data = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token}
    return browser.post("/login/", data=data)


def post(
    browser: httpx.Client, path: str, data: dict[str, str] | None = None, page: str = "/sessions/"
) -> httpx.Response:
    """POST a form the way a browser does: with the token from a page that renders one."""
    return browser.post(path, data={"csrfmiddlewaretoken": csrf_token(browser.get(page)), **(data or {})})


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database with an admin and alice, shared by the three store runs."""
    db = tmp_path_factory.mktemp("djproject") / "db.sqlite3"
    env = {**os.environ, "SS_DB": str(db), "SS_STORE": "memory://"}
    for args in (["migrate", "--verbosity", "0"], ["shell", "-c", CREATE_USERS]):
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=DJANGO_PROJECT, env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    return db


@pytest.fixture(scope="module", params=["sqlite", "redis", "cluster"])
def project(
    request: pytest.FixtureRequest, database: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Project]:
    workdir = tmp_path_factory.mktemp(f"djproject-{request.param}")
    if request.param == "sqlite":
        store = f"sqlite:///{workdir / 'sessions.sqlite3'}"
    else:
        store = request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster").url
    env = {"SS_DB": str(database), "SS_STORE": store}
    alice_pk = "2"  # created second, after the admin
    with serve("mysite.wsgi:application", workdir, env=env, cwd=DJANGO_PROJECT) as url:
        yield Project(url, env, alice_pk)


def test_login_cycles_the_key_and_logout_flushes(project: Project) -> None:
    with project.browser() as browser, project.browser() as replay:
        home = browser.get("/")
        assert "You are not logged in." in home.text and session_cookie(home, "sessionid") is None

        assert post(browser, "/visit/", page="/login/").status_code == 302  # an anonymous session
        before_login = browser.cookies["sessionid"]
        assert is_well_formed(before_login)

        assert sign_in(browser, "alice").status_code == 302
        signed_in = browser.cookies["sessionid"]
        assert signed_in != before_login  # login() cycled the key
        page = browser.get("/")
        assert "Hello, alice!" in page.text and "Visits: 1" in page.text  # data kept

        replay.cookies.set("sessionid", before_login, domain="127.0.0.1")
        assert "You are not logged in." in replay.get("/").text  # the pre-login ID is dead
        replay.cookies.set("sessionid", signed_in, domain="127.0.0.1")
        assert "Hello, alice!" in replay.get("/").text

        logged_out = post(browser, "/logout/", page="/")
        assert logged_out.status_code == 302 and "sessionid" not in browser.cookies
        assert "You are not logged in." in browser.get("/").text
        assert "You are not logged in." in replay.get("/").text  # flush() deleted it


def test_a_wrong_password_signs_nobody_in(project: Project) -> None:
    with project.browser() as browser:
        token = csrf_token(browser.get("/login/"))
        response = browser.post("/login/", data={"username": "alice", "password": "nope", "csrfmiddlewaretoken": token})
        assert response.status_code == 200 and "sessionid" not in browser.cookies


def test_cookie_settings_and_set_expiry(project: Project) -> None:
    with project.browser() as browser:
        response = sign_in(browser)
        cookie = session_cookie(response, "sessionid")
        assert cookie is not None
        for attribute in ("HttpOnly", "Path=/", "SameSite=Lax", "Max-Age=1209600"):  # Django's defaults
            assert attribute in cookie
        browser_close = post(browser, "/remember/", {"until": "browser-close"}, page="/")
        cookie = session_cookie(browser_close, "sessionid")
        assert cookie is not None and "Max-Age" not in cookie and "expires" not in cookie.lower()
        assert "Hello, alice!" in browser.get("/").text


def test_users_list_and_revoke_their_sessions(project: Project) -> None:
    with project.browser() as laptop, project.browser() as phone:
        sign_in(laptop)
        sign_in(phone)
        page = laptop.get("/sessions/").text
        assert page.count('class="session') >= 2 and page.count("session current") == 1
        assert post(laptop, "/sessions/").status_code == 302
        assert "You are not logged in." in phone.get("/").text
        assert "Hello, alice!" in laptop.get("/").text
        assert laptop.get("/sessions/").text.count('class="session') == 1


def test_admin_sign_in_and_revoke_action(project: Project) -> None:
    with project.browser() as admin, project.browser() as alice:
        sign_in(alice)
        assert admin.get("/admin/").status_code == 302
        login_page = admin.get("/admin/login/?next=/admin/")
        response = admin.post("/admin/login/?next=/admin/", data={
            "username": "admin", "password": PASSWORD, "next": "/admin/",
            "csrfmiddlewaretoken": csrf_token(login_page),
        })  # fmt: skip
        assert response.status_code == 302 and response.headers["location"] == "/admin/"
        assert "Site administration" in admin.get("/admin/").text

        changelist = admin.get("/admin/auth/user/")
        assert "revoke_sessions" in changelist.text
        response = admin.post("/admin/auth/user/", data={
            "action": "revoke_sessions", "_selected_action": project.alice_pk, "index": "0",
            "csrfmiddlewaretoken": csrf_token(changelist),
        })  # fmt: skip
        assert response.status_code == 302
        assert "session(s) revoked" in admin.get("/admin/auth/user/").text
        assert "You are not logged in." in alice.get("/").text
        assert "Site administration" in admin.get("/admin/").text  # the admin's own session is untouched


def test_clearsessions_runs(project: Project) -> None:
    done = project.manage("clearsessions")
    assert done.returncode == 0, done.stderr


# -- Django's session API on the server side, through the behaviour app under waitress ----------------


@pytest.fixture(scope="module")
def behaviour(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The behaviour-suite Django app on SQLite, with a 60 s idle timeout (SESSION_COOKIE_AGE)."""
    workdir = tmp_path_factory.mktemp("django-behaviour")
    env = {"SS_STORE": f"sqlite:///{workdir / 's.sqlite3'}", "SS_IDLE": "60", "SS_DB": str(workdir / "d.sqlite3")}
    with serve("behaviour_django:app", workdir, env=env) as url:
        yield LiveApp("django", url)


def test_save_on_a_new_session_sends_its_key(behaviour: LiveApp) -> None:
    """``if not request.session.session_key: request.session.save()`` must hand the new key
    to the browser, as Django's db and cache engines do (save() marks the session modified)."""
    browser = behaviour.browser()
    response = browser.post("/save-now")
    assert response.status_code == 200, response.text
    key = response.json()["key"]
    assert is_well_formed(key) and browser.session_id == key
    assert browser.post("/save-now").json()["key"] == key  # the browser's session, stored
    assert browser.post("/set/a", 1).status_code == 200 and browser.session_id == key


def test_set_expiry_is_enforced_on_the_server(behaviour: LiveApp) -> None:
    """A cookie replayed past the expiry the app set (a stolen one, or a client that
    ignores Max-Age) finds nothing: the server ends the session too."""

    def session_with(kind: str, seconds: float | None) -> str:
        browser = behaviour.browser()
        assert browser.post("/set/a", 1).status_code == 200
        response = browser.post("/expiry", {"kind": kind, "seconds": seconds})
        assert response.status_code == 200, response.text
        return response.json()["key"]

    def alive(key: str) -> bool:
        return behaviour.browser(key).value("a") == 1

    # 4 s: long enough that a loaded machine still checks them alive below, short enough to wait out.
    short = [session_with("int", 4), session_with("datetime", 4), session_with("timedelta", 4)]
    ended = [session_with("int", -10), session_with("datetime", -10), session_with("timedelta", -10)]
    default = [session_with("int", 0), session_with("none", None)]
    lifted = behaviour.browser()
    lifted.post("/set/a", 1)
    lifted.post("/expiry", {"kind": "int", "seconds": 1})
    lifted.post("/expiry", {"kind": "none"})  # back to the global policy
    default.append(lifted.session_id or "")
    assert not any(alive(key) for key in ended)  # ended at once
    assert all(alive(key) for key in short + default)
    time.sleep(4.3)
    assert not any(alive(key) for key in short)
    assert all(alive(key) for key in default)  # SESSION_COOKIE_AGE is 60 s


def test_set_expiry_in_the_past_answers_without_an_error_and_drops_the_cookie(behaviour: LiveApp) -> None:
    browser = behaviour.browser()
    browser.post("/set/a", 1)
    response = browser.post("/expiry", {"kind": "int", "seconds": -10})
    assert response.status_code == 200, response.text
    cookie = session_cookie(response, "sessionid")
    assert cookie is not None and "Max-Age=-10" in cookie
    assert browser.session_id is None and browser.value("a") is None
