"""Deserializing what a store holds: a corrupt record is a store error, never a crash.

Three ways a record goes bad, each once a 500 and now a 503:

1. meta that is JSON but not an object of strings (``[]``, ``{"c": [1]}``);
2. a data value that is not JSON text, found lazily on first access;
3. a ``"nan"`` timestamp: every comparison with NaN is false, so such a session
   would never time out.

The contract (``exceptions.py``, ``codec.decode_meta``'s docstring, STYLE habit 4):
such failures reach the application as ``CorruptRecordError``, a ``StoreError``
(a 503), never as a bare ``TypeError``/``ValueError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from servers import RedisServer
from serversession import SessionConfig, SessionManager
from serversession.core.ids import new_session_id, storage_key
from serversession.core.transport import IncomingToken
from serversession.demo.app import create_app
from serversession.exceptions import SessionError
from serversession.stores.redis import RedisStore
from serversession.stores.sqlite import SQLiteStore

SETTINGS = settings(max_examples=200, deadline=None, database=None)
json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["c", "s", "u", "x", "cart"]), inner,
                                                                 max_size=4),
    max_leaves=8,
).map(json.dumps)  # fmt: skip
any_text = st.one_of(json_text, st.text(max_size=40))


def read_everything(manager: SessionManager, session_id: str) -> None:
    """What a request does with a session: load it, read every key, check its timeouts."""
    session = manager.load(IncomingToken(session_id, via_header=True))
    for key in list(session):
        session.get(key)
    if not session.is_new:
        assert session.idle_expires_at == session.idle_expires_at, "a NaN deadline never expires"


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path_factory.mktemp("corrupt") / "s.db")
    yield store
    store.close()


@SETTINGS
@given(data=any_text, meta=any_text)
def test_a_corrupt_sqlite_row_is_a_store_error(sqlite_store: SQLiteStore, data: str, meta: str) -> None:
    session_id = new_session_id()
    conn = sqlite_store._conn()
    conn.execute(
        "INSERT INTO serversession (key, data, meta, user, expires_at) VALUES (?, ?, ?, NULL, ?)",
        (storage_key(session_id), data, meta, time.time() + 60),
    )
    manager = SessionManager(sqlite_store, SessionConfig())
    try:
        read_everything(manager, session_id)
    except SessionError:
        pass  # the documented outcome: a StoreError, answered 503


@pytest.fixture(scope="module")
def redis_store(redis_server: RedisServer) -> Iterator[RedisStore]:
    store = RedisStore(redis_server.url, prefix="corrupt:")
    yield store
    store.close()


@SETTINGS
@given(fields=st.dictionaries(st.sampled_from(["c", "s", "u", "x", "p", "d:cart", "d:x"]),
                              st.binary(max_size=30) | any_text.map(str.encode), min_size=1))  # fmt: skip
def test_a_corrupt_redis_hash_is_a_store_error(redis_store: RedisStore, fields: dict[str, bytes]) -> None:
    session_id = new_session_id()
    now = str(time.time()).encode()
    with redis.Redis.from_url(redis_store._url) as r:  # a valid record, then some fields replaced by anything
        r.hset(f"corrupt:s:{storage_key(session_id)}", mapping={"c": now, "s": now, **fields})
        r.expire(f"corrupt:s:{storage_key(session_id)}", 60)
    manager = SessionManager(redis_store, SessionConfig())
    try:
        read_everything(manager, session_id)
    except SessionError:
        pass


@pytest.mark.parametrize(
    ("data", "meta"),
    [
        ("{}", "[]"),
        ('{"cart": "{"}', None),
        ('{"cart": 5}', None),
        ("{}", '{"c": [1], "s": "1"}'),
    ],
)
def test_the_demo_answers_503_not_500_for_a_corrupt_row(tmp_path: Path, data: str, meta: str | None) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    # https: the demo's cookie is Secure, and the client's jar sends it back over https only
    with TestClient(create_app(store), base_url="https://testserver", raise_server_exceptions=False) as client:
        session_id = client.get("/api/session").cookies["__Host-session"]
        valid_meta = store._conn().execute("SELECT meta FROM serversession").fetchone()[0]
        store._conn().execute("UPDATE serversession SET data = ?, meta = ?", (data, meta or valid_meta))
        assert client.cookies.get("__Host-session") == session_id
        response = client.get("/cart")
        assert response.status_code == 503, response.text
