"""Revocation racing a rotation: "sign out everywhere" must not miss a session that is
being signed in again at that very moment.

``revoke_user`` (and ``revoke``, and ``destroy`` at logout) list the user's
sessions, then delete each by its storage key. A session that rotates between the
two steps (its owner signs in again) has left only a forwarding marker at the
listed key, which stores never delete. Found by this test: the session lived on
under its new key. The lifecycle now follows the marker
(``lifecycle._delete_following_moves``).

Driven step by step through the lifecycle plan, so the interleaving is exact.
"""

from __future__ import annotations

from typing import Any

from serversession import MemoryStore, SessionConfig, SessionManager
from serversession.core import lifecycle
from serversession.core.transport import IncomingToken


def signed_in(manager: SessionManager, user: str) -> str:
    session = manager.load(IncomingToken(None, via_header=True))
    session.user = user
    session.rotate()
    token = manager.save(session).header_token
    assert token
    return token


def test_sign_out_everywhere_also_ends_a_session_rotating_meanwhile() -> None:
    store = MemoryStore()
    config = SessionConfig()
    manager = SessionManager(store, config)
    keeper_token = signed_in(manager, "alice")
    victim_token = signed_in(manager, "alice")
    keeper = manager.load(IncomingToken(keeper_token, via_header=True))

    plan = lifecycle.revoke_user(config, "alice", manager.clock(), keep=keeper)
    name, args = next(plan)
    assert name == "list_user"
    listed: Any = store.list_user(*args)

    # Meanwhile the victim's session signs in again: it rotates to a new ID.
    victim = manager.load(IncomingToken(victim_token, via_header=True))
    victim.rotate()
    rotated_token = manager.save(victim).header_token
    assert rotated_token and rotated_token != victim_token

    result: Any = listed
    try:
        while True:
            name, args = plan.send(result)
            result = None if name == "emit" else getattr(store, name)(*args)
    except StopIteration as done:
        ended = done.value

    still = manager.load(IncomingToken(rotated_token, via_header=True))
    assert still.user is None, f"revoke_user ended {ended} session(s) and missed the one that rotated meanwhile"
