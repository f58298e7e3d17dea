"""Flask integration: server-side sessions behind Flask's own ``session``.

One line turns it on; views keep using :data:`flask.session` as before::

    from serversession.integrations import flask as serversession_flask
    from flask import Flask, redirect, request, session, url_for

    app = Flask(__name__)
    serversession_flask.init_app(app, store="redis://127.0.0.1:6379/0")

    @app.post("/login")
    def login():
        ...  # check the password first
        session["username"] = request.form["username"]
        session.user = request.form["username"]  # optional: lists and revokes by user
        session.rotate()  # new session ID at sign-in: defeats session fixation
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout():
        session.destroy()  # deletes the stored session and clears the cookie
        return redirect(url_for("index"))

Forms carry the CSRF token: ``<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">``
(or send an ``X-CSRF-Token`` header).

**What works unchanged**: the mapping API (``session["k"] = v``, ``get``,
``pop``, ``setdefault``, ``update``, ``clear``, ``in``, iteration), ``flash()``,
``session.permanent`` (our ``persistent``: the cookie gets a ``Max-Age`` that
never outlives the absolute timeout), ``session.modified`` (whether the request
changed anything; setting it is accepted and needless, in-place edits of nested
values are found at save), ``session.new`` (not stored yet), ``session.accessed``
(adds ``Vary: Cookie``), the test client's ``session_transaction()``.
**Added**: ``session.rotate()``, ``session.destroy()``, ``session.modify(key, fn,
default)`` (atomic read-modify-write), ``session.user``, ``session.csrf_token``,
the authentication controls ``session.authenticated_at``,
``session.reauthenticated()``, ``session.require_recent_auth(max_age)`` (a
``ReauthenticationRequired`` escaping the view answers 401 with
``"reauth_required": true``) and ``session.credential_changed()``, and
``session.raw`` (the :class:`~serversession.Session`). ``session.clear()``, which
Flask's tutorial uses to sign in and out, also gives a stored session a new ID,
so a planted or kept copy of the old cookie gets nothing.

**Flask settings** are read once, by :func:`init_app`:

* ``SESSION_COOKIE_NAME``: honoured, except Flask's default ``"session"``, which
  becomes ``"__Host-session"`` whenever the cookie qualifies for that prefix.
* ``SESSION_COOKIE_SECURE``: ``True`` is honoured; Flask's default ``False`` is
  overridden (the cookie stays ``Secure``). Plain-HTTP development passes
  ``cookie_secure=False`` to :func:`init_app`.
* ``SESSION_COOKIE_SAMESITE``: honoured; Flask's default ``None`` becomes ``Lax``.
* ``SESSION_COOKIE_PATH`` (else ``APPLICATION_ROOT``), ``SESSION_COOKIE_DOMAIN``: honoured.
* ``PERMANENT_SESSION_LIFETIME``: when changed from Flask's 31-day default, it is
  the absolute timeout (no session, permanent or not, lives longer; the idle
  timeout is capped to it). The default is not taken: sessions end after 12 h.
* ``SESSION_COOKIE_HTTPONLY`` (always ``HttpOnly``), ``SESSION_COOKIE_PARTITIONED``
  and ``SESSION_REFRESH_EACH_REQUEST`` (renewal follows ``renew_fraction``) are
  overridden. ``SECRET_KEY`` is not needed: the cookie holds a random ID, not
  data (pass ``secret_keys=`` to sign IDs as well).
* ``SERVERSESSION_STORE``: the store URL when ``store`` is not passed
  (default ``sqlite:///serversession.sqlite3``).
* ``SERVERSESSION_CSRF`` (default ``True``): check the CSRF token on unsafe
  methods, like the middleware: ``403`` with a JSON error when it is missing or
  wrong. The token is read from ``X-CSRF-Token`` or the ``csrf_token`` form
  field (urlencoded or multipart, as Flask parses it). Turn it off when Flask-WTF
  already protects the app; exempt one view with :func:`csrf_exempt`.

**Not supported**: values are plain JSON, not Flask's tagged JSON: tuples come
back as lists, and ``bytes``, ``datetime``, ``UUID`` raise
:class:`~serversession.exceptions.NotSerializableError` where they are set
(``Markup`` is stored as a plain string). Changes made while a streamed body is
being sent are not saved.

The session is read from the store at its first use (at most once): a request
that never touches ``session`` (a static file, a health check, a view that
ignores it) costs no store command and gets no session headers. An unsafe
request that needs the CSRF check is read before the view, to check the token.

A store outage answers ``503`` with a JSON error and ``Retry-After``, whether it
hits at the session's first use (before the view for a CSRF check, or in the
view or a hook), during the view (``session.modify``) or when it is saved. A
view that lets ``ReauthenticationRequired`` escape answers ``401``
``{"error": ..., "reauth_required": true}`` (register your own handler for it to
show a password prompt instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from flask import Flask, current_app, request
from flask import session as flask_session
from flask.sessions import SessionInterface, SessionMixin
from flask.wrappers import Request, Response

from ..core import csrf
from ..core.codec import SessionMeta
from ..core.config import SessionConfig
from ..core.guard import STORE_UNAVAILABLE, Refusal, refusal_for_error
from ..core.session import Session, read_failed
from ..core.transport import client_ip
from ..exceptions import (
    ConcurrentUpdateError,
    ConfigurationError,
    ReauthenticationRequired,
    SessionEndedError,
    SessionLimitError,
    StoreError,
)
from ..manager import SessionManager
from ..stores.url import DEFAULT_STORE_URL, open_store
from .kit import (
    CSRF_EXEMPT_ATTR,
    Opened,
    facts_from_headers,
    finish,
    is_csrf_exempt,
    lazy_session,
    pick_headers,
    refuse,
)
from .kit import csrf_exempt as _mark_exempt
from .wsgi import ENVIRON_KEY

__all__ = ["FlaskSession", "ServerSessionInterface", "config_from_flask", "csrf_exempt", "get_manager", "init_app"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("serversession")

_ERROR_KEY = "serversession.store_error"
#: A refusal decided before the session was loaded (guessing throttle), answered by the guard hook.
_REFUSAL_KEY = "serversession.refusal"
#: Kept for code that read it: the marker is the kit's now, shared by Flask, Quart and aiohttp.
_EXEMPT_ATTR = CSRF_EXEMPT_ATTR
_FLASK_DEFAULT_LIFETIME = timedelta(days=31)


class FlaskSession(SessionMixin):
    """Flask's session API (:class:`~flask.sessions.SessionMixin`) over a :class:`Session`."""

    def __init__(self, raw: Session, ip: str) -> None:
        #: The underlying :class:`~serversession.Session`.
        self.raw = raw
        self.ip = ip
        self.accessed = False
        #: Its store read failed and the 503 was answered: hooks running on that answer see an
        #: empty session (see :func:`_drop_unread`) and nothing is saved.
        self.unavailable = False

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.raw[key] = value

    def __delitem__(self, key: str) -> None:
        del self.raw[key]

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        if not self.raw.loaded:
            return "<FlaskSession (not read from the store yet)>"
        return f"<FlaskSession handle={self.raw.handle!r} keys={sorted(self.raw)!r}>"

    def clear(self) -> None:
        """Delete every key and unbind the user; a stored session also gets a new ID.

        Flask's tutorial signs in and out with ``session.clear()``; the new ID
        means a copy of the old cookie (planted before sign-in, or kept after
        sign-out) gets nothing. To delete the stored session, see :meth:`destroy`.
        """
        raw = self.raw
        raw.clear()
        raw.user = None
        if not raw.is_new:
            raw.rotate()
        else:  # nor keep a pre-session CSRF secret the client could have been handed
            raw.discard_pre_session_csrf()

    @property
    def permanent(self) -> bool:
        """Flask's ``permanent``: our ``persistent`` (a cookie that survives a browser restart)."""
        return self.raw.persistent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self.raw.persistent = value

    @property
    def modified(self) -> bool:
        """Whether this request changed the session. Setting it is accepted and needless."""
        return self.raw.modified

    @modified.setter
    def modified(self, value: bool) -> None:
        pass  # in-place edits of values read in this request are found at save anyway

    @property
    def new(self) -> bool:
        """True until the session is stored (it is created lazily, on the first write)."""
        return self.raw.is_new

    @new.setter
    def new(self, value: bool) -> None:
        raise AttributeError("session.new is read-only")

    @property
    def user(self) -> str | None:
        """The user this session is bound to, for listing and revoking (see :attr:`Session.user`)."""
        return self.raw.user

    @user.setter
    def user(self, value: str | None) -> None:
        self.raw.user = value

    @property
    def csrf_token(self) -> str:
        """The CSRF token for forms (``csrf_token`` field) and the ``X-CSRF-Token`` header."""
        return self.raw.csrf_token

    def rotate(self) -> None:
        """New session ID at the end of this request, data kept; call at sign-in."""
        self.raw.rotate()

    def destroy(self) -> None:
        """End the session at the end of this request: data deleted, cookie cleared."""
        self.raw.destroy()

    def modify(self, key: str, fn: Callable[[Any], T], default: Any = None) -> T:
        """Atomically replace ``session[key]`` by ``fn(value)`` in the store now (see :meth:`Session.modify`)."""
        return self.raw.modify(key, fn, default)

    @property
    def authenticated_at(self) -> datetime | None:
        """When the user last proved who they are (UTC ``datetime``), None while anonymous
        (see :attr:`Session.authenticated_at`)."""
        return self.raw.authenticated_at

    def reauthenticated(self) -> None:
        """The user just proved who they are again (after your password or second-factor check)."""
        self.raw.reauthenticated()

    def require_recent_auth(self, max_age: float) -> None:
        """Raise :class:`~serversession.exceptions.ReauthenticationRequired` (401 with
        ``"reauth_required": true``) unless the user authenticated within ``max_age`` seconds."""
        self.raw.require_recent_auth(max_age)

    def credential_changed(self, reason: str = "credential changed") -> int:
        """The user changed a password, factor or role: new ID for this session now, every other
        session of the user ended; returns how many (see :meth:`SessionManager.credential_changed
        <serversession.SessionManager.credential_changed>`)."""
        return self.raw.credential_changed(reason)


class _UnavailableSession(dict[str, Any], SessionMixin):
    """Stands in when the request has no session to give: the store failed (503) or the
    guard refused the request before loading it (429).

    The guard hook answers before any view runs, but ``after_request`` hooks still
    run on that answer and may read the session (Flask-Login's does): they see an
    empty one, and whatever they write is dropped (it is never saved), so the
    answer stays the guard's instead of becoming a 500.
    """

    def __init__(self, error: StoreError | None = None) -> None:
        super().__init__()
        self.error = error
        self.accessed = False
        self.modified = False


class ServerSessionInterface(SessionInterface):
    """A Flask :class:`~flask.sessions.SessionInterface` backed by a sync :class:`SessionManager`.

    Prefer :func:`init_app`, which also installs the CSRF check, the 503
    handling and the ``csrf_token()`` template helper.
    """

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager

    def open_session(self, app: Flask, request: Request) -> SessionMixin:
        """The request's session, read from the store at its first use (at most one read)."""
        manager = self.manager
        environ = request.environ  # read directly: werkzeug's header view costs more than the rest of this
        ip = client_ip(manager.config, environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))
        token = manager.read_token(environ.get("HTTP_COOKIE"), environ.get("HTTP_AUTHORIZATION"))
        now = manager.clock()
        refusal = manager.guard.throttle(token, ip, now)
        if refusal is not None:  # answered by the guard hook, before any view
            request.environ[_REFUSAL_KEY] = refusal
            return _UnavailableSession()
        try:
            raw = lazy_session(manager, token, environ.get("HTTP_USER_AGENT", ""), ip, now)
        except StoreError as exc:  # read at once only without a token, which asks no store: defensive
            log.warning("session store failed on load: %s", exc)
            request.environ[_ERROR_KEY] = exc
            return _UnavailableSession(exc)
        request.environ[ENVIRON_KEY] = raw
        return FlaskSession(raw, ip)

    def is_null_session(self, obj: object) -> bool:
        """An unavailable session (store down) is never saved."""
        if isinstance(obj, FlaskSession):
            return obj.unavailable
        return isinstance(obj, _UnavailableSession) or super().is_null_session(obj)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write what the request changed and add ``Set-Cookie``; a store failure turns the response into a 503."""
        if not isinstance(session, FlaskSession):
            return
        if session.accessed:
            _vary_on_cookie(response)
        raw = session.raw
        if not raw.loaded and not read_failed(raw):
            return  # never read: nothing to save, renew or add (kit.finish would say the same)
        added = finish(self.manager, Opened(session.raw, session.ip, None), response.headers.keys(),
                       response.status_code)  # fmt: skip
        if isinstance(added, Refusal):  # store down (503), a refused sign-in or a lost race (409)
            _become_error(response, added)
            return
        for name, value in added:
            if name != "Vary":  # added above, Flask's way
                response.headers.add(name, value)


def _vary_on_cookie(response: Response) -> None:
    """Add ``Vary: Cookie`` without ``response.vary``, which parses and rebuilds the header set
    (about 5 % of a session read in a profile)."""
    vary = response.headers.get("Vary")
    if not vary:
        response.headers["Vary"] = "Cookie"
    elif "cookie" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Cookie"


def config_from_flask(app: Flask, **options: Any) -> SessionConfig:
    """Build a :class:`SessionConfig` from Flask's settings (see the module docs); ``options`` win."""
    conf = app.config
    derived: dict[str, Any] = {
        "cookie_path": conf.get("SESSION_COOKIE_PATH") or conf.get("APPLICATION_ROOT") or "/",
    }
    name = conf.get("SESSION_COOKIE_NAME")
    if name and name != "session":
        derived["cookie_name"] = name
    if conf.get("SESSION_COOKIE_DOMAIN"):
        derived["cookie_domain"] = conf["SESSION_COOKIE_DOMAIN"]
    if conf.get("SESSION_COOKIE_SAMESITE"):
        derived["cookie_samesite"] = str(conf["SESSION_COOKIE_SAMESITE"]).lower()
    lifetime = app.permanent_session_lifetime
    if lifetime != _FLASK_DEFAULT_LIFETIME:
        derived["absolute_timeout"] = lifetime.total_seconds()
        derived["idle_timeout"] = min(SessionConfig.idle_timeout, lifetime.total_seconds())
    derived.update(options)
    return SessionConfig(**derived)


def init_app(
    app: Flask, store: Any = None, config: SessionConfig | None = None, **options: Any
) -> ServerSessionInterface:
    """Give ``app`` server-side sessions; ``flask.session`` keeps working.

    ``store`` is a store object (sync face) or URL (default:
    ``app.config["SERVERSESSION_STORE"]``, else ``sqlite:///serversession.sqlite3``).
    ``config`` is used as is; without it the config comes from Flask's settings
    and ``options`` (any :class:`SessionConfig` field, e.g. ``cookie_secure=False``).
    Raises :class:`ConfigurationError` for a bad store URL or setting, or when
    both ``config`` and ``options`` are given.
    """
    if config is not None and options:
        raise ConfigurationError("pass either config= or SessionConfig options, not both")
    if store is None or isinstance(store, str):
        store = open_store(store or app.config.get("SERVERSESSION_STORE") or DEFAULT_STORE_URL)
    manager = SessionManager(store, config or config_from_flask(app, **options))
    interface = ServerSessionInterface(manager)
    app.session_interface = interface
    app.extensions["serversession"] = interface
    enforce_csrf = bool(app.config.get("SERVERSESSION_CSRF", True)) and manager.config.csrf

    def guard() -> Response | None:
        environ = request.environ
        if _ERROR_KEY in environ:
            return _error_response(STORE_UNAVAILABLE)
        refusal = environ.get(_REFUSAL_KEY)
        if isinstance(refusal, Refusal):
            return _error_response(refusal)
        return _screen(app, manager, enforce_csrf)

    # First in line, so no other hook runs on a session that is not there.
    app.before_request_funcs.setdefault(None, []).insert(0, guard)
    app.register_error_handler(StoreError, _session_error)
    app.register_error_handler(ConcurrentUpdateError, _session_error)
    app.register_error_handler(SessionEndedError, _session_error)
    app.register_error_handler(ReauthenticationRequired, _session_error)
    app.register_error_handler(SessionLimitError, _session_error)
    if enforce_csrf:
        app.context_processor(lambda: {"csrf_token": _template_csrf_token})
    return interface


def csrf_exempt(view: F) -> F:
    """Mark a view function as exempt from the CSRF check (webhooks signed another way).

    The kit's marker (:func:`serversession.integrations.kit.csrf_exempt`), shared
    with Quart and aiohttp.
    """
    return _mark_exempt(view)


def get_manager(app: Flask | None = None) -> SessionManager:
    """The :class:`SessionManager` of ``app`` (default: the current app), for listing and revoking.

    Raises ``LookupError`` when :func:`init_app` did not run on it.
    """
    interface = (app or current_app).extensions.get("serversession")
    if not isinstance(interface, ServerSessionInterface):
        raise LookupError("serversession.integrations.flask.init_app() was not called on this app")
    return interface.manager


def _screen(app: Flask, manager: SessionManager, enforce_csrf: bool) -> Response | None:
    """The guard's cross-site, JSON-only and CSRF checks, after routing (so ``@csrf_exempt`` counts)."""
    if request.method in csrf.SAFE_METHODS:
        return None  # safe methods pass the screen and need no token: nothing to gather
    raw = request.environ.get(ENVIRON_KEY)
    if not isinstance(raw, Session):
        return None
    guard = manager.guard
    exempt = is_csrf_exempt(app.view_functions.get(request.endpoint or ""))
    headers = pick_headers(request.headers.items())
    facts = facts_from_headers(request.method, request.script_root + request.path, request.scheme, headers,
                               exempt=exempt)  # fmt: skip
    now = manager.clock()
    refusal = guard.screen(facts, via_header=raw.via_header, now=now)
    if refusal is None and enforce_csrf and guard.csrf_needed(facts):
        presented = facts.csrf_header
        if presented is None and guard.form_may_carry_token(facts):
            presented = request.form.get(csrf.FORM_FIELD)
        try:
            raw.load()  # the check needs the session's secret: the read happens here, before the view
        except StoreError as exc:
            log.warning("session store failed on load: %s", exc)
            _drop_unread()
            return _error_response(STORE_UNAVAILABLE)
        refusal = guard.check_csrf(raw, presented, now)
    if refusal is None:
        return None
    refuse(refusal, facts, manager)
    return _error_response(refusal)


def _template_csrf_token() -> str:
    raw = request.environ.get(ENVIRON_KEY)
    if not isinstance(raw, Session):
        raise LookupError("no serversession session in this request")
    return raw.csrf_token


def _session_error(exc: Exception) -> Response:
    refusal = refusal_for_error(exc) or Refusal(500, "internal error", "internal")
    log.warning("session error in a view: %s: %s", type(exc).__name__, exc)
    _drop_unread()
    return _error_response(refusal)


def _drop_unread() -> None:
    """After the session's store read failed: swap in an empty session for the rest of the request.

    ``after_request`` hooks still run on the 503 and may read the session
    (Flask-Login's does): they would meet the failed read again and turn the 503
    into a 500. They see an empty, never-saved session instead, as when the
    guard refused the request before it had one.
    """
    current = request.environ.get(ENVIRON_KEY)
    found: Any = cast(Any, flask_session)._get_current_object()  # a werkzeug LocalProxy's target: our FlaskSession
    if isinstance(current, Session) and read_failed(current) and isinstance(found, FlaskSession):
        found.unavailable = True
        found.raw = Session(current.config, session_id=None, key=None, data={}, meta=SessionMeta(0.0, 0.0))


def _error_response(refusal: Refusal) -> Response:
    body = refusal.body()
    response: Response = current_app.response_class(body, status=refusal.status, headers=refusal.headers(body))
    return response


def _become_error(response: Response, refusal: Refusal) -> None:
    body = refusal.body()
    close = getattr(response.response, "close", None)
    if close is not None:
        close()  # e.g. an open file from send_file
    response.headers.clear()
    response.status_code = refusal.status
    for name, value in refusal.headers(body):
        response.headers[name] = value
    response.set_data(body)
