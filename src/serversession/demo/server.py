"""Run the demo shop under uvicorn: what ``serversession demo`` calls.

One worker runs the app in this process; several workers make uvicorn spawn
processes that each build the app from ``SERVERSESSION_*`` environment variables
(an app object cannot cross a process boundary), all sharing one listening
socket and, through the store, their sessions.

Ctrl-C and SIGTERM stop it cleanly: uvicorn finishes the requests in flight (so
their sessions are saved), the store is closed, and :func:`serve` returns.

The session cookie keeps the library's defaults (``__Host-session``, ``Secure``)
over plain HTTP: browsers accept Secure cookies from ``http://localhost``, so the
banner names ``localhost`` when the server listens on a loopback address.
``insecure_cookie`` drops ``Secure`` for plain HTTP on any other host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from ..exceptions import ConfigurationError
from .app import (
    ENV_ABSOLUTE_TIMEOUT,
    ENV_IDLE_TIMEOUT,
    ENV_INSECURE_COOKIE,
    ENV_MAX_SESSIONS,
    ENV_REAUTH_WINDOW,
    ENV_SECRET_KEY,
    ENV_STORE,
    create_app,
)

#: The factory each worker process imports when ``workers > 1``.
APP_FACTORY = "serversession.demo.app:app_from_env"


def serve(
    *,
    host: str,
    port: int,
    store_url: str,
    idle_timeout: float,
    absolute_timeout: float,
    workers: int,
    secret_key: str | None,
    insecure_cookie: bool = False,
    max_sessions: int = 0,
    reauth_window: float = 300.0,
) -> None:
    """Serve the demo on ``host:port`` until interrupted (timeouts in seconds).

    Prints ``serversession demo serving on http://HOST:PORT (store: URL)`` once
    it listens (HOST is ``localhost`` for a loopback address, see
    :func:`address`; the URL's password masked). ``insecure_cookie`` (False)
    drops the cookie's ``Secure`` attribute. Raises
    :class:`~serversession.ConfigurationError` for a bad store URL or setting and
    ``SystemExit`` if the server could not start (port taken).
    """
    if workers < 1:
        raise ConfigurationError("workers must be at least 1")
    _log_session_events()
    banner = f"serversession demo serving on {address(host, port)} (store: {masked(store_url)})"
    note = cookie_note(host, insecure_cookie)
    if note:
        print(note, file=sys.stderr, flush=True)
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    settings: dict[str, Any] = {
        "idle_timeout": idle_timeout,
        "absolute_timeout": absolute_timeout,
        "secret_key": secret_key,
        "cookie_secure": not insecure_cookie,
        "max_sessions": max_sessions,
        "reauth_window": reauth_window,
    }

    if workers == 1:
        app = create_app(store_url, **settings)
        server = _AnnouncingServer(uvicorn.Config(app, lifespan="on", **options), banner)
        with _interrupt_on_sigterm(), contextlib.suppress(KeyboardInterrupt):
            server.run()
        if not server.started:
            raise SystemExit("serversession demo: the server did not start (see the messages above)")
        return

    os.environ.update(
        {
            ENV_STORE: store_url,
            ENV_IDLE_TIMEOUT: repr(float(idle_timeout)),
            ENV_ABSOLUTE_TIMEOUT: repr(float(absolute_timeout)),
            ENV_INSECURE_COOKIE: "1" if insecure_cookie else "0",
            ENV_MAX_SESSIONS: str(int(max_sessions)),
            ENV_REAUTH_WINDOW: repr(float(reauth_window)),
        }
    )
    if secret_key:
        os.environ[ENV_SECRET_KEY] = secret_key
    else:
        os.environ.pop(ENV_SECRET_KEY, None)
    create_app(store_url, **settings)  # fail here, once, on a bad URL or setting rather than in every worker
    print(banner, flush=True)
    # uvicorn's supervisor handles SIGINT/SIGTERM itself and stops its workers.
    uvicorn.run(APP_FACTORY, factory=True, workers=workers, **options)


def _log_session_events() -> None:
    """Send the ``serversession`` logger's INFO lines (lifecycle events, by public
    handle, never an ID) to stderr, so an operator sees sign-ins and revocations."""
    logger = logging.getLogger("serversession")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


#: Addresses the name ``localhost`` reaches (a browser tries both of its addresses).
_LOCALHOST = frozenset({"127.0.0.1", "::1", "localhost"})


def address(host: str, port: int) -> str:
    """The URL to open for a server bound to ``host:port``.

    ``http://localhost:PORT`` when ``host`` is ``127.0.0.1``, ``::1`` or
    ``localhost``: browsers treat that origin as secure and so keep the demo's
    Secure cookie over plain HTTP. Any other host is shown as given (an IPv6
    address in brackets).
    """
    if host.lower() in _LOCALHOST:
        return f"http://localhost:{port}"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def cookie_note(host: str, insecure_cookie: bool) -> str | None:
    """A warning for a Secure cookie served over plain HTTP to a host other than
    localhost (browsers would not keep it: sign-in would not stick), else None."""
    if insecure_cookie or host.lower() in _LOCALHOST:
        return None
    return (
        "serversession demo: the session cookie is Secure, which browsers keep over plain HTTP"
        " only from localhost: serve the demo behind HTTPS, or pass --insecure-cookie"
    )


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the banner once its socket listens."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self.banner = banner

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            print(self.banner, flush=True)


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """Make SIGTERM behave like Ctrl-C for the duration, so both stop cleanly.

    uvicorn catches both signals to shut down gracefully, then re-raises the one
    it caught once it is done. With SIGTERM's default action that would kill the
    process at that point (exit status -15); as KeyboardInterrupt it lets
    :func:`serve` return normally.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["address", "serve"]
