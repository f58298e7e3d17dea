"""One process of the per-user cap's parallel tests: sign one user in, round after round.

Run as ``python cap_worker.py '<json spec>'`` (the conformance suite starts several at
once, each with its own store object and manager), or call :func:`sign_in_rounds`
from threads (a memory store lives in one process). In each round a worker gets
ready (an anonymous session for the rounds that sign in by rotation), says so,
waits for the round's start, signs in once and reports what happened as a JSON
line. The rounds alternate the two ways a sign-in reaches a store: a session
created with a user (even rounds), an anonymous session rotated as the user binds
(odd rounds). The test checks the store between rounds, so a cap one round
exceeded cannot be healed by the next before the check.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from serversession import SessionConfig, SessionLimitError, SessionManager
from serversession.core.events import EventKind, SessionEvent
from serversession.core.transport import IncomingToken

#: The timeouts every worker and the test that reads its results agree on.
IDLE, ABSOLUTE = 600.0, 3600.0


def token(value: str | None) -> IncomingToken:
    return IncomingToken(value, via_header=False)


def cookie(result: Any) -> str:
    return str(result.set_cookies[0].split(";")[0].split("=", 1)[1])


def sign_in_rounds(store: Any, user: str, rounds: int, limit: int, on_limit: str,
                   start: Callable[[int], None], report: Callable[[dict[str, Any]], None]) -> None:  # fmt: skip
    """Sign ``user`` in once per round, after ``start(round)``; ``report`` gets the key
    created (None if refused), whether a refused rotation left its anonymous session as
    it was, and the handles of the REVOKED events this manager emitted."""
    config = SessionConfig(idle_timeout=IDLE, absolute_timeout=ABSOLUTE, max_sessions_per_user=limit,
                           on_limit=on_limit)  # type: ignore[arg-type]  # fmt: skip
    manager = SessionManager(store, config)
    revoked: list[str] = []

    def listen(event: SessionEvent) -> None:
        if event.kind is EventKind.REVOKED and event.handle:
            revoked.append(event.handle)

    manager.add_listener(listen)
    for r in range(rounds):
        anonymous = None
        if r % 2:
            s = manager.load(token(None))
            s["cart"] = [r]
            anonymous = cookie(manager.save(s))
            s = manager.load(token(anonymous))
            s.user = user
            s.rotate("signed in")
        else:
            s = manager.load(token(None))
            s.user = user
        start(r)
        created: str | None = None
        intact = None
        try:
            manager.save(s)
            created = s.key
        except SessionLimitError:
            if anonymous is not None:
                again = manager.load(token(anonymous))
                intact = not again.is_new and again.user is None and again["cart"] == [r]
        report({"created": created, "intact": intact, "revoked": revoked[:]})
        revoked.clear()


def _open(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "sqlite":
        from serversession.stores.sqlite import SQLiteStore

        return SQLiteStore(spec["path"])
    if spec["kind"] == "redis":
        from serversession.stores.redis import RedisStore

        return RedisStore(spec["url"])
    from serversession.stores.postgres import PostgresStore

    return PostgresStore(spec["url"], table=spec["table"])


def main() -> None:
    spec = json.loads(sys.argv[1])
    store = _open(spec)
    store.ping()  # connected before the first round: the sign-ins race each other, not the connects

    def start(r: int) -> None:
        print("ready", flush=True)
        go, deadline = f"{spec['go']}-{r}", time.monotonic() + 60
        while not os.path.exists(go):
            if time.monotonic() > deadline:
                raise SystemExit(f"no start for round {r}")
            time.sleep(0.0005)

    def report(result: dict[str, Any]) -> None:
        print(json.dumps(result), flush=True)

    try:
        sign_in_rounds(store, spec["user"], spec["rounds"], spec["limit"], spec["on_limit"], start, report)
    finally:
        store.close()


if __name__ == "__main__":
    main()
