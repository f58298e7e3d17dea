"""The package root: every public name resolves, and the optional stores load lazily."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import serversession

ROOT = Path(__file__).resolve().parent.parent


def test_every_exported_name_resolves() -> None:
    for name in [*serversession.__all__, "RedisStore", "PostgresStore"]:
        assert getattr(serversession, name) is not None, name
    assert {"RedisStore", "PostgresStore"} <= set(dir(serversession))


def test_a_star_import_needs_no_optional_driver() -> None:
    code = (
        "import sys\n"
        "from serversession import *\n"
        "assert SessionManager and MemoryStore\n"
        "assert not {'redis', 'psycopg', 'psycopg_pool'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_wheel_installs_without_extras_and_imports(tmp_path: Path) -> None:
    """The wheel built from the repo installs in a fresh venv with no extra and no
    dependency, and ``import serversession`` works there (the core needs nothing)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
                   check=True, timeout=300)  # fmt: skip
    wheel = next(wheels.glob("serversession-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-index",
                    str(wheel)], check=True, timeout=300)  # fmt: skip
    code = (
        "import serversession, sys\n"
        "from serversession import MemoryStore, SessionManager, SQLiteStore\n"
        "assert 'site-packages' in serversession.__file__, serversession.__file__\n"
        "assert not {'redis', 'psycopg', 'starlette', 'flask', 'django'} & set(sys.modules)\n"
    )
    subprocess.run([str(python), "-c", code], check=True, timeout=60, cwd=tmp_path)


def test_importing_the_package_needs_no_optional_driver() -> None:
    """``import serversession`` must work with only the core installed: redis-py and
    psycopg are imported when RedisStore / PostgresStore are first used."""
    code = (
        "import sys, serversession\n"
        "assert not {'redis', 'psycopg', 'psycopg_pool'} & set(sys.modules), sorted(sys.modules)\n"
        "from serversession import RedisStore, PostgresStore\n"
        "assert RedisStore.__module__ == 'serversession.stores.redis'\n"
        "assert PostgresStore.__module__ == 'serversession.stores.postgres'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        serversession.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_the_authentication_controls_are_public() -> None:
    from serversession import ReauthenticationRequired, Session, SessionError, SessionManager

    assert "ReauthenticationRequired" in serversession.__all__
    assert issubclass(ReauthenticationRequired, SessionError)
    for name in ("authenticated_at", "reauthenticated", "require_recent_auth", "credential_changed",
                 "acredential_changed"):  # fmt: skip
        assert getattr(Session, name).__doc__, name
    assert SessionManager.credential_changed.__doc__
    assert serversession.AsyncSessionManager.acredential_changed.__doc__


def test_the_session_limit_error_is_exported_in_the_error_tree() -> None:
    assert "SessionLimitError" in serversession.__all__
    assert issubclass(serversession.SessionLimitError, serversession.SessionError)
    assert not issubclass(serversession.SessionLimitError, serversession.StoreError)  # a refusal, not a failure
