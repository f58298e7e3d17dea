"""WSGI middleware: server-side sessions for Bottle, Falcon, Pyramid or any WSGI app.

The same behaviour as :mod:`serversession.integrations.asgi`, on the blocking
path. Per request it reads the token (cookie or ``Authorization: Session``),
checks the CSRF token on unsafe methods, exposes the session as
``environ["serversession.session"]`` (see :func:`get_session`) and saves it when
the app calls ``start_response``, adding ``Set-Cookie`` to that very call.
Changes made while the body is being iterated (after the headers) are not saved.

The session is read from the store lazily, at its first use, with at most one
store read: a request that never touches it (a static file, a health check)
costs no store command, and its response gets no session headers. An unsafe
request that needs a CSRF check is read before the app, to check the token.

A store failure answers ``503`` with ``{"error": ...}`` and a ``Retry-After``
(raised as ``StoreError`` at the first use, or before the app for a CSRF check;
a framework inside that turns it into its own 500 is overruled by the 503);
nothing is written and no fresh session replaces the real one. A CSRF failure
answers ``403`` with a JSON error. The token comes from the ``X-CSRF-Token``
header, else from the ``csrf_token`` field of a urlencoded form: the body is then
read (at most ``MAX_FORM_BODY`` bytes, else ``413``) and handed on to the app as
a fresh ``wsgi.input``.

Everything runs in the server's request thread through a sync
:class:`~serversession.SessionManager`: no event loop, no thread hop.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from types import TracebackType
from typing import Any

from ..core.config import SessionConfig
from ..core.csrf import SAFE_METHODS
from ..core.guard import Refusal, RequestFacts
from ..core.session import Session
from ..core.transport import RESPONSE_HEADER, client_ip
from ..manager import SessionManager
from ..stores.url import DEFAULT_STORE_URL, open_store
from .kit import MAX_FORM_BODY, Opened, admit, answer_for, body_too_large, finish, token_from_form

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
Write = Callable[[bytes], object]
StartResponse = Callable[..., Write]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

#: The ``environ`` key holding the request's :class:`Session`.
ENVIRON_KEY = "serversession.session"


def get_session(environ: Environ) -> Session:
    """Return the :class:`Session` of a WSGI ``environ``.

    Raises ``LookupError`` when :class:`SessionMiddleware` did not run.
    """
    session = environ.get(ENVIRON_KEY)
    if not isinstance(session, Session):
        raise LookupError("no session in environ: is SessionMiddleware installed?")
    return session


class SessionMiddleware:
    """Wrap the WSGI ``app`` with server-side sessions.

    ``store`` is a store object (sync face) or URL (default:
    ``sqlite:///serversession.sqlite3``); ``config`` a :class:`SessionConfig`; or
    pass a ready ``manager``. Raises
    :class:`~serversession.exceptions.ConfigurationError` for a bad store URL.
    """

    def __init__(
        self,
        app: WSGIApp,
        store: Any = None,
        config: SessionConfig | None = None,
        *,
        manager: SessionManager | None = None,
    ) -> None:
        self.app = app
        if manager is None:
            if store is None or isinstance(store, str):
                store = open_store(store or DEFAULT_STORE_URL)
            manager = SessionManager(store, config)
        self.manager = manager
        self.config = manager.config

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        manager = self.manager
        ip = client_ip(self.config, environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))
        token = manager.read_token(environ.get("HTTP_COOKIE"), environ.get("HTTP_AUTHORIZATION"))
        # Safe methods pass screen() and the CSRF check: no facts to gather for them.
        facts = None if environ.get("REQUEST_METHOD", "GET") in SAFE_METHODS else facts_from_environ(environ)

        def form_token() -> str | Refusal | None:
            body = _read_body(environ)
            if body is None:
                return body_too_large(MAX_FORM_BODY)
            if isinstance(body, Refusal):
                return body
            environ["wsgi.input"] = io.BytesIO(body)  # the app reads the body we consumed
            environ["CONTENT_LENGTH"] = str(len(body))
            return token_from_form(body)

        opened = admit(manager, token, ip, facts, environ.get("HTTP_USER_AGENT", ""), form_token=form_token,
                       lazy=True)  # read at the session's first use: an app that ignores it costs no store command
        if isinstance(opened, Refusal):
            return _answer(start_response, opened)
        environ[ENVIRON_KEY] = opened.session

        saver = _Saver(manager, opened, start_response)
        try:
            result = self.app(environ, saver.start_response)
        except Exception as exc:
            refusal = answer_for(exc)
            if refusal is None or saver.started or saver.failed:
                raise
            return _answer(start_response, refusal)
        if saver.failed:
            _close(result)
            return [saver.error]
        if saver.started:
            return result
        # The app defers start_response to its first body chunk (a generator).
        return _deferred(result, saver)


def facts_from_environ(environ: Environ) -> RequestFacts:
    """The guard's :class:`RequestFacts` of a WSGI request (for WSGI-based frameworks too)."""
    length = environ.get("CONTENT_LENGTH") or ""
    return RequestFacts(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""),
        scheme=environ.get("wsgi.url_scheme", "http"),
        host=environ.get("HTTP_HOST"),
        origin=environ.get("HTTP_ORIGIN"),
        fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
        content_type=environ.get("CONTENT_TYPE") or None,
        has_body="HTTP_TRANSFER_ENCODING" in environ or length.strip() not in ("", "0"),
        csrf_header=environ.get("HTTP_X_CSRF_TOKEN"),
    )


class _Saver:
    """Wraps ``start_response``: saves the session first and adds its headers."""

    __slots__ = ("added", "error", "failed", "manager", "opened", "start", "started")

    def __init__(self, manager: SessionManager, opened: Opened, start: StartResponse) -> None:
        self.manager = manager
        self.opened = opened
        self.start = start
        self.added: list[tuple[str, str]] | None = None
        self.started = False
        self.failed = False
        self.error = b""

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Write:
        if self.failed:
            return _discard  # the app's own response was replaced by a refusal
        if self.added is None:  # a second call (with exc_info) reuses the first save
            added = finish(self.manager, self.opened, [n for n, _ in headers], _code(status))
            if isinstance(added, Refusal):
                self.failed = True
                self.error = added.body()
                self.start(_status(added.status), added.headers(self.error), exc_info)
                return _discard
            self.added = extra = added
        else:  # an error page (exc_info): the save stands, the Cache-Control choice is its own
            extra = _recached(self.added, headers)
        self.started = True
        return self.start(status, [*headers, *extra], exc_info)


def _code(status: str) -> int | None:
    try:
        return int(status.split(None, 1)[0])
    except (ValueError, IndexError):
        return None


def _recached(added: list[tuple[str, str]], headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The first save's headers for a second ``start_response``: ``no-store`` where they hand
    out an ID and the new headers chose no ``Cache-Control`` (see ``kit.response_headers``)."""
    kept = [(name, value) for name, value in added if name != "Cache-Control"]
    hands_out = any(name in ("Set-Cookie", RESPONSE_HEADER) for name, _ in kept)
    if hands_out and not any(name.lower() == "cache-control" for name, _ in headers):
        kept.append(("Cache-Control", "no-store"))
    return kept


def _deferred(result: Iterable[bytes], saver: _Saver) -> Iterator[bytes]:
    try:
        try:
            for chunk in result:
                if saver.failed:
                    break
                yield chunk
        except Exception as exc:  # raised by a generator app before it started its response
            refusal = answer_for(exc)
            if refusal is None or saver.started or saver.failed:
                raise
            yield from _answer(saver.start, refusal)
            return
        if saver.failed:
            yield saver.error
    finally:
        _close(result)


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


def _discard(data: bytes) -> None:
    return None


def _status(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def _answer(start_response: StartResponse, refusal: Refusal) -> list[bytes]:
    body = refusal.body()
    start_response(_status(refusal.status), refusal.headers(body))
    return [body]


#: A body shorter than its ``Content-Length``: the client left mid-body.
_CUT_SHORT = Refusal(400, "request body shorter than its Content-Length: the client went away mid-body", "cut_short")


def _read_body(environ: Environ) -> bytes | Refusal | None:
    """The request body, None when it is larger than ``MAX_FORM_BODY``, or a 400 when it is
    shorter than its ``Content-Length`` (handing the app the prefix, with the length
    rewritten to match, would hide the disconnect from it and let it act on part of a form)."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length > MAX_FORM_BODY:
        return None
    if length >= 0:
        body = bytes(stream.read(length))
        return body if len(body) == length else _CUT_SHORT
    if not environ.get("wsgi.input_terminated"):
        return b""  # no length and no end marker: reading could block forever
    body = bytes(stream.read(MAX_FORM_BODY + 1))
    return None if len(body) > MAX_FORM_BODY else body
