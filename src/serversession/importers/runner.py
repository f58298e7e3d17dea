"""The shared import run: read a source, write create-only, keep a checkpoint, count.

Resumable in two ways that back each other up. The checkpoint file holds the
source's cursor after every batch written (replaced atomically, mode 0600: a
Django cursor is a session key), so a rerun after an interruption continues
from the last batch it finished. And every write is a *create*: a session
already in the target (imported by an earlier run, or the batch an interrupted
run had half written) answers TAKEN and is counted as already present, never
duplicated or overwritten with older data. A finished run leaves its
checkpoint marked done; running again needs ``restart`` (a second pass
imports only sessions the incumbent created meanwhile).

A dry run reads and classifies everything and writes nothing, not even the
checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import ConfigurationError
from ..stores.base import Store
from .base import Expired, LegacySession, Refused, Source, acceptable_token, encode_data, imported_commit

#: Most refusals listed one by one in a report (all of them are counted).
MAX_LISTED = 50


@dataclass
class Report:
    """What a run did (or, dry, would do)."""

    imported: int = 0
    present: int = 0
    expired: int = 0
    refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    refusals: list[Refused] = field(default_factory=list)
    done: bool = False

    def seen(self) -> int:
        """Records read so far."""
        return self.imported + self.present + self.expired + self.refused

    def as_json(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict (kept in the checkpoint)."""
        return {"imported": self.imported, "present": self.present, "expired": self.expired,
                "refused": self.refused, "reasons": dict(self.reasons)}  # fmt: skip


def open_source(url: str, secret_key: str | None, no_expiry_lifetime: float, batch: int = 500) -> Source:
    """The reader for a source URL (``django-db``, ``django-db+postgresql``,
    ``django-settings``, ``django-cache+redis``, ``flask-session+redis``; see ``docs/cli.md``).

    Raises :class:`ConfigurationError` naming the schemes for any other URL.
    """
    scheme = urlsplit(url).scheme if "://" in url or url.startswith("django-db:") else ""
    if scheme in ("django-db", "django-db+sqlite", "django-db+postgresql"):
        from .django_db import DjangoDbSource

        return DjangoDbSource(url, secret_key, batch)
    if url.startswith("django-settings:"):
        from .django_settings import open_settings_source

        source: Source = open_settings_source(url, secret_key, no_expiry_lifetime, batch)
        return source
    if scheme in ("django-cache+redis", "django-cache+rediss"):
        from .django_cache import DjangoCacheSource

        return DjangoCacheSource(url, no_expiry_lifetime, batch)
    if scheme in ("flask-session+redis", "flask-session+rediss"):
        from .flasksession import FlaskSessionSource

        return FlaskSessionSource(url, secret_key, no_expiry_lifetime, batch)
    raise ConfigurationError(
        f"unknown import source {url.split('://')[0]!r}; the sources are django-db:///PATH.sqlite3, "
        "django-db+postgresql://..., django-settings:package.settings, django-cache+redis://HOST:PORT/DB and "
        "flask-session+redis://HOST:PORT/DB"
    )


def default_checkpoint(source_url: str, target_url: str) -> Path:
    """The checkpoint file a run uses unless told otherwise: one per (source, target) pair."""
    digest = hashlib.sha256(f"{source_url}\n{target_url}".encode()).hexdigest()[:12]
    return Path(f".serversession-import-{digest}.json")


class Checkpoint:
    """The cursor and counts of a run, in a JSON file replaced atomically after each batch."""

    def __init__(self, path: Path, source_kind: str) -> None:
        self.path = path
        self.kind = source_kind

    def read(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none. Raises :class:`ConfigurationError` for a
        file that is not a checkpoint of this kind of source."""
        try:
            state = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the checkpoint {self.path}: {exc}") from exc
        if not isinstance(state, dict) or state.get("source") != self.kind:
            raise ConfigurationError(f"{self.path} is not a checkpoint of a {self.kind} import")
        return state

    def write(self, cursor: str | None, report: Report) -> None:
        """Save ``cursor`` and the counts (write a temporary file, then rename over)."""
        state = {"source": self.kind, "cursor": cursor, "done": report.done, "counts": report.as_json()}
        directory = self.path.parent if str(self.path.parent) else Path(".")
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".checkpoint-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(state, out)
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def run(
    source: Source,
    target: Store | None,
    now: Callable[[], float],
    checkpoint: Checkpoint | None,
    progress: Callable[[Report, int | None], None] | None = None,
    restart: bool = False,
) -> Report:
    """Import every live session of ``source`` into ``target`` (None: a dry run, nothing written).

    Raises :class:`ConfigurationError` when the checkpoint says an earlier run
    finished and ``restart`` is not set; store errors propagate (the checkpoint
    then holds the last batch fully written).
    """
    report = Report()
    cursor: str | None = None
    state = checkpoint.read() if checkpoint is not None and not restart else None
    if state is not None:
        if state.get("done"):
            raise ConfigurationError(f"the checkpoint {checkpoint.path if checkpoint else ''} says this import "
                                     "finished; --restart runs it again (only new sessions are added)")  # fmt: skip
        cursor = state.get("cursor")
        counts = state.get("counts") or {}
        report.imported, report.present = int(counts.get("imported", 0)), int(counts.get("present", 0))
        report.expired, report.refused = int(counts.get("expired", 0)), int(counts.get("refused", 0))
        report.reasons.update(counts.get("reasons") or {})
    total = source.total()
    for items, next_cursor in source.batches(cursor, now()):
        for item in items:
            _one(item, target, source.kind, now(), report)
        if checkpoint is not None and target is not None:
            checkpoint.write(next_cursor, report)
        if progress is not None:
            progress(report, total)
    report.done = True
    if checkpoint is not None and target is not None:
        checkpoint.write(None, report)
    return report


def _one(item: LegacySession | Refused | Expired, target: Store | None, kind: str, now: float, report: Report) -> None:
    if isinstance(item, LegacySession) and item.expires_at <= now:
        item = Expired(item.label)
    if isinstance(item, LegacySession) and not acceptable_token(item.token):
        item = Refused(item.label, "its cookie value has a shape serversession cannot accept")
    if isinstance(item, LegacySession):
        encoded = encode_data(item)
        if isinstance(encoded, Refused):
            item = encoded
        elif target is None:
            report.imported += 1
            return
        else:
            key, commit = imported_commit(item, encoded, kind, now)
            created = target.create(key, commit)
            if created:
                report.imported += 1
            else:
                report.present += 1
            return
    if isinstance(item, Expired):
        report.expired += 1
        return
    report.refused += 1
    report.reasons[_reason_kind(item.reason)] += 1
    if len(report.refusals) < MAX_LISTED:
        report.refusals.append(item)


def _reason_kind(reason: str) -> str:
    """A refusal's reason without the key it names, for the per-reason counts."""
    return reason.split(" (")[0] if reason.startswith("the value of") else reason
