"""The Django session engine: Django's session API over the serversession lifecycle.

Django's own ``SessionMiddleware`` keeps managing the cookie, so the Django
``session_key`` *is* our session ID (the store only ever sees its SHA-256), and
every ``SESSION_COOKIE_*`` setting, ``SESSION_EXPIRE_AT_BROWSER_CLOSE`` and
``SESSION_SAVE_EVERY_REQUEST`` behave as Django documents them. The mapping:

* ``load()``: one store read, on first access (Django loads lazily, and our
  ``SessionMiddleware`` keeps it so: a request that never touches
  ``request.session`` costs no store command). A key the
  store does not know gives an empty session whose key becomes None: saving it
  creates a new server-made ID (strict mode; never the client's).
* ``save()``: a delta commit of the keys this request changed (concurrent
  requests changing different keys both keep theirs); the session is bound to
  the signed-in user (``_auth_user_id``) so it can be listed and revoked.
  Raises ``UpdateError`` (Django answers 400) when the session was ended meanwhile.
  A ``save()`` that creates the session marks it modified, as Django's own
  engines do, so the common ``if not request.session.session_key:
  request.session.save()`` gets its new key to the browser.
* ``cycle_key()`` (``login()``): a rotation, stored at once (as Django's own
  engines do), so ``session_key`` is the new ID from then on. The old ID dies.
* ``flush()`` (``logout()``): the stored session is deleted at once.
* ``set_expiry()``: enforced on the server too, through
  :meth:`Session.set_expiry <serversession.Session.set_expiry>`, at the next
  ``save()``. An int is seconds of inactivity (sliding), a ``datetime`` or
  ``timedelta`` a fixed end, ``0`` a browser-session cookie with the default
  server lifetime, ``None`` the global policy; a value already reached
  (``set_expiry(-10)``, a past datetime) ends the session at that save (deleted,
  the key gone: the cookie Django then sends has a negative ``Max-Age``). It
  shortens the server-side lifetime, never stretches it: a session still ends at
  the idle timeout (``SESSION_COOKIE_AGE``) or the absolute timeout, so a
  "remember me" ``set_expiry(14 days)`` stays bounded by the absolute timeout.
  ``get_expiry_age()`` and the cookie are Django's, unchanged.
* ``clear_expired()`` (``manage.py clearsessions``): purges expired sessions
  (a no-op on stores with native expiry such as Redis).
* Added: ``modify(key, fn, default)`` (atomic read-modify-write) and ``raw``
  (the underlying :class:`~serversession.Session`).
* Added, the authentication controls: ``authenticated_at`` (set when
  ``login()``'s user is bound, kept by ``cycle_key()``), ``reauthenticated()``
  (after a password check), ``require_recent_auth(max_age)`` (raises
  :class:`~serversession.exceptions.ReauthenticationRequired`, which our
  ``SessionMiddleware`` answers 401 ``{"error": ..., "reauth_required": true}``)
  and ``credential_changed()``. After a password change call
  :func:`credential_changed` ``(request, user)`` in place of Django's
  ``update_session_auth_hash(request, user)``: it keeps the auth hash current as
  that does, gives this session a new key at once and ends every other session
  of the user in the store (where Django would only refuse them at their next
  request). ``update_session_auth_hash()`` itself keeps working (its
  ``cycle_key()`` is a rotation that keeps ``authenticated_at``). A sign-in
  racing a password change is voided when its request started before the
  change (``docs/security.md``): the start is taken from Django's
  ``request_started`` signal, under ASGI from our ``SessionMiddleware``.

Settings: ``SERVERSESSION_STORE`` (URL, default ``sqlite:///serversession.sqlite3``),
``SERVERSESSION_CONFIG`` (optional dict of :class:`SessionConfig` fields, e.g.
``{"rotation_grace": 5}``). The authentication controls need no setting: the
re-authentication window is the ``max_age`` a view passes. The
idle timeout is ``SESSION_COOKIE_AGE``; the absolute timeout defaults to the
larger of that and 12 h. Values are JSON (Django's default serializer too);
``SESSION_SERIALIZER`` is not consulted. Django's CSRF middleware stays in
charge of CSRF.

The user agent and client IP kept with each session come from Django's
``request_started`` signal (the engine is never handed the request) and, under
ASGI, where that signal's receivers run in a copied context, from our
``SessionMiddleware`` (:func:`remember_client`): use it to see devices there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.signals import request_finished, request_started

from ...core.config import SessionConfig
from ...core.lifecycle import renewal_due
from ...core.session import Session
from ...core.transport import IncomingToken, client_ip, session_id_from_token, token_for_client
from ...exceptions import SessionEndedError, SessionError, StoreError
from ...manager import SessionManager
from ...stores.url import DEFAULT_STORE_URL, open_store

T = TypeVar("T")

#: ``django.contrib.auth.SESSION_KEY``: where Django keeps the signed-in user's ID.
AUTH_USER_KEY = "_auth_user_id"
#: Where Django's ``set_expiry()`` keeps its value (seconds, or an ISO 8601 datetime).
EXPIRY_KEY = "_session_expiry"

_managers: dict[tuple[Any, ...], SessionManager] = {}
_managers_lock = threading.Lock()
_last: tuple[Any, Any, Any, SessionManager] | None = None
# (user agent, peer address, X-Forwarded-For, start time on the manager's clock) of the
# request this thread or task serves.
_client: ContextVar[tuple[str, str | None, str | None, float | None]] = ContextVar(
    "serversession_django_client", default=("", None, None, None)
)


def get_manager() -> SessionManager:
    """The :class:`SessionManager` built from the current Django settings (one per distinct settings).

    The per-user session cap has settings of its own: ``SERVERSESSION_MAX_SESSIONS_PER_USER``
    (``SessionConfig.max_sessions_per_user``; unset or 0: no limit) and
    ``SERVERSESSION_ON_LIMIT`` (``"evict"``, the default: ``login()`` beyond it ends
    the user's least recently used session; ``"refuse"``: ``login()``'s save raises
    :class:`~serversession.exceptions.SessionLimitError`); when set they win over
    the same fields in ``SERVERSESSION_CONFIG``. Raises
    :class:`~serversession.exceptions.ConfigurationError` for a bad
    ``SERVERSESSION_STORE``, ``SERVERSESSION_CONFIG`` or cap setting.
    """
    global _last
    raw_store = getattr(settings, "SERVERSESSION_STORE", None)
    raw_options = getattr(settings, "SERVERSESSION_CONFIG", None)
    age = settings.SESSION_COOKIE_AGE
    cap = (getattr(settings, "SERVERSESSION_MAX_SESSIONS_PER_USER", None),
           getattr(settings, "SERVERSESSION_ON_LIMIT", None))  # fmt: skip
    last = _last  # fast path: the same settings objects as last time (every request but the first)
    if last is not None and last[0] is raw_store and last[1] is raw_options and last[2] == (age, cap):
        return last[3]
    store = raw_store or DEFAULT_STORE_URL
    limits = {name: value for name, value in zip(("max_sessions_per_user", "on_limit"), cap, strict=True)
              if value is not None}  # fmt: skip
    options = {**dict(raw_options or {}), **limits}
    idle = float(age)
    cache_key = (store if isinstance(store, str) else id(store), idle, repr(sorted(options.items())))
    manager = _managers.get(cache_key)
    if manager is None:
        with _managers_lock:
            manager = _managers.get(cache_key)
            if manager is None:
                fields: dict[str, Any] = {
                    "idle_timeout": idle,
                    "absolute_timeout": max(idle, SessionConfig.absolute_timeout),
                    "csrf": False,  # Django's CsrfViewMiddleware does this job
                    "header_transport": False,  # Django reads the session cookie only
                    **options,
                }
                backend = open_store(store) if isinstance(store, str) else store
                manager = _managers[cache_key] = SessionManager(backend, SessionConfig(**fields))
    _last = (raw_store, raw_options, (age, cap), manager)
    return manager


def _remember_client(sender: Any, environ: dict[str, Any] | None = None, scope: dict[str, Any] | None = None,
                     **kwargs: Any) -> None:  # fmt: skip
    if environ is not None:
        _client.set((environ.get("HTTP_USER_AGENT", ""), environ.get("REMOTE_ADDR"),
                     environ.get("HTTP_X_FORWARDED_FOR"), _now()))  # fmt: skip
    elif scope is not None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        peer = scope.get("client")
        _client.set((headers.get("user-agent", ""), peer[0] if peer else None, headers.get("x-forwarded-for"),
                     _now()))  # fmt: skip


def _now() -> float | None:
    """The manager's clock at the start of a request, or None when the settings are broken
    (the engine itself reports that when a view uses the session)."""
    try:
        return get_manager().clock()
    except SessionError:
        return None


def remember_client(meta: Mapping[str, Any]) -> None:
    """Record the request's User-Agent and address (``request.META``) for the session.

    Our middleware calls this: under ASGI, Django runs sync ``request_started``
    receivers in a copied context, so what they record never reaches the request.
    """
    started = _client.get()[3]
    _client.set((meta.get("HTTP_USER_AGENT", ""), meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"),
                 _now() if started is None else started))  # fmt: skip


def _apply_expiry(ours: Session, value: Any) -> None:
    """Carry Django's ``set_expiry()`` value (as kept under ``_session_expiry``) to the server side.

    An int or float is an idle limit in seconds (``0``: none, the cookie ends
    with the browser), an ISO 8601 text a fixed end (naive means local time, as
    Django's ``timezone.now()`` is without ``USE_TZ``); None or anything else
    returns the session to the global policy.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value:
        ours.set_expiry(value)
    elif isinstance(value, str):
        try:
            ends = datetime.fromisoformat(value)
        except ValueError:
            ours.set_expiry()
        else:
            ours.set_expiry(at=ends.timestamp())
    else:
        ours.set_expiry()


def _forget_client(sender: Any, **kwargs: Any) -> None:
    _client.set(("", None, None, None))


request_started.connect(_remember_client, dispatch_uid="serversession.django.client")
request_finished.connect(_forget_client, dispatch_uid="serversession.django.client.end")


class SessionStore(SessionBase):  # type: ignore[misc]
    """``SESSION_ENGINE = "serversession.integrations.django"``: see the module docs for the mapping."""

    # Set by Django's base class (a property) and on first load; declared for mypy only.
    _session_key: str | None
    _session_cache: Session

    def __init__(self, session_key: str | None = None) -> None:
        self._manager = get_manager()
        self._ip: str | None = None
        #: A save found the session rotated by a concurrent request (see :meth:`save`).
        self.moved_away = False
        #: The first read found a live session under the client's key (our middleware's
        #: ``Clear-Site-Data`` at logout needs it); None until the session is read.
        self.presented_live: bool | None = None
        #: The store failed on the session's first read: raised again at every later use
        #: (one read per request), and our middleware answers 503 in place of a 500.
        self.read_error: StoreError | None = None
        super().__init__(session_key)

    # -- keys and loading ------------------------------------------------------
    def _validate_session_key(self, key: Any) -> bool:
        # Garbage (wrong shape or signature) is dropped before any store round trip.
        return isinstance(key, str) and session_id_from_token(self._manager.config, key) is not None

    def _open(self, key: str | None) -> Session:
        manager = self._manager
        user_agent, peer, forwarded_for, started = _client.get()
        self._ip = client_ip(manager.config, peer, forwarded_for)
        token = IncomingToken(key, via_header=False)
        ours = manager.load(token, user_agent=user_agent, ip=self._ip)
        if started is not None:
            # Django loads lazily, often after login()'s password check: the request's start
            # is the time no credential it checked can predate (a credential change voids later binds).
            ours.backdate_load(started)
        if key is not None:
            if self.presented_live is None:
                self.presented_live = not ours.is_new
                event = manager.guard.observe(token, ours, self._ip, manager.clock())  # a guessed ID?
                if event is not None:
                    manager.emit(event)
            if ours.is_new:
                self._session_key = None  # strict mode: the client's key is never adopted
            elif renewal_due(manager.config, ours.meta, manager.clock()):
                # Django saves only modified sessions; this one's idle deadline is due for renewal.
                self.modified = True
        return ours

    def _get_session(self, no_load: bool = False) -> Session:
        self.accessed = True
        try:
            cached: Session = self._session_cache
            return cached
        except AttributeError:
            pass
        if self.read_error is not None:
            raise self.read_error
        try:
            ours = self._open(None if no_load else self.session_key)
        except StoreError as exc:
            self.read_error = exc
            raise
        self._session_cache = ours
        return ours

    _session = property(_get_session)

    async def _aget_session(self, no_load: bool = False) -> Session:
        self.accessed = True
        try:
            cached: Session = self._session_cache
            return cached
        except AttributeError:
            pass
        ours: Session = await sync_to_async(self._get_session)(no_load)
        return ours

    def preload(self) -> None:
        """Load the session now rather than on first use (raises StoreError if the store is down)."""
        accessed = self.accessed
        self._get_session()
        self.accessed = accessed

    @property
    def raw(self) -> Session:
        """The underlying :class:`~serversession.Session` (loaded on first use)."""
        return self._get_session()

    def load(self) -> Session:
        """Load the session under ``session_key`` (a fresh one if the store does not know it)."""
        return self._open(self.session_key)

    def exists(self, session_key: str) -> bool:
        """Whether the store holds a live session under ``session_key`` (one store read)."""
        return not self._manager.load(IncomingToken(session_key, via_header=False)).is_new

    # -- writing -----------------------------------------------------------------
    def create(self) -> None:
        """Store the current data under a brand-new key now."""
        current = self._get_session()
        fresh = self._open(None)
        for key, value in current.items():
            fresh[key] = value
        fresh.persistent = current.persistent
        self._session_cache = fresh
        self._session_key = None
        self.save(must_create=True)
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        """Commit this request's changes (creating the session if needed) and update ``session_key``.

        Raises ``CreateError`` when ``must_create`` and the session exists,
        ``UpdateError`` when it was ended meanwhile, and
        :class:`~serversession.exceptions.StoreError` when the store fails.
        """
        ours = self._get_session(no_load=must_create)
        if must_create and not ours.is_new:
            raise CreateError
        _bind_user(ours)
        ours.persistent = not self.get_expire_at_browser_close()
        _apply_expiry(ours, ours.get(EXPIRY_KEY))
        ours.ensure_stored()
        creating = ours.is_new
        result = self._manager.save(ours, ip=self._ip)
        if result.moved:
            # Another request rotated the session meanwhile (a login in another tab) and
            # carries the new key; our changes went there. Sending our old key would sign
            # this browser out: UpdateError keeps Django from setting the cookie (our
            # middleware then answers the view's response as is; Django's answers 400).
            self.moved_away = True
            raise UpdateError
        if result.expired:
            # set_expiry() in the past (or a limit of 0 seconds or less): the session ended
            # here, as Django's engines end it; not an error, the key is simply gone.
            self._session_cache = self._open(None)
            self._session_key = None
            return
        if result.ended or ours.session_id is None:
            raise UpdateError
        self._session_key = token_for_client(self._manager.config, ours.session_id)
        self._session_cache = ours  # the lifecycle settled it: a later save writes only later changes
        if creating:
            self.modified = True  # as Django's engines do: the new key must reach the browser

    def delete(self, session_key: str | None = None) -> None:
        """Delete the session under ``session_key`` (default: this one) from the store now."""
        if session_key is None or session_key == self.session_key:
            if self.session_key is None:
                return
            target = self._get_session()
        else:
            target = self._manager.load(IncomingToken(session_key, via_header=False))
        target.destroy()
        self._manager.save(target, ip=self._ip)

    def clear(self) -> None:
        """Delete every key; the session itself lives on (see :meth:`flush`)."""
        self._get_session().clear()
        self.accessed = self.modified = True

    def flush(self) -> None:
        """End the session now (``logout()``): deleted from the store, key gone."""
        self.delete()
        self._session_cache = self._open(None)
        self._session_key = None
        self.accessed = self.modified = True

    async def aflush(self) -> None:
        """Async :meth:`flush`."""
        await sync_to_async(self.flush)()

    def cycle_key(self) -> None:
        """New session ID, data kept (``login()``), stored at once as Django's engines do.

        So ``session_key`` read right after ``login()`` (by a ``user_logged_in``
        receiver recording it for later revocation, say) is the key that lives.
        """
        self._get_session().rotate()
        self.save()
        self.modified = True

    async def acycle_key(self) -> None:
        """Async :meth:`cycle_key`."""
        await sync_to_async(self.cycle_key)()

    def modify(self, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """Atomically replace ``self[key]`` by ``fn(value)`` in the store now (see :meth:`Session.modify`)."""
        ours = self._get_session()
        value = ours.modify(key, fn, default)
        if ours.is_new:
            self.modified = True  # not stored yet: the value goes in when the session is created
        return value

    # -- authentication controls ---------------------------------------------------
    @property
    def authenticated_at(self) -> datetime | None:
        """When the signed-in user last proved who they are (UTC), None while anonymous
        (see :attr:`Session.authenticated_at <serversession.Session.authenticated_at>`)."""
        ours = self._get_session()
        _bind_user(ours)
        return ours.authenticated_at

    def reauthenticated(self) -> None:
        """The user just proved who they are again: :attr:`authenticated_at` becomes now."""
        ours = self._get_session()
        _bind_user(ours)
        ours.reauthenticated()
        self.modified = True

    def require_recent_auth(self, max_age: float) -> None:
        """Raise :class:`~serversession.exceptions.ReauthenticationRequired` unless the user
        authenticated within ``max_age`` seconds (see :meth:`Session.require_recent_auth
        <serversession.Session.require_recent_auth>`)."""
        ours = self._get_session()
        _bind_user(ours)
        ours.require_recent_auth(max_age)

    def credential_changed(self, reason: str = "credential changed") -> int:
        """The user changed a credential: a new key now, every other session of theirs ended.

        Returns how many ended; see :meth:`SessionManager.credential_changed
        <serversession.SessionManager.credential_changed>` (and :func:`credential_changed`,
        which also keeps Django's auth hash current). Raises ``RuntimeError`` when no
        user is signed in and ``UpdateError`` when the session was ended meanwhile.
        """
        ours = self._get_session()
        _bind_user(ours)
        ours.persistent = not self.get_expire_at_browser_close()
        _apply_expiry(ours, ours.get(EXPIRY_KEY))
        try:
            ended = self._manager.credential_changed(ours, reason=reason)
        except SessionEndedError:
            raise UpdateError from None
        if ours.session_id is not None:
            self._session_key = token_for_client(self._manager.config, ours.session_id)
        self._session_cache = ours
        self.modified = True  # the new key must reach the browser
        return ended

    @classmethod
    def clear_expired(cls) -> None:
        """Purge expired sessions (``manage.py clearsessions``)."""
        store = get_manager().store
        while store.purge_expired(1000) >= 1000:
            pass


def _bind_user(ours: Session) -> None:
    """Bind the session to the user Django's ``login()`` recorded (``_auth_user_id``), or none."""
    user = ours.get(AUTH_USER_KEY)
    ours.user = None if user is None else str(user)


def credential_changed(request: Any, user: Any = None, *, reason: str = "credential changed") -> int:
    """After a password (or factor, or role) change: use in place of ``update_session_auth_hash``.

    ``credential_changed(request, user)`` keeps the session's auth hash current
    for ``user`` (as ``update_session_auth_hash`` does, when ``user`` is the
    signed-in one), gives this session a new key at once, marks it freshly
    authenticated and ends every other session of the user in the store, each
    with a REVOKED event carrying ``reason``. Returns how many ended. Raises
    ``TypeError`` when ``request.session`` is not this engine's.
    """
    session = request.session
    if not isinstance(session, SessionStore):
        raise TypeError('credential_changed() needs SESSION_ENGINE = "serversession.integrations.django"')
    if user is not None and hasattr(user, "get_session_auth_hash") and request.user == user:
        from django.contrib.auth import HASH_SESSION_KEY

        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    return session.credential_changed(reason)
