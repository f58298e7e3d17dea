"""``serversession import`` as an operator meets it: counts, refusals by key, exit codes, the
progress bar, resuming after an interruption, create-only reruns, clear errors for bad input.
Source: a Django ``django_session`` table in a real SQLite file; target: a SQLite store."""

from __future__ import annotations

import json
import pickle
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from django.core import signing

from serversession import SQLiteStore
from serversession.cli import main
from serversession.core.ids import storage_key
from serversession.importers import runner
from serversession.importers.django_db import DjangoDbSource

SECRET = "django-insecure-cli-import-test"


class _Pickle:
    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj)


def signed(obj: Any, serializer: Any = signing.JSONSerializer) -> str:
    signer = signing.TimestampSigner(key=SECRET, salt="django.contrib.sessions.SessionStore", fallback_keys=[])
    return str(signer.sign_object(obj, serializer=serializer, compress=True))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Five live sessions, one expired, one pickled; the secret in the default env var."""
    db = tmp_path / "project.sqlite3"
    live = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    gone = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = [(f"{c}" * 32, signed({"_auth_user_id": str(i), "n": i}), live) for i, c in enumerate("abcde")]
    rows += [("x" * 32, signed({"n": 0}), gone), ("p" * 32, signed({"n": 0}, _Pickle), live)]
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE django_session (session_key varchar(40) PRIMARY KEY, session_data text, "
                     "expire_date datetime)")  # fmt: skip
        conn.executemany("INSERT INTO django_session VALUES (?, ?, ?)", rows)
    monkeypatch.setenv("SERVERSESSION_IMPORT_SECRET_KEY", SECRET)
    return {"from": f"django-db://{db}", "to": f"sqlite:///{tmp_path}/target.sqlite3",
            "checkpoint": str(tmp_path / "cp.json")}  # fmt: skip


def run(project: dict[str, str], *extra: str) -> int:
    return main(["import", "--from", project["from"], "--to", project["to"], "--checkpoint", project["checkpoint"],
                 *extra])  # fmt: skip


def test_dry_run_counts_and_writes_nothing(project: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(project, "--dry-run") == 1  # one refused
    out = capsys.readouterr().out
    assert "would import 5 session(s), 1 skipped as expired, 1 refused" in out
    assert "refused pppppppp... its data is not JSON" in out and "p" * 32 not in out  # named, not revealed
    assert not Path(project["checkpoint"]).exists()
    store = SQLiteStore(project["to"].removeprefix("sqlite:///"))
    assert store.load(storage_key("a" * 32)) is None
    store.close()


def test_import_then_rerun_is_refused_then_restart_adds_nothing(
    project: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(project, "--progress") == 1
    captured = capsys.readouterr()
    assert "imported 5 session(s), 0 already present, 1 skipped as expired, 1 refused" in captured.out
    assert "importing [" in captured.err and "100%" in captured.err
    state = json.loads(Path(project["checkpoint"]).read_text())
    assert state["done"] and state["cursor"] is None and Path(project["checkpoint"]).stat().st_mode & 0o777 == 0o600
    assert run(project) == 2
    assert "finished; --restart" in capsys.readouterr().err
    assert run(project, "--restart") == 1
    assert "imported 0 session(s), 5 already present" in capsys.readouterr().out
    store = SQLiteStore(project["to"].removeprefix("sqlite:///"))
    found = store.load(storage_key("c" * 32))
    assert found is not None and found.meta.user == "2" and found.data["n"] == "2"
    store.close()


def test_an_interrupted_run_continues_from_its_checkpoint(project: dict[str, str]) -> None:
    source = DjangoDbSource(project["from"], SECRET, batch=2)
    target = SQLiteStore(project["to"].removeprefix("sqlite:///"))
    checkpoint = runner.Checkpoint(Path(project["checkpoint"]), source.kind)

    def interrupt(report: runner.Report, total: int | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run(source, target, time.time, checkpoint, interrupt)
    state = checkpoint.read()
    assert state is not None and not state["done"] and state["counts"]["imported"] == 2
    report = runner.run(source, target, time.time, checkpoint)
    assert (report.imported, report.present, report.expired, report.refused) == (5, 0, 1, 1)
    source.close()
    target.close()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("mysql://h/db", "unknown import source"),
        ("django-db:///nowhere/at/all.sqlite3", "cannot read the Django session table"),
        ("django-db:///x.sqlite3?table=drop;table", "plain identifiers"),
        ("django-cache+redis://127.0.0.1:1/0", "cannot reach"),
        ("flask-session+redis://127.0.0.1:1/0?signed=2", "signed is 0 or 1"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(
    source: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVERSESSION_IMPORT_SECRET_KEY", SECRET)
    assert main(["import", "--from", source, "--to", f"sqlite:///{tmp_path}/t.sqlite3",
                 "--checkpoint", str(tmp_path / "cp.json")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_missing_secret_key_is_named(project: dict[str, str], capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("SERVERSESSION_IMPORT_SECRET_KEY")
    assert run(project) == 2
    assert "SECRET_KEY" in capsys.readouterr().err
