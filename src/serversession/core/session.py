"""The session object an application sees: a mapping with change tracking.

A :class:`Session` is pure state: it never talks to a store. It remembers the
encoded text of every key as loaded (its *baseline*), which keys the request set
or deleted, and which mutable values it handed out (so ``session["cart"]["x"] = 1``
is noticed at save time by re-encoding and comparing). At the end of the request
the lifecycle turns exactly those differences into a delta commit, which is why
two concurrent requests that change different keys both keep their change.

Values are encoded when set, so an unserializable value fails at the assignment
that introduced it, with the key in the message.

A session may be *deferred*: built by :func:`deferred` before the store was read,
it reads the store the first time anything of it is used (its data, ID, user,
CSRF token) through the :class:`Loader` it was given, so a request that never
touches its session costs no store command. Where that first read would block an
event loop the loader raises :class:`SessionNotLoadedError` instead, and
``await session.aload()`` reads it without blocking.

What the managers and the kit need of a session beyond its public face is the
small internal interface at the end of this module (:func:`deferred`,
:func:`attach`, :func:`load_seq`, :func:`stored_text`); the working state behind
it is private to the core.
"""

from __future__ import annotations

import copy
import math
import secrets
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..exceptions import ReauthenticationRequired, SessionError, SessionTooLargeError
from . import csrf
from .codec import SessionMeta, decode_value, encode_value, is_utf8
from .config import SessionConfig
from .ids import public_handle

if TYPE_CHECKING:
    from collections.abc import Awaitable

T = TypeVar("T")
_MUTABLE = (dict, list)


#: User names starting with this are the library's own (credential-change markers, see the lifecycle).
RESERVED_USER_PREFIX = "\x1f"


class SessionNotLoadedError(SessionError, RuntimeError):
    """A deferred session was used synchronously where loading it would block the event loop.

    Raised in async code (ASGI, Quart, Litestar with ``lazy=True``) by the first
    synchronous use of a session whose store read has not happened yet: call
    ``await session.aload()`` first (or take it from the integration's awaited
    accessor), then use it as before.
    """


class Loader(Protocol):
    """Reads a deferred session's store record, once: what :func:`deferred` is given.

    ``load`` may block (a sync manager) or raise :class:`SessionNotLoadedError`
    (an async manager on its event loop's thread); ``aload`` never blocks the
    loop. Both return the same loaded :class:`Session` however often called, and
    raise the store's error (:class:`~serversession.exceptions.StoreError`) again
    after a failed read rather than reading twice.
    """

    @property
    def failed(self) -> bool:
        """The read was tried and the store failed."""

    def load(self) -> Session: ...

    def aload(self) -> Awaitable[Session]: ...


class _Modifier(Protocol):
    """What a manager offers a session: its clock, atomic read-modify-write, credential changes."""

    clock: Callable[[], float]

    def modify(self, session: Session, key: str, fn: Callable[[Any], Any], default: Any) -> Any: ...

    def amodify(self, session: Session, key: str, fn: Callable[[Any], Any], default: Any) -> Awaitable[Any]: ...

    def credential_changed(self, session: Session, *, reason: str = ...) -> int: ...

    def acredential_changed(self, session: Session, *, reason: str = ...) -> Awaitable[int]: ...


class Session(MutableMapping[str, Any]):
    """One request's view of a session: ``session["key"] = value`` and more.

    Besides the mapping API it offers :meth:`modify` / :meth:`amodify` (atomic
    read-modify-write of one key), :meth:`rotate` (new ID at sign-in),
    :meth:`destroy` (logout), :attr:`user` (bind to a user), :meth:`set_expiry`
    (a shorter server-side lifetime), :attr:`csrf_token`, the authentication
    controls (:attr:`authenticated_at`, :meth:`reauthenticated`,
    :meth:`require_recent_auth`, :meth:`credential_changed`) and read-only
    metadata. Build one through a manager, not directly.
    """

    def __init__(
        self,
        config: SessionConfig,
        *,
        session_id: str | None,
        key: str | None,
        data: Mapping[str, str],
        meta: SessionMeta,
        via_header: bool = False,
        presented: bool = False,
        expired: bool = False,
        pre_csrf_secret: str | None = None,
        ended_because: str | None = None,
        loaded_at: float = -math.inf,
    ) -> None:
        self.config = config
        self.session_id = session_id
        self.key = key
        self.meta = meta
        self._via_header = via_header
        self._presented = presented
        #: The client presented a session that no longer exists: it timed out or
        #: was ended elsewhere (for a gentle "please sign in again" message).
        self.expired = expired
        self._ended_because = ended_because
        self.pre_csrf_secret = pre_csrf_secret
        self.pre_csrf_issued = False
        self.base = data
        self._values: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._sizes: dict[str, int] = {}
        self._rotate_requested = False
        self._destroy_requested = False
        self.user_changed = False
        self.persistent_changed = False
        self.expiry_changed = False
        self.create_requested = False
        #: The authentication time changed in this request (sign-in, sign-out, re-authentication).
        self.auth_changed = False
        #: Stamp the authentication time with the save's clock (no manager clock was at hand).
        self.auth_stamp_due = False
        #: The ID changed outside a save (:meth:`credential_changed`): the next save sends it.
        self.reissue_requested = False
        #: When this request's session was loaded (Unix seconds, the manager's clock): any
        #: credential the request checked was checked no earlier. A sign-in bound by a request
        #: loaded before the user's last credential change is voided (see the lifecycle).
        self.loaded_at = loaded_at
        #: Free text for the ROTATED / DESTROYED event of this request.
        self.end_reason = ""
        self._manager: _Modifier | None = None
        # Set by the manager (attach()): where this load stands in its modify queue's history.
        self._load_seq = -1
        self._accessed = False

    if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute name

        def __getattr__(self, name: str) -> Any:
            # Reached only for what the instance lacks: a deferred session before its
            # read. Anything but its config and transport then reads the store, once.
            pending = self.__dict__.get("_pending")
            if pending is None or name.startswith("__"):
                raise AttributeError(f"'Session' object has no attribute {name!r}")
            self._adopt(pending.load())
            return object.__getattribute__(self, name)

    def _adopt(self, loaded: Session) -> None:
        """Become ``loaded`` (the record a deferred session's loader read), keeping ``accessed``."""
        state = self.__dict__
        if "_pending" not in state:
            return  # another task adopted it first
        accessed = state["_accessed"]
        state.clear()
        state.update(loaded.__dict__)
        state["_accessed"] = accessed or state["_accessed"]

    # -- loading -------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        """Whether this request has read the session from the store yet (never reads it).

        Integrations defer the read until the session is first used, so a request
        that never touches it (a static file, a health check) costs no store
        command.
        """
        return "_pending" not in self.__dict__

    def load(self) -> Session:
        """Read the session now if it was deferred, and return it.

        Blocking on a sync manager. On an async manager, from the event loop's
        own thread, raises :class:`SessionNotLoadedError`: use :meth:`aload`.
        A failed read raises the store's error, here and at every later use.
        """
        pending = self.__dict__.get("_pending")
        if pending is not None:
            self._adopt(pending.load())
        return self

    async def aload(self) -> Session:
        """Read the session now without blocking the event loop, if it was deferred; return it.

        Async code calls it (once per request is enough, more is free) before the
        session's synchronous API: ``session = await session.aload()``. Raises
        :class:`~serversession.exceptions.StoreError` when the store fails
        (every integration answers 503).
        """
        pending = self.__dict__.get("_pending")
        if pending is not None:
            self._adopt(await pending.aload())
        return self

    # -- what integrations read ----------------------------------------------
    @property
    def accessed(self) -> bool:
        """The request read the session (its data or CSRF token): the response depends
        on it, so the integrations add ``Vary: Cookie`` (or ``Authorization``)."""
        return self._accessed

    @property
    def via_header(self) -> bool:
        """The token came in ``Authorization: Session <id>``, not a cookie."""
        return self._via_header

    @property
    def presented(self) -> bool:
        """The client presented a token (valid or not) in this request."""
        return self._presented

    @property
    def rotate_requested(self) -> bool:
        """:meth:`rotate` was called and the save has not carried it out yet."""
        return self._rotate_requested

    @property
    def destroy_requested(self) -> bool:
        """:meth:`destroy` was called in this request."""
        return self._destroy_requested

    @property
    def destroyed(self) -> bool:
        """:meth:`destroy` was called in this request (the save deletes it)."""
        return self._destroy_requested

    @property
    def modified(self) -> bool:
        """Whether this request changed the session: set or deleted a key, rotated or destroyed it.

        In-place edits of mutable values are found only at save time.
        """
        if not self.loaded:
            return False  # nothing can change without reading it first
        return self.has_changes or self._rotate_requested or self._destroy_requested

    def discard_pre_session_csrf(self) -> None:
        """Forget the pre-session CSRF secret the client sent: a token made from it no longer passes.

        For a sign-out on a session that was never stored (Flask's ``session.clear()``):
        the next :attr:`csrf_token` comes from a fresh secret.
        """
        self.pre_csrf_secret = None
        self.pre_csrf_issued = False

    def backdate_load(self, at: float) -> None:
        """Count this request as loaded at ``at`` (Unix seconds) if that is earlier, never later.

        For a framework that checked a credential before this session was read
        (Django's request start): a sign-in bound after a credential change that
        happened in between is then voided (see the lifecycle, rule 8).
        """
        if at < self.loaded_at:
            self.loaded_at = at

    # -- the mapping --------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        self._accessed = True
        values = self._values
        if key in values:
            return values[key]
        if key in self._deleted or key not in self.base:
            raise KeyError(key)
        value = values[key] = decode_value(self.base[key])
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        encoded = encode_value(key, value)
        sizes = {**self._sizes, key: len(key) + len(encoded)}
        self._check_size(key, sum(sizes.values()) + self._base_size(exclude=key))
        self._sizes = sizes
        self._values[key] = value
        self._dirty.add(key)
        self._deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._values.pop(key, None)
        self._sizes.pop(key, None)
        self._dirty.add(key)
        self._deleted.add(key)

    def __contains__(self, key: object) -> bool:
        self._accessed = True
        if key in self._deleted:
            return False
        return key in self._values or key in self.base

    def __iter__(self) -> Iterator[str]:
        self._accessed = True
        seen = [k for k in self.base if k not in self._deleted]
        seen.extend(k for k in self._values if k not in self.base)
        return iter(seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        if not self.loaded:
            return "<Session (not read from the store yet)>"  # a debugger's repr must not do I/O
        return f"<Session handle={self.handle!r} keys={sorted(self)!r}>"

    def clear(self) -> None:
        """Delete every key (the session itself lives on; see :meth:`destroy`)."""
        for key in list(self):
            del self[key]

    # -- lifecycle requests -------------------------------------------------
    @property
    def is_new(self) -> bool:
        """True until the session has been stored (it is created lazily)."""
        return self.key is None

    @property
    def ended_because(self) -> str | None:
        """Why the session the client presented ended, when the server knows: text to
        show the user, such as ``SessionConfig.eviction_reason`` ("signed out because
        you signed in on another device") for a session the per-user cap ended. None
        otherwise (also when it merely timed out). Set only with :attr:`expired`."""
        return self._ended_because

    @property
    def handle(self) -> str | None:
        """The public handle (safe to show and log), or None before it is stored."""
        return public_handle(self.key) if self.key else None

    def rotate(self, reason: str = "") -> None:
        """Give the session a new ID at the end of this request, keeping its data.

        Call at sign-in and at any change of privilege: the old ID stops working
        at once, which defeats session fixation. The CSRF token changes too; read
        :attr:`csrf_token` after calling this to get the new one. ``reason`` is
        carried by the ROTATED event (e.g. "signed in on Firefox on Linux").
        """
        self.load()  # before any flag is set: the read would replace them
        self.end_reason = reason
        self._rotate_requested = True
        self.create_requested = True
        self.meta = self.meta.with_changes(csrf_secret=secrets.token_urlsafe(32))

    def destroy(self, reason: str = "logout") -> None:
        """End the session: its data is deleted from the store, the cookie cleared.

        ``reason`` is carried by the DESTROYED event.
        """
        self.load()
        self._destroy_requested = True
        self.end_reason = reason

    def ensure_stored(self) -> None:
        """Store the session at the end of this request even if it holds no data.

        For endpoints that hand a client a session on purpose (an API's
        "start a session" call).
        """
        self.load()
        self.create_requested = True

    @property
    def user(self) -> str | None:
        """The user this session is bound to (None: anonymous).

        Setting it binds the session to a user, so it appears in
        :meth:`~serversession.SessionManager.list_sessions` and can be revoked,
        and sets :attr:`authenticated_at` to now (a sign-in); setting None
        (sign-out) clears it. Rotate the session when you set it at sign-in.
        Raises ``TypeError`` for a non-str and ``ValueError`` for a NUL, a lone
        surrogate or a leading ``\\x1f`` (reserved).
        """
        return self.meta.user

    @user.setter
    def user(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError("session.user must be a str or None")
        if value is not None and ("\x00" in value or not is_utf8(value)):
            raise ValueError("session.user cannot contain NUL characters or lone surrogates")
        if value is not None and value.startswith(RESERVED_USER_PREFIX):
            raise ValueError("session.user cannot start with \\x1f (reserved for the library's own records)")
        if value != self.meta.user:
            self.meta = self.meta.with_changes(user=value)
            self.user_changed = True
            if value is None:
                self._clear_authenticated()
            else:
                self._stamp_authenticated()
            if value is not None and self.key is None and not self.meta.csrf_secret:
                # Signed in before it was ever stored: never keep the pre-session secret,
                # a cookie a network attacker or a sibling subdomain could have planted.
                self.meta = self.meta.with_changes(csrf_secret=secrets.token_urlsafe(32))

    @property
    def persistent(self) -> bool:
        """Whether the cookie survives a browser restart ("remember me", opt-in).

        A persistent cookie's ``Max-Age`` never outlives the absolute timeout.
        """
        return self.meta.persistent or self.config.persistent_cookies

    @persistent.setter
    def persistent(self, value: bool) -> None:
        if bool(value) != self.meta.persistent:
            self.meta = self.meta.with_changes(persistent=bool(value))
            self.persistent_changed = True

    @property
    def csrf_token(self) -> str:
        """The CSRF token for forms and the ``X-CSRF-Token`` header.

        Bound to this session and replaced when it rotates. Reading it on a
        session that is not stored yet does not store it: a small pre-session
        cookie carries the secret instead.
        """
        self._accessed = True
        secret = self.meta.csrf_secret
        if not secret:
            if self.pre_csrf_secret is None:
                self.pre_csrf_secret = secrets.token_urlsafe(32)
                self.pre_csrf_issued = True
            secret = self.pre_csrf_secret
        return csrf.token_for(secret)

    def csrf_valid(self, presented: str | None) -> bool:
        """Check ``presented`` against this session's token in constant time."""
        return csrf.token_matches(self.meta.csrf_secret or self.pre_csrf_secret, presented)

    # -- authentication --------------------------------------------------------
    @property
    def authenticated_at(self) -> datetime | None:
        """When the user last proved who they are (a timezone-aware UTC ``datetime``).

        Set when a user is bound (:attr:`user`: sign-in) and by
        :meth:`reauthenticated`, :meth:`credential_changed`; kept across
        :meth:`rotate`; None while the session is anonymous (and, until its save,
        for a sign-in on a session with no manager to read the time from).
        """
        at = self.meta.authenticated_at
        if at is None or self.meta.user is None:
            return None
        return datetime.fromtimestamp(at, timezone.utc)

    def reauthenticated(self) -> None:
        """Record that the user just proved who they are again (password, second factor).

        Call after the check succeeds: :attr:`authenticated_at` becomes now (the
        manager's clock), stored with the session's metadata at the end of this
        request, and :meth:`require_recent_auth` passes again. Raises
        ``RuntimeError`` on an anonymous session (there is nobody to authenticate).
        """
        if self.meta.user is None:
            raise RuntimeError("no user is bound to this session: set session.user at sign-in")
        self._stamp_authenticated()

    def require_recent_auth(self, max_age: float, *, now: float | None = None) -> None:
        """Raise :class:`~serversession.exceptions.ReauthenticationRequired` unless the user
        authenticated within the last ``max_age`` seconds.

        For sensitive actions (changing a password, an e-mail address, payment
        details): an anonymous session, one bound before authentication times
        were recorded, or one whose :attr:`authenticated_at` is more than
        ``max_age`` seconds old raises; every integration answers that with 401
        ``{"error": ..., "reauth_required": true}`` unless the app catches it.
        ``now`` (Unix seconds) defaults to the manager's clock. Raises
        ``TypeError`` for a ``max_age`` that is not a number, ``ValueError`` for
        NaN, and ``RuntimeError`` with neither ``now`` nor a manager.
        """
        if isinstance(max_age, bool) or not isinstance(max_age, (int, float)):
            raise TypeError(f"require_recent_auth() takes max_age in seconds, got {type(max_age).__name__}")
        if math.isnan(max_age):
            raise ValueError("require_recent_auth() needs a max_age in seconds, not NaN")
        if self.auth_stamp_due and self.meta.user is not None:
            return  # authenticated in this very request; the save stamps the time
        if now is None:
            if self._manager is None:
                raise RuntimeError("this session is not attached to a manager: pass now=")
            now = self._manager.clock()
        at = self.meta.authenticated_at if self.meta.user is not None else None
        if at is None:
            message = "this action needs a signed-in user who authenticated recently; the session has none"
        elif now - at > max_age:
            message = f"this action needs an authentication within {max_age:g} s; the last was {now - at:.0f} s ago"
        else:
            return
        raise ReauthenticationRequired(message, max_age=max_age, authenticated_at=self.authenticated_at)

    def credential_changed(self, reason: str = "credential changed") -> int:
        """The user changed a password, factor or role: see
        :meth:`SessionManager.credential_changed <serversession.SessionManager.credential_changed>`.

        This session gets a new ID now and counts as freshly authenticated;
        every other session of the user ends. Returns how many ended.
        """
        if self._manager is None:
            raise RuntimeError("this session is not attached to a manager")
        return self._manager.credential_changed(self, reason=reason)

    async def acredential_changed(self, reason: str = "credential changed") -> int:
        """Async twin of :meth:`credential_changed`."""
        if self._manager is None:
            raise RuntimeError("this session is not attached to a manager")
        return await self._manager.acredential_changed(self, reason=reason)

    def mark_authenticated(self, at: float) -> None:
        """For the lifecycle: the user authenticated at ``at`` (Unix seconds, kept to the ms)."""
        self.meta = self.meta.with_changes(authenticated_at=round(at, 3))
        self.auth_stamp_due = False
        self.auth_changed = True

    def _stamp_authenticated(self) -> None:
        if self._manager is None:  # the save stamps it with its own clock
            self.meta = self.meta.with_changes(authenticated_at=None)
            self.auth_stamp_due = self.auth_changed = True
        else:
            self.mark_authenticated(self._manager.clock())

    def _clear_authenticated(self) -> None:
        self.auth_stamp_due = False
        if self.meta.authenticated_at is not None:
            self.meta = self.meta.with_changes(authenticated_at=None)
            self.auth_changed = True

    # -- timing --------------------------------------------------------------
    def set_expiry(self, idle: float | None = None, *, at: float | None = None) -> None:
        """Shorten this session's server-side lifetime; never lengthen it.

        ``idle``: seconds of inactivity after which the session ends, sliding
        like the configured ``idle_timeout`` (each renewal pushes it on); the
        shorter of the two applies. ``at``: the Unix time (seconds) at which it
        ends however busy it is; the earlier of it and the absolute deadline
        applies. None (the default) sets no limit of that kind, so
        ``set_expiry()`` returns the session to the configured timeouts. Each
        call replaces both limits. Stored with the session's metadata at the end
        of the request and kept across :meth:`rotate`.

        The configured timeouts stay upper bounds: ``set_expiry(14 * 86400)``
        ("remember me") on a 30-minute ``idle_timeout`` still ends the session
        after 30 idle minutes, and every session still ends at
        ``absolute_timeout``. A limit already reached (``idle <= 0``, ``at`` not
        in the future) ends the session at this request's save: it is deleted,
        not stored, and its cookie cleared. Raises ``TypeError`` for a value that
        is not a number and ``ValueError`` for NaN or an infinity.
        """
        idle_limit, ends_at = _seconds("idle", idle), _seconds("at", at)
        if (idle_limit, ends_at) != (self.meta.idle_limit, self.meta.ends_at):
            self.meta = self.meta.with_changes(idle_limit=idle_limit, ends_at=ends_at)
            self.expiry_changed = True

    @property
    def idle_limit(self) -> float | None:
        """The idle limit :meth:`set_expiry` gave this session (seconds), or None."""
        return self.meta.idle_limit

    @property
    def ends_at(self) -> float | None:
        """The fixed end :meth:`set_expiry` gave this session (Unix time, seconds), or None."""
        return self.meta.ends_at

    @property
    def created_at(self) -> float:
        """Unix time the session was created (seconds)."""
        return self.meta.created_at

    @property
    def last_seen_at(self) -> float:
        """Unix time of the last renewal (precise to ``renew_fraction`` of the idle window)."""
        return self.meta.last_seen_at

    @property
    def absolute_expires_at(self) -> float:
        """Unix time the session ends however busy it is (the ``at`` of :meth:`set_expiry` if earlier)."""
        return self._deadlines()[1]

    @property
    def idle_expires_at(self) -> float:
        """Unix time the session ends if unused (never past :attr:`absolute_expires_at`)."""
        return self._deadlines()[0]

    def _deadlines(self) -> tuple[float, float]:
        from .lifecycle import deadlines  # the one place deadlines are computed (it imports this module)

        return deadlines(self.config, self.meta)

    # -- atomic read-modify-write ----------------------------------------------
    def modify(self, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """Atomically replace ``session[key]`` by ``fn(current value)`` in the store now.

        ``fn`` gets a private copy of the stored value (``default`` when absent)
        and returns the new value; under contention it is called again with the
        fresher value, so it must not have side effects. N concurrent requests
        each adding 1 give exactly N. Raises
        :class:`~serversession.exceptions.SessionEndedError` if the session was
        ended meanwhile and :class:`~serversession.exceptions.ConcurrentUpdateError`
        after ``modify_attempts`` lost races.
        """
        if self._manager is None:
            raise RuntimeError("this session is not attached to a manager")
        result: T = self._manager.modify(self, key, fn, default)
        return result

    async def amodify(self, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """Async twin of :meth:`modify`."""
        if self._manager is None:
            raise RuntimeError("this session is not attached to a manager")
        result: T = await self._manager.amodify(self, key, fn, default)
        return result

    # -- for the lifecycle -------------------------------------------------------
    def accept(self, key: str, encoded: str, value: Any) -> None:
        """Record that the store now holds ``encoded`` for ``key`` (after a modify)."""
        self.base = {**self.base, key: encoded}
        self._values[key] = copy.deepcopy(value)
        self._dirty.discard(key)
        self._deleted.discard(key)
        self._sizes.pop(key, None)

    def settle(self, renewed_at: float | None) -> None:
        """Take what was just saved as the new baseline and clear this request's requests.

        Called by the lifecycle after a successful write, so saving the same
        object again writes only what changed since (and never rotates twice).
        """
        to_set, unset = self.delta()
        base = {k: v for k, v in self.base.items() if k not in unset}
        base.update(to_set)
        self.base = base
        self._dirty.clear()
        self._deleted.clear()
        self._sizes.clear()
        self._rotate_requested = self.create_requested = False
        self.user_changed = self.persistent_changed = self.expiry_changed = self.auth_changed = False
        if renewed_at is not None:
            self.meta = self.meta.with_changes(last_seen_at=renewed_at)

    def delta(self) -> tuple[dict[str, str], frozenset[str]]:
        """Return (keys to set with their encoded text, keys to delete).

        Includes in-place changes to mutable values read during the request.
        Raises :class:`SessionTooLargeError` if the result is too large.
        """
        to_set: dict[str, str] = {}
        base = self.base
        for key, value in self._values.items():
            if key in self._dirty or isinstance(value, _MUTABLE):
                encoded = encode_value(key, value)
                if encoded != base.get(key):
                    to_set[key] = encoded
        unset = frozenset(k for k in self._deleted if k in base)
        if to_set:
            self._check_total(to_set, unset)
        return to_set, unset

    def encoded_data(self) -> dict[str, str]:
        """Every key's encoded text, for creating the session in a store."""
        to_set, unset = self.delta()
        data = {k: v for k, v in self.base.items() if k not in unset}
        data.update(to_set)
        return data

    @property
    def has_changes(self) -> bool:
        """Whether the request set or deleted any key (in-place edits are found at save)."""
        return bool(self._dirty) or any(isinstance(v, _MUTABLE) for v in self._values.values())

    def _base_size(self, exclude: str) -> int:
        dirty = self._dirty
        return sum(len(k) + len(v) for k, v in self.base.items() if k != exclude and k not in dirty)

    def _check_size(self, key: str, size: int) -> None:
        if size > self.config.max_size:
            raise SessionTooLargeError(
                f"session[{key!r}] is {size} bytes encoded; the limit is {self.config.max_size}",
                key=key,
                size=size,
                limit=self.config.max_size,
            )

    def _check_total(self, to_set: dict[str, str], unset: frozenset[str]) -> None:
        total = sum(len(k) + len(v) for k, v in self.base.items() if k not in to_set and k not in unset)
        total += sum(len(k) + len(v) for k, v in to_set.items())
        if total > self.config.max_size:
            key = next(iter(to_set))
            raise SessionTooLargeError(
                f"session is {total} bytes encoded; the limit is {self.config.max_size}",
                key=key,
                size=total,
                limit=self.config.max_size,
            )


def _seconds(name: str, value: float | None) -> float | None:
    """A :meth:`Session.set_expiry` argument as the metadata keeps it (rounded to ms), or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"set_expiry({name}=...) takes seconds as a number, or None; got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"set_expiry({name}=...) must be finite; got {value!r}")
    return round(float(value), 3)


# -- the internal interface: what the managers and the kit use, nothing more ----------------


def deferred(config: SessionConfig, loader: Loader, *, via_header: bool) -> Session:
    """A session whose store read waits for its first use (see the module docstring).

    For the kit, which knows a token was presented (``via_header`` says how) but
    not yet whether it names a live session. ``loader`` reads it, once.
    """
    session = Session.__new__(Session)
    session.__dict__.update(
        config=config,
        _via_header=via_header,
        _presented=True,
        _accessed=False,
        _rotate_requested=False,
        _destroy_requested=False,
        _pending=loader,
    )
    return session


def read_failed(session: Session) -> bool:
    """Whether ``session`` is deferred and its store read failed (the request was served without it)."""
    pending = session.__dict__.get("_pending")
    return pending is not None and bool(pending.failed)


def attach(session: Session, manager: _Modifier, seq: int) -> None:
    """For a manager: ``session`` was loaded by ``manager`` as its load number ``seq``.

    ``modify``, ``credential_changed`` and the authentication clock then go
    through that manager; ``seq`` orders the load against the manager's modify
    history (see ``manager._KeyGate``).
    """
    session._manager = manager
    session._load_seq = seq


def load_seq(session: Session) -> int:
    """Where ``session``'s load stands in its manager's modify history (-1: not attached)."""
    return session._load_seq


def stored_text(session: Session, key: str) -> str | None:
    """The encoded text the store holds for ``key`` as far as ``session`` knows, or None."""
    return session.base.get(key)
