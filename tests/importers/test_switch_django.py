"""Moving a real Django project to serversession without signing anyone out.

Alice signs in through Django's test client on Django's own engine (database
sessions on a SQLite file, or cache sessions on the run's real Redis server); the
import runs through the CLI entry point; the project switches its
``SESSION_ENGINE`` to serversession (``accept_imported``) and the same
``sessionid`` cookie is still alice's, with her cart. Its first response
rotates it to a server-made ID: the old value replayed afterwards is nobody.
Each phase is its own process, as Django's settings are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serversession.cli import main as cli
from serversession.core.ids import is_well_formed

APP = Path(__file__).with_name("djangoapp.py")
SECRET = "django-insecure-import-test-0123456789"


def phase(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(APP), *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    return result


def switch(env: dict[str, str], source: str, target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    phase(env, "setup")
    cookie = phase(env, "signin")["cookie"]
    assert phase(env, "check", cookie)["user"] == "alice"  # signed in on Django's own engine

    monkeypatch.setenv("SERVERSESSION_IMPORT_SECRET_KEY", SECRET)
    checkpoint = str(tmp_path / "checkpoint.json")
    assert cli(["import", "--from", source, "--to", target, "--dry-run", "--checkpoint", checkpoint]) == 0
    assert "would import 1 session(s), 0 skipped as expired, 0 refused" in capsys.readouterr().out
    assert cli(["import", "--from", source, "--to", target, "--checkpoint", checkpoint]) == 0
    assert "imported 1 session(s), 0 already present" in capsys.readouterr().out

    ours = {**env, "APP_ENGINE": "serversession", "SERVERSESSION_STORE": target}
    first = phase(ours, "check", cookie)
    assert first["user"] == "alice" and first["cart"] == ["tea", 2]
    rotated = first["cookie"]
    assert rotated and rotated != cookie and is_well_formed(rotated)  # rotated at the first response
    again = phase(ours, "check", rotated)
    assert again["user"] == "alice" and again["cart"] == ["tea", 2]
    assert phase(ours, "check", cookie)["user"] is None  # the old value replayed: nobody


def test_django_database_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    db = tmp_path / "project.sqlite3"
    env = {"APP_ENGINE": "db", "APP_DB": str(db), "APP_SECRET": SECRET}
    switch(env, f"django-db://{db}", f"sqlite:///{tmp_path}/sessions.sqlite3", tmp_path, monkeypatch, capsys)


def test_django_cache_sessions_on_redis(redis_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with redis_server.client() as r:
        for db in (6, 7):
            r.execute_command("SELECT", db)
            r.flushdb()
    location = f"redis://127.0.0.1:{redis_server.port}/6"
    env = {"APP_ENGINE": "cache", "APP_DB": str(tmp_path / "project.sqlite3"), "APP_SECRET": SECRET,
           "APP_REDIS": location}  # fmt: skip
    target = f"redis://127.0.0.1:{redis_server.port}/7"
    switch(env, f"django-cache+redis://127.0.0.1:{redis_server.port}/6", target, tmp_path, monkeypatch, capsys)


def test_django_sessions_found_through_the_settings_module(tmp_path: Path) -> None:
    db = tmp_path / "project.sqlite3"
    env = {"APP_ENGINE": "db", "APP_DB": str(db), "APP_SECRET": SECRET}
    phase(env, "setup")
    cookie = phase(env, "signin")["cookie"]
    target = f"sqlite:///{tmp_path}/sessions.sqlite3"
    clean = {k: v for k, v in os.environ.items() if k != "SERVERSESSION_IMPORT_SECRET_KEY"}  # the key from settings
    done = subprocess.run(
        [sys.executable, "-m", "serversession", "import", "--from", "django-settings:settings_for_import",
         "--to", target, "--checkpoint", str(tmp_path / "cp.json")],
        cwd=APP.parent, env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "imported 1 session(s)" in done.stdout
    ours = {**env, "APP_ENGINE": "serversession", "SERVERSESSION_STORE": target}
    assert phase(ours, "check", cookie)["user"] == "alice"
