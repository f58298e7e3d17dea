"""The ``serversession`` command, run as a real process against a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serversession import SessionConfig, SessionManager, SQLiteStore, open_store
from serversession.core.transport import IncomingToken


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serversession", *args], capture_output=True, text=True, timeout=60, check=False
    )


def seed(path: Path, users: list[str | None]) -> list[str]:
    manager = SessionManager(SQLiteStore(path), SessionConfig())
    ids = []
    for user in users:
        s = manager.load(IncomingToken(None, via_header=False), user_agent="pytest", ip="127.0.0.1")
        s["cart"] = {"sku": 1}
        s.user = user
        ids.append(manager.save(s).set_cookies[0].split(";")[0].split("=", 1)[1])
    manager.store.close()
    return ids


def test_list_show_revoke_stats(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    ids = seed(db, ["alice", "alice", "bob", None])
    url = f"sqlite:///{db}"
    rows = [json.loads(line) for line in cli("sessions", "list", "--store", url, "--json").stdout.splitlines()]
    assert len(rows) == 4 and {r["user"] for r in rows} == {"alice", "bob", None}
    assert not any(i in json.dumps(rows) for i in ids)  # handles only, never IDs
    alice = cli("sessions", "list", "--store", url, "--user", "alice")
    assert alice.returncode == 0 and "2 session(s)" in alice.stdout
    assert "0 session(s)" in cli("sessions", "list", "--store", url, "--older-than", "3600").stdout
    handle = rows[0]["handle"]
    shown = json.loads(cli("sessions", "show", handle, "--store", url).stdout)
    assert shown["handle"] == handle and shown["keys"] == ["cart"]
    assert cli("sessions", "revoke", handle, "--store", url).stdout.strip() == "revoked 1 session"
    assert cli("sessions", "show", handle, "--store", url).returncode == 1
    assert "revoked" in cli("sessions", "revoke", "--user", "alice", "--store", url).stdout
    stats = json.loads(cli("stats", "--store", url, "--json").stdout)
    assert stats["sessions"] == 2 and stats["users"] == 1 and stats["anonymous_sessions"] == 1


def test_gc_and_migrate_resume(tmp_path: Path) -> None:
    src, dst = tmp_path / "a.db", tmp_path / "b.db"
    ids = seed(src, ["alice", None, "bob"])
    assert cli("gc", "--store", f"sqlite:///{src}").stdout.strip() == "purged 0 expired session(s)"
    first = cli("migrate", "--from", f"sqlite:///{src}", "--to", f"sqlite:///{dst}")
    assert "copied 3 session(s), 0 already present" in first.stdout
    again = cli("migrate", "--from", f"sqlite:///{src}", "--to", f"sqlite:///{dst}")
    assert "copied 0 session(s), 3 already present" in again.stdout
    moved = SessionManager(SQLiteStore(dst))
    session = moved.load(IncomingToken(ids[0], via_header=False))
    assert session["cart"] == {"sku": 1} and session.user == "alice"
    assert len(moved.list_sessions("alice")) == 1
    moved.store.close()


def test_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    result = cli("sessions", "list", "--store", "nosuch://x")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "unknown store URL" in result.stderr
    result = cli("stats", "--store", "sqlite:///")
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.parametrize("target", ["fresh_redis", "fresh_cluster", "postgres_server"])
def test_migrate_from_sqlite_to_a_server_store_keeps_every_session(
    tmp_path: Path, request: pytest.FixtureRequest, target: str
) -> None:
    """The documented way out of one machine: SQLite to Redis, Redis Cluster or PostgreSQL."""
    src = tmp_path / "a.db"
    ids = seed(src, ["alice", None, "bob", "alice"])
    url = request.getfixturevalue(target).url
    moved = cli("migrate", "--from", f"sqlite:///{src}", "--to", url)
    assert "copied 4 session(s), 0 already present" in moved.stdout, moved.stdout + moved.stderr
    manager = SessionManager(open_store(url))
    try:
        session = manager.load(IncomingToken(ids[0], via_header=False))
        assert session["cart"] == {"sku": 1} and session.user == "alice"
        assert len(manager.list_sessions("alice")) == 2
    finally:
        manager.store.close()


def test_demo_help_documents_the_insecure_cookie_flag() -> None:
    shown = cli("demo", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "--insecure-cookie" in text and "Secure" in text and "SERVERSESSION_INSECURE_COOKIE" in text
    assert "default: off" in text


def test_demo_refuses_an_unreadable_insecure_cookie_setting(tmp_path: Path) -> None:
    env = {**os.environ, "SERVERSESSION_INSECURE_COOKIE": "perhaps"}
    result = subprocess.run(
        [sys.executable, "-m", "serversession", "demo", "--store", "memory://", "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "SERVERSESSION_INSECURE_COOKIE" in result.stderr and "Traceback" not in result.stderr
