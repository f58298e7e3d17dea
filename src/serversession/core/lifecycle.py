"""Theory of operation: the one session lifecycle, written once, free of I/O.

Every decision about a session lives in this module: whether a token is
believable, whether a stored session has timed out, whether this request must
create, commit, renew, rotate or delete it, and what cookie the response gets.
The functions here are *plans*: generators that yield typed steps (:mod:`.steps`:
``stored = yield from Load(key).ask()``, ``yield Emit(event)``) and receive their
answers. :class:`~serversession.SessionManager` runs a plan against a sync
store, :class:`~serversession.AsyncSessionManager` against an async one; neither
decides anything. Tests drive plans with a fake clock and a dict.

Rules (everything that changes a session's fate must live in this file):

1. **Lazy**: a session is stored only when the request puts data in it, binds a
   user, rotates, or asks for it (``ensure_stored``). Nothing else writes.
2. **Strict**: an ID the store does not know is never adopted; the request gets a
   fresh session under a new server-made ID.
3. **Deadlines**: a session ends at ``min(last_seen + idle, created + absolute)``,
   where the application may shorten, never lengthen, either bound for one
   session (:meth:`.Session.set_expiry`: a smaller idle window, a fixed end).
   The idle deadline is renewed only when ``renew_fraction`` of the idle window
   has passed, or for free along with a data write. A session whose deadline
   has come by the time it is saved is ended then, not written.
4. **Deltas**: a commit carries only the keys this request changed, merged by the
   store atomically; concurrent requests changing different keys both win.
5. **No resurrection**: commits and rotations apply only to a session that still
   exists; a destroyed or revoked session answers MISSING and nothing is written.
   A rotated-away key answers MOVED for ``rotation_grace`` seconds, so in-flight
   writes follow the session to its new key, while loads of the old ID fail.
6. **Atomic read-modify-write**: ``modify`` is compare-and-set on one key's
   encoded text, retried with the fresher value on conflict.
7. **Per-user cap**: every write that indexes a user (a create or rotation of a
   session with a user, a commit that binds one) carries ``max_sessions_per_user``
   as a :class:`~.records.UserCap`; the store counts and ends sessions in the same
   atomic step (no process can decide alone). The keys it evicted become REVOKED
   events here, a refusal :class:`~serversession.exceptions.SessionLimitError`,
   and the ended marker it leaves makes the next load of an evicted ID a fresh
   session with ``expired`` and ``ended_because`` set, at no extra round trip.
8. **Credential changes void older sign-ins**: ``credential_changed`` records
   "sign-ins of this user by requests loaded before T are void" (a marker, see
   :mod:`._credentials`) *before* it lists and ends the user's other sessions;
   every save that binds a user reads that marker *after* its own write and
   ends the session it just bound if its request was loaded before T. One of
   the two always sees the other, so no sign-in checked against the old
   credential survives (``docs/security.md``, "Credential changes").
9. **Imported sessions are accepted once**: with ``accept_imported`` on, a
   record carrying the import marker (:data:`~.records.IMPORTED_KEY`, written
   only by ``serversession import``) loads under the other framework's cookie
   value; a legacy-shaped value finds nothing else (rule 2 holds), and with the
   switch off no marked record loads at all. Until that first load its
   deadline is the incumbent's expiry, bounded by ``absolute_timeout`` from the
   import; the load asks for a rotation, so the first save moves it to a
   server-made ID, drops the marker and lets the old value die (every rotation
   drops the marker, a no-op on other records). It counts as due for renewal,
   so an integration that saves only changed sessions (Django) still saves it.
"""

from __future__ import annotations

import copy
import json
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..exceptions import ConcurrentUpdateError, SessionEndedError, SessionLimitError, StoreError
from . import _credentials as credentials
from .codec import SessionMeta, decode_value, encode_meta, encode_meta_fields, encode_value
from .config import SessionConfig
from .events import EventKind, SessionEvent
from .ids import new_session_id, public_handle, storage_key
from .records import COMMITTED, IMPORTED_KEY, TAKEN, Commit, CommitResult, Outcome, StoredSession, UserCap
from .session import Session
from .steps import Apply, Create, Delete, Emit, ListUser, Load, Plan, Rotate
from .transport import IncomingToken, printable, resolve_token, set_cookie, token_for_client

T = TypeVar("T")

_MAX_MOVES = 3
_CREATE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class SaveResult:
    """What the response must carry after a save.

    ``set_cookies`` are whole ``Set-Cookie`` values; ``header_token`` is the new
    token for the ``Session-Id`` response header (header transport only).
    ``ended`` says the session no longer exists (destroyed, revoked meanwhile,
    or ``expired``: its deadline, such as the expiry the application set, had
    come by this save, so it was deleted instead of written); ``moved`` that a
    concurrent request rotated it: this request's changes went to the new ID,
    which only the rotating response carries, so this response must not send
    the old one again (it would sign that browser out).
    """

    set_cookies: tuple[str, ...] = ()
    header_token: str | None = None
    ended: bool = False
    moved: bool = False
    expired: bool = False


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A user's session as shown in a "your active sessions" list: no secrets.

    The deadlines are the ones in force (Unix seconds): the configured timeouts,
    shortened by any expiry the application set on the session.
    ``authenticated_at`` is when the user last proved who they are (Unix
    seconds; None for a session bound before authentication times were kept).
    """

    handle: str
    user: str | None
    created_at: float
    last_seen_at: float
    idle_expires_at: float
    absolute_expires_at: float
    user_agent: str
    ip: str
    current: bool = field(default=False)
    authenticated_at: float | None = None


NOTHING = SaveResult()
MOVED_AWAY = SaveResult(moved=True)


def idle_window(config: SessionConfig, meta: SessionMeta) -> float:
    """The idle timeout in force for a session, seconds: ``idle_timeout``, or the
    smaller idle limit the application set on it (never a larger one)."""
    limit = meta.idle_limit
    return config.idle_timeout if limit is None or limit >= config.idle_timeout else limit


def deadlines(config: SessionConfig, meta: SessionMeta) -> tuple[float, float]:
    """Return (idle deadline, absolute deadline) of a session, Unix seconds.

    The absolute deadline is ``created_at + absolute_timeout``, or the fixed end
    the application set if earlier; the idle deadline is ``last_seen_at`` plus
    :func:`idle_window`, never past the absolute one.
    """
    absolute = _absolute_deadline(config, meta)
    return min(meta.last_seen_at + idle_window(config, meta), absolute), absolute


def _absolute_deadline(config: SessionConfig, meta: SessionMeta) -> float:
    absolute = meta.created_at + config.absolute_timeout
    ends_at = meta.ends_at
    return ends_at if ends_at is not None and ends_at < absolute else absolute


def is_expired(config: SessionConfig, meta: SessionMeta, now: float) -> bool:
    """Whether a session is past its idle or absolute deadline at ``now``."""
    return now >= deadlines(config, meta)[0]


def renewal_due(config: SessionConfig, meta: SessionMeta, now: float) -> bool:
    """Whether a request at ``now`` must push the idle deadline forward (one write):
    once ``renew_fraction`` of the session's :func:`idle_window` has passed."""
    return now - meta.last_seen_at >= idle_window(config, meta) * config.renew_fraction


def index_deadline(config: SessionConfig, meta: SessionMeta) -> float:
    """How long a user-index entry must last (``Commit.absolute_at``): the configured
    absolute deadline. Not the application's fixed end, which a later request may
    lift: an index entry gone before its session would hide it from revocation."""
    return meta.created_at + config.absolute_timeout


def new_session(
    config: SessionConfig,
    token: IncomingToken,
    now: float,
    user_agent: str,
    ip: str,
    *,
    expired: bool = False,
    ended_because: str | None = None,
) -> Session:
    """Return a fresh, unstored session (it gets an ID only when first stored)."""
    meta = SessionMeta(
        created_at=now, last_seen_at=now, user_agent=printable(user_agent)[: config.max_user_agent], ip=ip
    )
    return Session(
        config,
        session_id=None,
        key=None,
        data={},
        meta=meta,
        via_header=token.via_header,
        presented=token.value is not None or token.ambiguous,  # a cookie to clear
        expired=expired,
        pre_csrf_secret=token.csrf_secret,
        ended_because=ended_because,
        loaded_at=now,
    )


def load(config: SessionConfig, token: IncomingToken, now: float, user_agent: str = "", ip: str = "") -> Plan[Session]:
    """Plan: find the request's session, or start a fresh one (strict mode)."""
    resolved = resolve_token(config, token.value)
    if resolved is None:
        if token.ambiguous:
            yield _event(EventKind.REFUSED, now, reason="the session cookie was sent more than once")
        return new_session(config, token, now, user_agent, ip)
    session_id, strict = resolved
    key = storage_key(session_id)
    # The one step of every request: answer() types it as ask() does, without ask()'s generator.
    step = Load(key)
    stored = step.answer((yield step))
    if stored is not None and stored.ended is None and (not strict or IMPORTED_KEY in stored.data):
        return (yield from _load_imported(config, token, stored, session_id, now, user_agent, ip))
    if stored is None:
        # Stores with native expiry drop a timed-out session themselves, so an
        # unknown ID of ours reads as "your session ended" (timed out or revoked).
        yield _event(EventKind.UNKNOWN_ID, now)
        return new_session(config, token, now, user_agent, ip, expired=True)
    if stored.ended is not None:  # ended by the store (the per-user cap): say why; REVOKED was emitted then
        return new_session(config, token, now, user_agent, ip, expired=True, ended_because=stored.ended)
    if is_expired(config, stored.meta, now):
        yield from Delete(key).ask()
        reason = "absolute timeout" if now >= deadlines(config, stored.meta)[1] else "idle timeout"
        yield _event(EventKind.EXPIRED, now, key, stored.meta.user, reason)
        return new_session(config, token, now, user_agent, ip, expired=True)
    return Session(
        config,
        session_id=session_id,
        key=key,
        data=stored.data,
        meta=stored.meta,
        via_header=token.via_header,
        presented=True,
        pre_csrf_secret=token.csrf_secret,
        loaded_at=now,
    )


def imported_deadline(config: SessionConfig, stored: StoredSession) -> float | None:
    """When an imported session not yet loaded ends (Unix seconds): the incumbent's
    expiry carried in its marker, never past ``absolute_timeout`` from the import;
    None when the record carries no readable marker (so it is not an imported one)."""
    text = stored.data.get(IMPORTED_KEY)
    if text is None:
        return None
    try:
        marker = json.loads(text)
        ends = float(marker["expires_at"])
    except (ValueError, TypeError, KeyError):
        return None
    if not math.isfinite(ends):
        return None
    return min(ends, stored.meta.created_at + config.absolute_timeout)


def stored_expired(config: SessionConfig, stored: StoredSession, now: float) -> bool:
    """:func:`is_expired` for a record read from a store: an imported one not yet
    loaded by its own deadline (:func:`imported_deadline`, rule 9), never idle before that."""
    ends = imported_deadline(config, stored) if IMPORTED_KEY in stored.data else None
    return now >= ends if ends is not None else is_expired(config, stored.meta, now)


def _load_imported(
    config: SessionConfig, token: IncomingToken, stored: StoredSession, session_id: str, now: float,
    user_agent: str, ip: str,
) -> Plan[Session]:  # fmt: skip
    """Rule 9: accept an imported record once, and ask for its rotation; anything else
    reached through a legacy-shaped ID, or with the switch off, is an unknown ID."""
    ends = imported_deadline(config, stored) if config.accept_imported else None
    if ends is None:
        yield _event(EventKind.UNKNOWN_ID, now)
        return new_session(config, token, now, user_agent, ip, expired=True)
    if now >= ends:
        yield from Delete(stored.key).ask()
        yield _event(EventKind.EXPIRED, now, stored.key, stored.meta.user, "imported session expired")
        return new_session(config, token, now, user_agent, ip, expired=True)
    window = idle_window(config, stored.meta)
    # Due for renewal (past renew_fraction of the window) yet well inside it: never seen here before.
    meta = stored.meta.with_changes(last_seen_at=now - window * (1 + config.renew_fraction) / 2)
    session = Session(
        config,
        session_id=session_id,
        key=stored.key,
        data={k: v for k, v in stored.data.items() if k != IMPORTED_KEY},
        meta=meta,
        via_header=token.via_header,
        presented=True,
        pre_csrf_secret=token.csrf_secret,
        loaded_at=now,
    )
    session.rotate("imported session")
    return session


def save(session: Session, now: float, ip: str | None = None) -> Plan[SaveResult]:
    """Plan: write what this request changed and say what the response carries."""
    if session.auth_stamp_due:
        session.mark_authenticated(now)  # bound with no manager clock at hand: the save's time
    if session.destroy_requested:
        if session.key is not None:
            ended = yield from _delete_following_moves(session.key)
            if ended is not None:
                yield _event(EventKind.DESTROYED, now, ended, session.user, session.end_reason)
        return _ended(session)
    if session.key is None:
        if not (session.create_requested or session.has_changes or session.user is not None):
            return _sessionless(session)
        if _expires_at(session.config, session.meta, now) <= now:
            return _ended(session, expired=True)  # born past its deadline (set_expiry(-1)): never stored
        return (yield from _create(session, now))
    if _expires_at(session.config, session.meta, now) <= now:
        return (yield from _expire(session, now))
    if session.rotate_requested:
        return (yield from _rotate(session, now, ip))
    commit = _commit_for(session, now, ip)
    if commit is None:
        return _reissued(session, now)
    result, moved = yield from _commit_following_moves(session.key, commit)
    if result.outcome is Outcome.MISSING:
        return _ended(session)
    yield from _bound(session.config, result, session.user, now)
    if session.user_changed and session.user is not None and (yield from _bind_voided(session, session.key, now)):
        return _ended(session)
    if moved:
        return MOVED_AWAY  # rotated meanwhile: the rotating response carries the new ID
    session.settle(now if commit.expires_at is not None else None)
    if commit.expires_at is not None and not (commit.set_data or commit.unset_data):
        yield _event(EventKind.RENEWED, now, session.key, session.user)
    if session.persistent and (commit.expires_at is not None or session.persistent_changed):
        return _issue(session, session.session_id or "", now)
    return _reissued(session, now)


#: ``modify``'s starting point when the caller knows nothing fresher than the session's load.
FROM_SESSION: Any = object()


def modify(
    session: Session, key: str, fn: Callable[[Any], T], default: Any, now: float, latest: Any = FROM_SESSION
) -> Plan[T]:
    """Plan: compare-and-set ``session[key] = fn(stored value)``, retrying on conflict.

    ``latest`` is the encoded text (or None: absent) the caller believes the
    store holds now, fresher than this request's load; a manager passes what its
    own last ``modify`` of this key committed, so serialized writers in one
    process each succeed at the first attempt.
    """
    config = session.config
    if session.key is None:
        current = copy.deepcopy(session.get(key, default))
        value = fn(current)
        session[key] = value
        return value
    target = session.key
    expected = session.base.get(key) if latest is FROM_SESSION else latest
    for _ in range(config.modify_attempts):
        current = decode_value(expected) if expected is not None else copy.deepcopy(default)
        value = fn(current)
        encoded = encode_value(key, value)
        # The limit holds here too (measured against this request's copy of the other keys).
        session._check_size(key, len(key) + len(encoded) + session._base_size(exclude=key))
        commit = Commit(set_data={key: encoded}, expect={key: expected})
        result = yield from Apply(target, commit).ask()
        if result.outcome is Outcome.OK:
            session.accept(key, encoded, value)
            return value
        if result.outcome is Outcome.CONFLICT:
            expected = (result.current or {}).get(key)
        elif result.outcome is Outcome.MOVED and result.moved_to:
            target = result.moved_to
        else:
            raise SessionEndedError("the session ended while it was being modified")
    raise ConcurrentUpdateError(f"session[{key!r}] changed {config.modify_attempts} times under us")


def list_sessions(
    config: SessionConfig, user: str, now: float, current: Session | None = None
) -> Plan[list[SessionInfo]]:
    """Plan: the live sessions of ``user``, oldest first, without secrets."""
    stored = yield from ListUser(user).ask()
    current_key = current.key if current is not None else None
    infos = []
    for s in stored:
        if s.meta.user != user or stored_expired(config, s, now):
            continue
        idle, absolute = deadlines(config, s.meta)
        idle = imported_deadline(config, s) or idle
        infos.append(
            SessionInfo(
                handle=public_handle(s.key),
                user=s.meta.user,
                created_at=s.meta.created_at,
                last_seen_at=s.meta.last_seen_at,
                idle_expires_at=idle,
                absolute_expires_at=absolute,
                user_agent=s.meta.user_agent,
                ip=s.meta.ip,
                current=s.key == current_key,
                authenticated_at=s.meta.authenticated_at,
            )
        )
    infos.sort(key=lambda i: i.created_at)
    return infos


def revoke(config: SessionConfig, user: str, handle: str, now: float, reason: str = "revoked") -> Plan[bool]:
    """Plan: end the session of ``user`` whose public handle is ``handle``."""
    stored = yield from ListUser(user).ask()
    for s in stored:
        if s.meta.user == user and public_handle(s.key) == handle:
            ended = yield from _delete_following_moves(s.key)
            if ended is not None:
                yield _event(EventKind.REVOKED, now, ended, user, reason)
                return True
            return False
    return False


def revoke_user(
    config: SessionConfig, user: str, now: float, keep: Session | None = None, reason: str = "revoked"
) -> Plan[int]:
    """Plan: end every session of ``user`` except ``keep``; return how many ended."""
    stored = yield from ListUser(user).ask()
    keep_key = keep.key if keep is not None else None
    ended = 0
    done: set[str] = set()
    for s in stored:
        if s.meta.user != user or s.key == keep_key or s.key in done:
            continue
        gone = yield from _delete_following_moves(s.key)
        if gone is not None:
            done.add(gone)
            yield _event(EventKind.REVOKED, now, gone, user, reason)
            ended += 1
    return ended


def credential_changed(session: Session, now: float, reason: str = "credential changed") -> Plan[int]:
    """Plan: the user of ``session`` changed a credential (password, factor, role).

    In this order: record that sign-ins of the user by requests loaded before
    ``now`` are void (rule 8); give ``session`` a new ID now, carrying this
    request's changes, authenticated at ``now`` (the next save sends the new ID);
    end every other session of the user, with REVOKED events carrying
    ``reason``; return how many ended. Raises ``RuntimeError`` for an anonymous
    session and :class:`SessionEndedError` when ``session`` itself was ended or
    rotated by another request meanwhile (the others are ended all the same).
    """
    user = session.user
    if user is None:
        raise RuntimeError("credential_changed() needs a session bound to a user (session.user)")
    config = session.config
    yield from _void_sign_ins_before(config, user, now, reason)
    session.loaded_at = now  # this request holds the new credential: its own bind is not void
    session.mark_authenticated(now)
    session.rotate(reason)
    result = yield from save(session, now)
    ended = yield from revoke_user(config, user, now, keep=session, reason=reason)
    if result.ended or result.moved:
        raise SessionEndedError("the session was ended or rotated by another request during the credential change")
    session.reissue_requested = True
    return ended


# -- helpers -----------------------------------------------------------------


def _void_sign_ins_before(config: SessionConfig, user: str, now: float, reason: str) -> Plan[None]:
    """Raise the credential-change marker of ``user`` to ``now`` (never lower it:
    compare-and-set on its time, as ``modify`` does)."""
    key, owner = credentials.key(user), credentials.owner(user)
    for _ in range(config.modify_attempts):
        found = yield from ListUser(owner).ask()
        marker = credentials.find(found, user)
        if marker is None:
            if (yield from Create(key, credentials.commit(config, user, now, reason)).ask()):
                return
            continue  # written meanwhile: read it again
        if marker[0] >= now:
            return  # a later change is already recorded
        result = yield from Apply(key, credentials.commit(config, user, now, reason, marker[2])).ask()
        if result.outcome is Outcome.OK:
            return
    raise ConcurrentUpdateError(f"the credential-change marker changed {config.modify_attempts} times under us")


def _bind_voided(session: Session, key: str, now: float) -> Plan[bool]:
    """After a write that bound ``session.user`` at ``key``: end it if the user changed
    a credential after this request was loaded (rule 8); True if it was ended."""
    user = session.meta.user or ""
    found = yield from ListUser(credentials.owner(user)).ask()
    marker = credentials.find(found, user)
    if marker is None or session.loaded_at >= marker[0]:
        return False
    gone = yield from _delete_following_moves(key)
    yield _event(EventKind.REVOKED, now, gone or key, user, marker[1] or "credential changed")
    return True


def _event(
    kind: EventKind,
    now: float,
    key: str | None = None,
    user: str | None = None,
    reason: str = "",
    previous: str | None = None,
) -> Emit:
    event = SessionEvent(
        kind,
        now,
        public_handle(key) if key else None,
        user,
        reason,
        public_handle(previous) if previous else None,
    )
    return Emit(event)


def user_cap(config: SessionConfig) -> UserCap | None:
    """The :class:`~.records.UserCap` a write indexing a user carries, or None (no limit)."""
    if not config.max_sessions_per_user:
        return None
    return UserCap(config.max_sessions_per_user, evict=config.on_limit == "evict", reason=config.eviction_reason)


def _bound(config: SessionConfig, result: CommitResult, user: str | None, now: float) -> Plan[None]:
    """After a write that indexed ``user``: a REVOKED event for each session its cap
    ended, or :class:`SessionLimitError` when the cap refused it (nothing was written)."""
    if result.outcome is Outcome.REFUSED:
        limit = config.max_sessions_per_user
        raise SessionLimitError(f"user {user!r} already has {limit} live sessions, the most allowed "
                                "(SessionConfig.max_sessions_per_user)", user=user or "", limit=limit)  # fmt: skip
    for key in result.evicted:
        yield _event(EventKind.REVOKED, now, key, user, config.eviction_reason)


def _expires_at(config: SessionConfig, meta: SessionMeta, now: float) -> float:
    """The store expiry of a session renewed at ``now``: its idle deadline from now."""
    return min(now + idle_window(config, meta), _absolute_deadline(config, meta))


def _expire(session: Session, now: float) -> Plan[SaveResult]:
    """A stored session whose deadline came before its save: delete it, write nothing."""
    config = session.config
    key = session.key or ""
    ended = yield from _delete_following_moves(key)
    if ended is not None:
        configured = now >= session.meta.created_at + config.absolute_timeout
        reason = "absolute timeout" if configured else "the expiry set by the application"
        yield _event(EventKind.EXPIRED, now, ended, session.user, reason)
    return _ended(session, expired=True)


def _commit_for(session: Session, now: float, ip: str | None) -> Commit | None:
    config = session.config
    to_set, unset = session.delta()
    # A new expiry is a renewal: the store expiry follows it, shorter or back to the default.
    renew = bool(to_set or unset) or session.expiry_changed or renewal_due(config, session.meta, now)
    if not (renew or session.user_changed or session.persistent_changed or session.auth_changed):
        return None
    meta: dict[str, str] = {}
    expires_at = None
    if renew:
        meta.update(encode_meta_fields(last_seen_at=now))
        if ip:
            meta.update(encode_meta_fields(ip=ip))
        expires_at = _expires_at(config, session.meta, now)
    if session.user_changed:
        meta.update(encode_meta_fields(user=session.meta.user))
    if session.persistent_changed:
        meta.update(encode_meta_fields(persistent=session.meta.persistent))
    if session.auth_changed:
        meta.update(encode_meta_fields(authenticated_at=session.meta.authenticated_at))
    if session.expiry_changed:
        meta.update(encode_meta_fields(idle_limit=session.meta.idle_limit, ends_at=session.meta.ends_at))
    index_user = session.meta.user if session.user_changed else None
    return Commit(
        set_data=to_set,
        unset_data=unset,
        meta=meta,
        expires_at=expires_at,
        index_user=index_user,
        absolute_at=index_deadline(config, session.meta),
        user_cap=user_cap(config) if index_user else None,
    )


def _commit_following_moves(key: str, commit: Commit) -> Plan[tuple[CommitResult, bool]]:
    """Commit, following rotation markers; also say whether a marker was followed."""
    moved = False
    for _ in range(_MAX_MOVES):
        result = yield from Apply(key, commit).ask()
        if result.outcome is not Outcome.MOVED or not result.moved_to:
            return result, moved
        key, moved = result.moved_to, True
    return CommitResult(Outcome.MISSING), moved


def _delete_following_moves(key: str) -> Plan[str | None]:
    """Delete a session even if it rotated since we read its key; return the key deleted.

    Stores never delete a rotation marker (in-flight writes need it to follow
    the session), so a logout or revocation racing a rotation would otherwise
    miss the session under its new key. An empty commit reveals where it went.
    """
    for _ in range(_MAX_MOVES):
        if (yield from Delete(key).ask()):
            return key
        probe = yield from Apply(key, Commit()).ask()
        if probe.outcome is not Outcome.MOVED or not probe.moved_to:
            return None
        key = probe.moved_to
    return None


def _create(session: Session, now: float) -> Plan[SaveResult]:
    config = session.config
    meta = session.meta.with_changes(
        created_at=now,
        last_seen_at=now,
        csrf_secret=session.meta.csrf_secret or session.pre_csrf_secret or secrets.token_urlsafe(32),
    )
    commit = Commit(
        set_data=session.encoded_data(),
        meta=encode_meta(meta),
        expires_at=_expires_at(config, meta, now),
        index_user=meta.user,
        absolute_at=index_deadline(config, meta),
        user_cap=user_cap(config) if meta.user else None,
    )
    for _ in range(_CREATE_ATTEMPTS):
        session_id = new_session_id()
        key = storage_key(session_id)
        created = yield from Create(key, commit).ask()
        if isinstance(created, bool):  # a store written before create answered a CommitResult
            created = COMMITTED if created else TAKEN
        if created.outcome is Outcome.TAKEN:
            continue
        yield from _bound(config, created, meta.user, now)
        if created.outcome is Outcome.OK:
            session.session_id, session.key, session.meta = session_id, key, meta
            session.settle(None)
            yield _event(EventKind.CREATED, now, key, meta.user)
            if meta.user is not None and (yield from _bind_voided(session, key, now)):
                return _ended(session)
            return _issue(session, session_id, now, clear_pre_csrf=True)
    raise StoreError("could not create a session under a fresh key", operation="create")


def _rotate(session: Session, now: float, ip: str | None) -> Plan[SaveResult]:
    config = session.config
    old_key = session.key or ""
    to_set, unset = session.delta()
    meta = session.meta.with_changes(last_seen_at=now, ip=ip or session.meta.ip)
    fields = encode_meta_fields(
        last_seen_at=now,
        ip=meta.ip,
        user=meta.user,
        persistent=meta.persistent,
        csrf_secret=meta.csrf_secret,
    )
    if session.expiry_changed:  # else the store carries the old record's over, if it has any
        fields.update(encode_meta_fields(idle_limit=meta.idle_limit, ends_at=meta.ends_at))
    if session.auth_changed:  # likewise the authentication time
        fields.update(encode_meta_fields(authenticated_at=meta.authenticated_at))
    binding = session.user_changed and meta.user is not None
    commit = Commit(
        set_data=to_set,
        unset_data=unset | {IMPORTED_KEY},  # rule 9: a no-op on any record but an imported one
        meta=fields,
        expires_at=_expires_at(config, meta, now),
        index_user=meta.user,
        absolute_at=index_deadline(config, meta),
        user_cap=user_cap(config) if meta.user else None,  # every rotation: it files a new key under the user
    )
    session_id = new_session_id()
    key = storage_key(session_id)
    result = yield from Rotate(old_key, key, commit, config.rotation_grace).ask()
    if result.outcome is Outcome.MOVED and result.moved_to:
        # A concurrent request rotated first: its response carries the new ID;
        # ours only forwards its changes there, the user and the expiry only if this
        # request changed them (else a stale copy would undo the other's sign-in or sign-out).
        forwarded: dict[str, str] = {}
        if session.user_changed:
            forwarded.update(encode_meta_fields(user=meta.user))
        if session.expiry_changed:
            forwarded.update(
                encode_meta_fields(last_seen_at=now, idle_limit=meta.idle_limit, ends_at=meta.ends_at)
            )
        if session.auth_changed:
            forwarded.update(encode_meta_fields(authenticated_at=meta.authenticated_at))
        index_user = meta.user if session.user_changed else None
        forward, _ = yield from _commit_following_moves(
            result.moved_to,
            Commit(
                set_data=to_set,
                unset_data=unset,
                meta=forwarded,
                expires_at=_expires_at(config, meta, now) if session.expiry_changed else None,
                index_user=index_user,
                absolute_at=index_deadline(config, meta),
                user_cap=user_cap(config) if index_user else None,
            ),
        )
        yield from _bound(config, forward, index_user, now)
        if binding and forward.outcome is Outcome.OK:
            yield from _bind_voided(session, result.moved_to, now)
        return MOVED_AWAY
    yield from _bound(config, result, meta.user, now)
    if result.outcome is not Outcome.OK:
        return _ended(session)
    session.session_id, session.key, session.meta = session_id, key, meta
    session.settle(None)
    yield _event(EventKind.ROTATED, now, key, meta.user, session.end_reason, previous=old_key)
    if binding and (yield from _bind_voided(session, key, now)):
        return _ended(session)
    return _issue(session, session_id, now)


def _issue(session: Session, session_id: str, now: float, clear_pre_csrf: bool = False) -> SaveResult:
    config = session.config
    session.reissue_requested = False  # the response carries the current ID now
    token = token_for_client(config, session_id)
    if session.via_header:
        return SaveResult(header_token=token)
    max_age = None
    if session.persistent:
        max_age = int(deadlines(config, session.meta)[1] - now)
    cookies = [set_cookie(config, config.cookie_name or "", token, max_age), *_legacy_cleared(config)]
    # The stored session now holds the pre-session secret: drop its cookie, but only
    # if the client has one (a secret made during this request was never sent).
    if clear_pre_csrf and session.pre_csrf_secret is not None and not session.pre_csrf_issued:
        cookies.append(set_cookie(config, config.csrf_cookie_name, "", 0))
    return SaveResult(set_cookies=tuple(cookies))


def _reissued(session: Session, now: float) -> SaveResult:
    """A save that wrote nothing new: the cookie again if the ID changed outside a save."""
    if session.reissue_requested and session.session_id is not None:
        return _issue(session, session.session_id, now)
    return NOTHING


def _ended(session: Session, expired: bool = False) -> SaveResult:
    if session.via_header or not session.presented:
        return SaveResult(ended=True, expired=expired)
    config = session.config
    cleared = (set_cookie(config, config.cookie_name or "", "", 0), *_legacy_cleared(config))
    return SaveResult(set_cookies=cleared, ended=True, expired=expired)


def _legacy_cleared(config: SessionConfig) -> tuple[str, ...]:
    """The old framework's cookie expired, sent wherever ours is set or cleared
    (``legacy_cookie_name``): a response that hands out our cookie retires it."""
    legacy = config.legacy_cookie_name
    if legacy is None or legacy == config.cookie_name:
        return ()
    return (set_cookie(config, legacy, "", 0),)


def _sessionless(session: Session) -> SaveResult:
    """A request that stored nothing: at most a pre-session CSRF cookie, or a stale cookie cleared."""
    config = session.config
    cookies = []
    if session.presented and not session.via_header:
        cookies.append(set_cookie(config, config.cookie_name or "", "", 0))
        cookies.extend(_legacy_cleared(config))
    if session.pre_csrf_issued and session.pre_csrf_secret and not session.via_header:
        cookies.append(set_cookie(config, config.csrf_cookie_name, session.pre_csrf_secret, None))
    return SaveResult(set_cookies=tuple(cookies))
