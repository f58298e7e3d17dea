"""The near cache under faults the other near-cache tests do not make, against real servers.

Each test here once found a bug: a lease that ran out and never came back, and
the other cases named in each test's docstring. Private servers where a test
pauses or breaks one, so the shared ones stay as other tests expect them.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
import warnings
from collections.abc import Callable

from servers import RedisServer
from serversession.core.records import Commit, Outcome
from serversession.stores.redis import RedisStore

from .test_near_store import BOUND, cached, near, new_key, signed_in, wait_until


def test_a_lease_that_ran_out_comes_back_once_the_server_answers_again() -> None:
    """A server that stops answering (here ``CLIENT PAUSE``; a partition with no RST,
    a stopped process) lets a lookup end the lease: the cache goes off. Once the
    server answers again the listener must start tracking over, not leave the
    cache off for good while its connections look healthy."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(RedisServer())
        store = RedisStore(server.url, near_cache={"heartbeat": 0.1, "silence_limit": 0.5})
        stack.callback(store.close)
        cache = near(store)
        skey = f"ss:s:{new_key()}"
        cache.get(skey)  # the first lookup starts the listener
        wait_until(lambda: cache.active, "tracking on")
        established = cache.listener.established
        with server.client() as r:
            r.execute_command("CLIENT", "PAUSE", "1500", "ALL")  # no PONG for 1.5 s

        def off() -> bool:
            cache.get(skey)
            return not cache.active

        wait_until(off, "the lease running out")
        wait_until(lambda: cache.listener.established > established and cache.active, "tracking on again")
        # With no lookup at all the listener itself takes the silence as a loss and starts over.
        established = cache.listener.established
        with server.client() as r:
            r.execute_command("CLIENT", "PAUSE", "1500", "ALL")
        wait_until(lambda: not cache.active, "the listener noticing the silence")
        wait_until(lambda: cache.listener.established > established and cache.active, "tracking on again")


def _in_a_child(work: Callable[[], str], timeout: float = BOUND) -> str:
    """Fork (as gunicorn --preload does), run ``work`` in the child; what it returned,
    or ``"hung"`` if it did not answer within ``timeout`` seconds (the child is killed)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12 warns that forking a threaded process may deadlock: the point
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, never return into pytest
        code = 0
        try:
            answer = work()
        except BaseException as exc:
            answer, code = f"{type(exc).__name__}: {exc}", 1
        os.write(write_end, answer.encode())
        os._exit(code)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], timeout)
        return os.read(read_end, 65536).decode() if ready else "hung"
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_forked_child_serves_none_of_its_parents_entries(fresh_redis: RedisServer) -> None:
    store = RedisStore(fresh_redis.url, near_cache=True)
    try:
        key = new_key()
        assert store.create(key, signed_in("fo")).outcome is Outcome.OK
        cache = near(store)
        cache.get("ss:s:probe")
        wait_until(lambda: cache.active, "tracking on in the parent")
        cached(store, key)
        parent_listener = cache.listener

        def child() -> str:
            hits = cache.stats().hits
            found = store.load(key)
            assert found is not None and found.data["cart"] == '["apple"]'
            assert cache.stats().hits == hits, "the child served its parent's entry"
            assert cache.listener is not parent_listener, "the child shares its parent's listener"
            cached(store, key)  # and its own listener comes up
            return "ok"

        assert _in_a_child(child) == "ok"
    finally:
        store.close()


def test_a_fork_while_the_listener_holds_the_cache_lock_does_not_hang_the_child(fresh_redis: RedisServer) -> None:
    """The listener thread takes the cache's lock for every invalidation and PONG; a
    fork at that moment copies the lock held, by a thread the child does not have.
    The child must not touch that lock: its first load or write must answer."""
    store = RedisStore(fresh_redis.url, near_cache=True)
    try:
        key = new_key()
        assert store.create(key, signed_in("fp")).outcome is Outcome.OK
        cache = near(store)
        cache.get("ss:s:probe")
        wait_until(lambda: cache.active, "tracking on in the parent")
        cached(store, key)

        def child() -> str:
            assert store.commit(key, Commit(set_data={"cart": '["kiwi"]'})).outcome is Outcome.OK
            found = store.load(key)
            assert found is not None and found.data["cart"] == '["kiwi"]'
            return "ok"

        held, release = threading.Event(), threading.Event()

        def hold() -> None:  # what the listener thread does, for as long as the fork takes
            with cache.entries._lock:
                held.set()
                release.wait(BOUND)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(BOUND)
        try:
            answer = _in_a_child(child, timeout=5)
        finally:
            release.set()
            holder.join()
        assert answer == "ok"
    finally:
        store.close()
