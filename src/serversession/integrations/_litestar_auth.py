"""Litestar's ``SessionAuth`` over serversession: a session backend that is no backend.

``SessionAuth`` wraps its authentication middleware in Litestar's own
``SessionMiddleware``, which loads ``scope["session"]`` from a backend and saves
it as the response starts. Given :class:`SessionAuthBackendConfig`, that backend
hands over the session ``ServerSessionMiddleware`` (outside it) already loaded
and saves nothing: loading, CSRF and saving stay the kit's, and ``SessionAuth``
keeps doing what it does (``request.user``, ``exclude``, 401 on no session).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from litestar.enums import ScopeType
from litestar.middleware import DefineMiddleware
from litestar.middleware.session import SessionMiddleware as LitestarSessionMiddleware
from litestar.middleware.session.base import BaseBackendConfig, BaseSessionBackend
from litestar.security.session_auth import SessionAuth
from litestar.types import Message, Scopes, ScopeSession

#: Where ``ServerSessionMiddleware`` keeps this request's session besides ``scope["session"]``,
#: which ``request.set_session()`` overwrites with plain data.
SCOPE_KEY = "serversession.session"


class _BridgeBackend(BaseSessionBackend["SessionAuthBackendConfig"]):
    """Litestar's session-backend interface over the session ``ServerSessionMiddleware`` loaded."""

    def get_session_id(self, connection: Any) -> str | None:
        return None  # an ID never leaves the lifecycle; the public handle is session.handle

    async def store_in_message(self, scope_session: ScopeSession, message: Message, connection: Any) -> None:
        return None  # ServerSessionMiddleware saves as the response starts

    async def load_from_connection(self, connection: Any) -> dict[str, Any]:
        session: Any = connection.scope.get(SCOPE_KEY)  # a Session: the MutableMapping SessionAuth reads
        if session is None:
            raise LookupError("no serversession session in scope: is ServerSessionPlugin installed?")
        return await session.aload()  # type: ignore[no-any-return]


@dataclass
class SessionAuthBackendConfig(BaseBackendConfig[_BridgeBackend]):
    """Litestar's ``BaseBackendConfig`` for ``SessionAuth`` over ``ServerSessionPlugin``'s session.

    Build it with ``ServerSessionPlugin.session_auth_backend()``. Only ``key``
    (the cookie's name, for the OpenAPI schema), ``scopes``, ``exclude`` and
    ``exclude_opt_key`` mean anything here: the cookie's attributes and lifetime
    are the plugin's :class:`SessionConfig`'s.
    """

    _backend_class = _BridgeBackend

    key: str = "session"
    max_age: int = 0
    scopes: Scopes = field(default_factory=lambda: {ScopeType.HTTP, ScopeType.WEBSOCKET})
    path: str = "/"
    domain: str | None = None
    secure: bool = True
    httponly: bool = True
    samesite: Literal["lax", "strict", "none"] = "lax"
    exclude: str | list[str] | None = None
    exclude_opt_key: str = "skip_session"


def is_litestar_session_middleware(entry: Any) -> bool:
    """Whether an app middleware entry is Litestar's own session middleware (not the bridge)."""
    if not isinstance(entry, DefineMiddleware):
        return False
    if entry.middleware is LitestarSessionMiddleware:
        return not isinstance(entry.kwargs.get("backend"), _BridgeBackend)
    auth = entry.kwargs.get("config")
    return isinstance(auth, SessionAuth) and not isinstance(auth.session_backend_config, SessionAuthBackendConfig)
