"""The other app process of ``test_near_store.py``: a RedisStore with its own near cache.

Run as ``python near_store_worker.py <store url>`` (the URL says ``near_cache=1``);
it reads one command a line and answers ``ok <outcome>`` once its store
acknowledged it (``err <text>`` if it failed):

* ``create KEY USER TTL``: a signed-in session with a cart, living TTL seconds
* ``cart KEY JSON``: a data write (the cart)
* ``rotate OLD NEW``: a sign-in's rotation (OLD becomes a tombstone)
* ``delete KEY``: a sign-out
* ``revoke USER``: every session of USER ended, through the manager's revoke_user
* ``load KEY``: the cart this process reads (``-`` for none), through its near cache
* ``hits``: its near cache's hit count
"""

from __future__ import annotations

import sys
import time

from serversession.core.codec import SessionMeta, encode_meta
from serversession.core.records import Commit
from serversession.manager import SessionManager
from serversession.stores.redis import RedisStore


def signed_in(user: str, ttl: float) -> Commit:
    now = time.time()
    meta = encode_meta(SessionMeta(created_at=now, last_seen_at=now, user=user, csrf_secret="c"))
    return Commit(set_data={"cart": '["apple"]'}, meta=meta, expires_at=now + ttl, index_user=user,
                  absolute_at=now + 2 * ttl)  # fmt: skip


def run(store: RedisStore, line: str) -> str:
    op, *args = line.split()
    if op == "create":
        key, user, ttl = args
        return store.create(key, signed_in(user, float(ttl))).outcome.name
    if op == "cart":
        key, text = args
        return store.commit(key, Commit(set_data={"cart": text})).outcome.name
    if op == "rotate":
        old, new = args
        return store.rotate(old, new, Commit(expires_at=time.time() + 60), grace=30).outcome.name
    if op == "delete":
        return str(store.delete(args[0]))
    if op == "revoke":
        return str(SessionManager(store).revoke_user(args[0]))
    if op == "load":
        found = store.load(args[0])
        return "-" if found is None or found.ended is not None else found.data.get("cart", "-")
    if op == "hits":
        return str(store.near_cache.stats().hits if store.near_cache is not None else -1)
    raise ValueError(f"unknown command {op!r}")


def main() -> None:
    store = RedisStore(sys.argv[1], socket_timeout=5, connect_timeout=5)
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            answer = "ok " + run(store, line)
        except Exception as exc:  # reported to the test, which fails with it
            answer = f"err {type(exc).__name__}: {exc}"
        print(answer, flush=True)
    store.close()


if __name__ == "__main__":
    main()
