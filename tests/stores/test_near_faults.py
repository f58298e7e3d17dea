"""The near cache under faults the other near-cache tests do not make, against real servers.

Each test here once found a bug: a lease that ran out and never came back, and
the other cases named in each test's docstring. Private servers where a test
pauses or breaks one, so the shared ones stay as other tests expect them.
"""

from __future__ import annotations

import contextlib

from servers import RedisServer
from serversession.stores.redis import RedisStore

from .test_near_store import near, new_key, wait_until


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
