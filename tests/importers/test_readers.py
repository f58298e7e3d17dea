"""The readers of other frameworks' sessions: plain data in, everything else refused by key, nothing
unpickled. Django's database reader on a real SQLite file; the Redis readers on the run's real
Redis server, fed records written the way Django and Flask-Session write them."""

from __future__ import annotations

import pickle
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from django.core import signing

from serversession.exceptions import ConfigurationError, StoreUnavailableError
from serversession.importers._pickle import UnsafePickleError, plain_loads
from serversession.importers.base import Expired, LegacySession, Refused, encode_data
from serversession.importers.django_cache import DjangoCacheSource
from serversession.importers.django_db import DjangoDbSource
from serversession.importers.flasksession import FlaskSessionSource
from serversession.importers.runner import open_source

SECRET = "django-insecure-test-secret-key-for-imports"
SALT = "django.contrib.sessions.SessionStore"
ran: list[str] = []


def _boom() -> None:
    ran.append("code ran")


class Boom:
    """A pickle that runs code when loaded, as a hostile cache entry would."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _boom, ()


class PickleSerializer:
    """What Django's PickleSerializer (removed in 5.0) wrote."""

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> Any:  # pragma: no cover - never called
        raise AssertionError


def django_data(obj: Any, serializer: Any = signing.JSONSerializer, key: str = SECRET) -> str:
    signer = signing.TimestampSigner(key=key, salt=SALT, fallback_keys=[])
    return str(signer.sign_object(obj, serializer=serializer, compress=True))


def django_table(path: Path, rows: list[tuple[str, str, datetime]]) -> str:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE django_session (session_key varchar(40) PRIMARY KEY, session_data text, "
                   "expire_date datetime)")  # fmt: skip
        db.executemany("INSERT INTO django_session VALUES (?, ?, ?)",
                       [(k, d, e.strftime("%Y-%m-%d %H:%M:%S.%f")) for k, d, e in rows])  # fmt: skip
    return f"django-db://{path}"


def items_of(source: Any) -> list[Any]:
    return [item for batch, _ in source.batches(None, time.time()) for item in batch]


def test_the_plain_unpickler_builds_data_and_runs_nothing() -> None:
    assert plain_loads(pickle.dumps({"a": [1, 2.5, "x", None, True, (1,), b"b"]})) == {
        "a": [1, 2.5, "x", None, True, (1,), b"b"]
    }
    for hostile in (Boom(), datetime.now(timezone.utc), {"nested": Boom()}):
        with pytest.raises(UnsafePickleError):
            plain_loads(pickle.dumps(hostile))
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        plain_loads(b"not a pickle")
    assert ran == []


def test_django_db_rows_verified_decoded_and_bound_to_their_user(tmp_path: Path) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=1)
    earlier = datetime.now(timezone.utc) - timedelta(minutes=1)
    url = django_table(tmp_path / "db.sqlite3", [
        ("a" * 32, django_data({"_auth_user_id": "7", "cart": [1]}), later),
        ("b" * 32, django_data({"cart": []}), earlier),
        ("c" * 32, django_data({"x": Boom()}, PickleSerializer), later),
        ("d" * 32, django_data({"x": 1}, key="another project's key"), later),
    ])  # fmt: skip
    source = DjangoDbSource(url, SECRET, batch=2)
    assert source.total() == 4
    found = items_of(source)
    source.close()
    first = found[0]
    assert isinstance(first, LegacySession) and first.token == "a" * 32 and first.user == "7"
    assert first.data == {"_auth_user_id": "7", "cart": [1]} and abs(first.expires_at - later.timestamp()) < 1
    assert isinstance(found[1], Expired)
    assert isinstance(found[2], Refused) and "not JSON" in found[2].reason and found[2].label == "cccccccc..."
    assert isinstance(found[3], Refused) and "signature" in found[3].reason
    assert ran == []


def test_django_db_resumes_after_a_cursor(tmp_path: Path) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=1)
    url = django_table(tmp_path / "db.sqlite3", [(c * 32, django_data({"n": c}), later) for c in "abcde"])
    source = DjangoDbSource(url, SECRET, batch=2)
    batches = list(source.batches(None, time.time()))
    assert [len(b) for b, _ in batches] == [2, 2, 1] and batches[-1][1] is None
    rest = [i.token for b, _ in source.batches(batches[0][1], time.time()) for i in b]
    assert rest == ["c" * 32, "d" * 32, "e" * 32]


def test_bad_source_urls_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown import source"):
        open_source("mysql://x/y", SECRET, 60)
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        open_source(f"django-db://{tmp_path}/none.sqlite3", None, 60)
    with pytest.raises(StoreUnavailableError, match="django_session"):
        open_source(f"django-db://{tmp_path}/none.sqlite3", SECRET, 60)
    with pytest.raises(ConfigurationError, match="unknown django-db option"):
        open_source(f"django-db://{tmp_path}/x.sqlite3?tabel=x", SECRET, 60)
    with pytest.raises(ConfigurationError, match="flask-session"):
        open_source("flask-session+http://127.0.0.1:1/0", None, 60)
    with pytest.raises(StoreUnavailableError):
        open_source("flask-session+redis://127.0.0.1:1/0", None, 60)


def test_json_refuses_what_it_cannot_hold_exactly() -> None:
    item = LegacySession("t" * 32, "tttttttt...", {"ok": 1, "tags": {"a", "b"}}, time.time() + 60)
    refused = encode_data(item)
    assert isinstance(refused, Refused) and "'tags'" in refused.reason


def test_django_cache_entries_read_as_plain_data_only(redis_server: Any) -> None:
    with redis_server.client() as r:
        r.select(3)
        r.flushdb()
        prefix = ":1:django.contrib.sessions.cache"
        r.set(prefix + "a" * 32, pickle.dumps({"_auth_user_id": "5", "n": 1}), ex=600)
        r.set(prefix + "b" * 32, pickle.dumps({"when": datetime.now(timezone.utc)}), ex=600)
        r.set(prefix + "c" * 32, pickle.dumps(Boom()), ex=600)
        r.set("unrelated", b"x")
    source = DjangoCacheSource(f"django-cache+redis://127.0.0.1:{redis_server.port}/3", 3600, batch=1)
    found = {i.label: i for i in items_of(source)}
    source.close()
    assert set(found) == {"aaaaaaaa...", "bbbbbbbb...", "cccccccc..."}
    good = found["aaaaaaaa..."]
    assert isinstance(good, LegacySession) and good.user == "5" and good.token == "a" * 32
    assert 0 < good.expires_at - time.time() <= 600
    assert isinstance(found["bbbbbbbb..."], Refused) and "datetime" in found["bbbbbbbb..."].reason  # type: ignore[union-attr]
    assert isinstance(found["cccccccc..."], Refused)
    assert ran == []


def test_flask_session_records_decoded_with_msgspec_and_unknown_types_refused(redis_server: Any) -> None:
    sid = "F" * 43
    with redis_server.client() as r:
        r.select(4)
        r.flushdb()
        enc = msgspec.msgpack.Encoder()
        r.set("session:" + sid, enc.encode({"_permanent": True, "_user_id": "ann", "n": [1]}), ex=900)
        r.set("session:" + "G" * 43, enc.encode({"when": datetime.now(timezone.utc)}), ex=900)  # a timestamp ext
        r.set("session:" + "H" * 43, enc.encode({"ext": msgspec.msgpack.Ext(5, b"??")}), ex=900)
        r.set("session:" + "I" * 43, pickle.dumps({"old": Boom()}), ex=900)
        r.set("session:" + "J" * 43, b'{"json": true}', ex=900)
    source = FlaskSessionSource(f"flask-session+redis://127.0.0.1:{redis_server.port}/4", None, 3600)
    found = {i.label[:1]: i for i in items_of(source)}
    source.close()
    good = found["F"]
    assert isinstance(good, LegacySession) and good.user == "ann" and good.persistent and good.token == sid
    assert isinstance(encode_data(found["G"]), Refused)  # type: ignore[arg-type]
    assert isinstance(encode_data(found["H"]), Refused)  # type: ignore[arg-type]
    assert isinstance(found["I"], Refused) and "pickled" in found["I"].reason
    assert isinstance(found["J"], LegacySession) and found["J"].data == {"json": True}
    assert ran == []


def test_a_signed_flask_session_cookie_is_filed_under_its_signed_value(redis_server: Any) -> None:
    from itsdangerous import Signer

    sid = "K" * 43
    with redis_server.client() as r:
        r.select(5)
        r.flushdb()
        r.set("app:" + sid, msgspec.msgpack.encode({"x": 1}), ex=900)
    url = f"flask-session+redis://127.0.0.1:{redis_server.port}/5?key_prefix=app:&signed=1"
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        FlaskSessionSource(url, None, 3600)
    source = FlaskSessionSource(url, "flask secret", 3600)
    (item,) = items_of(source)
    source.close()
    expected = Signer("flask secret", salt="flask-session", key_derivation="hmac").sign(sid.encode()).decode()
    assert isinstance(item, LegacySession) and item.token == expected


def test_django_db_on_postgresql(postgres_server: Any) -> None:
    import uuid

    import psycopg

    table = f"django_session_{uuid.uuid4().hex[:8]}"
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    with psycopg.connect(postgres_server.url, autocommit=True) as db:
        db.execute(f"CREATE TABLE {table} (session_key varchar(40) PRIMARY KEY, session_data text NOT NULL, "
                   "expire_date timestamptz NOT NULL)")  # fmt: skip
        db.execute(f"INSERT INTO {table} VALUES (%s, %s, %s), (%s, %s, %s)",
                   ("q" * 32, django_data({"_auth_user_id": 3}), later,
                    "r" * 32, django_data({"x": 1}), datetime.now(timezone.utc) - timedelta(seconds=5)))  # fmt: skip
    url = postgres_server.url.replace("postgresql://", "django-db+postgresql://", 1)
    source = open_source(f"{url}{'&' if '?' in url else '?'}table={table}", SECRET, 60)
    try:
        found = items_of(source)
        assert source.total() == 2
    finally:
        source.close()
    assert isinstance(found[0], LegacySession) and found[0].user == "3" and found[0].data == {"_auth_user_id": 3}
    assert abs(found[0].expires_at - later.timestamp()) < 1e-3
    assert isinstance(found[1], Expired)
