"""Every setting of the session layer, with its default, in one frozen object.

The defaults follow the OWASP Session Management Cheat Sheet: short idle timeout,
bounded absolute lifetime, cookies that scripts can't read and other sites can't
send, and IDs that are never taken from the client unless the server issued them.
Validation happens here, once, at start-up (never with ``assert``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..exceptions import ConfigurationError
from .codec import is_utf8
from .signing import Signer

SameSite = Literal["lax", "strict", "none"]
OnLimit = Literal["evict", "refuse"]
#: What an evicted session's next request is told (``Session.ended_because``), by default.
EVICTION_REASON = "signed out because you signed in on another device"
#: What ``Clear-Site-Data`` may ask a browser to clear (the W3C draft's directives).
CLEAR_SITE_DATA_DIRECTIVES = frozenset(
    {"cache", "cookies", "storage", "executionContexts", "clientHints", "prefetchCache", "prerenderCache", "*"}
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: A cookie name: an RFC 9110 token.
_COOKIE_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")


def normal_origin(origin: str | None) -> str | None:
    """``scheme://host[:port]`` lower-cased with a default port dropped, or None if
    ``origin`` is not a serialized origin (``null``, a path, no host)."""
    if not origin or "://" not in origin:
        return None
    scheme, _, rest = origin.strip().partition("://")
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not rest or any(c in rest for c in "/?#@ "):
        return None
    host, colon, port = rest.lower().rpartition(":") if not rest.endswith("]") else (rest.lower(), "", "")
    if not colon:
        host, port = rest.lower(), ""
    if port and (not port.isdigit() or len(port) > 5):
        return None
    if port and int(port) == _DEFAULT_PORTS[scheme]:
        port = ""
    if not host:
        return None
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


@dataclass(frozen=True)
class SessionConfig:
    """Settings shared by every integration and store.

    Timeouts are in seconds.

    * ``idle_timeout`` (1800): a session unused this long ends (sliding).
    * ``absolute_timeout`` (43200, 12 h): a session ends this long after it was
      created, however busy it is.
    * ``renew_fraction`` (0.1): the idle deadline is pushed forward (one store
      write) only once this fraction of ``idle_timeout`` has passed since the last
      renewal, so most read-only requests cost one store read and no write.
    * ``max_size`` (65536 bytes): the largest encoded session; bigger raises
      :class:`~serversession.exceptions.SessionTooLargeError` where it is set.
    * ``cookie_name`` (None): None picks ``"__Host-session"`` when the cookie can
      carry the ``__Host-`` prefix (Secure, ``Path=/``, no Domain), else
      ``"session"``.
    * ``cookie_secure`` (True): ``Secure`` attribute. Turning it off is the
      development switch for plain-HTTP hosts; never in production.
    * ``cookie_samesite`` ("lax"), ``cookie_path`` ("/"), ``cookie_domain`` (None).
    * ``persistent_cookies`` (False): by default the cookie lasts until the browser
      closes; a session marked persistent ("remember me") or this switch gives it
      a ``Max-Age`` that never outlives the absolute timeout.
    * ``secret_keys`` (()): HMAC keys, newest first; when given, the cookie value is
      signed so forged values are rejected without a store round trip.
    * ``header_transport`` (True): accept ``Authorization: Session <id>``.
    * ``csrf`` (True): require a CSRF token on unsafe methods (middleware).
    * ``csrf_exempt_paths`` (()): path prefixes that skip the CSRF check (webhooks).
    * ``trusted_proxies`` (()): IPs or networks whose ``X-Forwarded-For`` is
      believed for the client IP kept in session metadata.
    * ``rotation_grace`` (30): seconds a rotated-away ID keeps forwarding the
      writes of requests already in flight to the new session (it never loads).
    * ``modify_attempts`` (64): compare-and-set attempts before
      :class:`~serversession.exceptions.ConcurrentUpdateError`.
    * ``max_user_agent`` (256): characters of User-Agent kept in metadata.

    The request boundary (:mod:`serversession.core.guard`; each answers a
    requirement listed in ``docs/security.md``):

    * ``refuse_cross_site`` (True): an unsafe request whose ``Sec-Fetch-Site``
      is ``cross-site``, or whose ``Origin`` is not the request's own origin nor
      in ``trusted_origins``, is refused with 403 even with a valid CSRF token.
      ``Authorization: Session`` requests are exempt (no ambient credential).
    * ``trusted_origins`` (()): other origins (``https://app.example.com``)
      allowed to send unsafe requests.
    * ``refuse_ambiguous_cookies`` (True): a request carrying the session cookie
      more than once is served with no session (nothing loaded) and the cookie
      is cleared; never "first one wins".
    * ``guess_limit`` (100) and ``guess_window`` (60 s): past ``guess_limit``
      requests presenting unknown, expired or forged session IDs from one
      address (an IPv6 /64) within ``guess_window`` seconds, that address's
      requests presenting a session ID it has not shown valid are answered 429
      with no store round trip, for up to ``guess_window`` seconds.
      ``guess_limit=0`` turns it off. Counted per process.
    * ``clear_site_data`` (``("cache",)``): the ``Clear-Site-Data`` directives a
      logout (``destroy()``) answers with; ``()`` sends none. ``"cookies"``
      clears every cookie of the whole site (all subdomains), not just ours.
    * ``json_only_paths`` (()): path prefixes whose unsafe requests must carry
      ``Content-Type: application/json`` (415 otherwise), which no cross-site
      form or "simple request" can send without a CORS preflight.

    The per-user session cap (``docs/concurrency.md`` says what each store guarantees):

    * ``max_sessions_per_user`` (0: no limit): a user has at most this many live
      sessions. Enforced when a session is bound to a user (a save that creates,
      rotates or rebinds a session with ``session.user`` set), atomically in the
      store, so concurrent sign-ins from several processes cannot exceed it.
    * ``on_limit`` (``"evict"``): what a sign-in beyond the limit does.
      ``"evict"`` ends the user's least recently used session (oldest
      ``last_seen_at``, which moves only at renewals, every ``renew_fraction`` of
      the idle window, so "least recently used" is as precise as that);
      ``"refuse"`` refuses the sign-in: its save raises
      :class:`~serversession.exceptions.SessionLimitError` (the request guard
      answers 409) and writes nothing.
    * ``eviction_reason`` (``"signed out because you signed in on another
      device"``): what an evicted session's next request finds in
      :attr:`Session.ended_because <serversession.Session.ended_because>` (it
      gets a fresh session with ``expired`` True) and what its REVOKED event
      says. At most 200 characters.

    Moving from another framework's sessions (``serversession import``,
    ``docs/migrating/``):

    * ``accept_imported`` (False): load the sessions ``serversession import``
      copied from Django or Flask-Session under the cookie value the old
      framework issued. Only a record carrying the import marker is ever found
      through such a value (strict mode holds for everything else: a
      client-chosen value never creates a session), and the first request that
      loads it gives it a new, server-made ID, so the old value cannot be
      replayed afterwards. Off by default: turn it on for the migration window.
    * ``legacy_cookie_name`` (None): the old framework's cookie name (Flask-Session's
      ``"session"``), read when the request has no cookie of ours. Every
      response that sets or clears our cookie then also expires this one (with
      ``cookie_path`` and ``cookie_domain``). Needs ``accept_imported``.
    """

    idle_timeout: float = 1800.0
    absolute_timeout: float = 43200.0
    renew_fraction: float = 0.1
    max_size: int = 65536
    cookie_name: str | None = None
    cookie_secure: bool = True
    cookie_samesite: SameSite = "lax"
    cookie_path: str = "/"
    cookie_domain: str | None = None
    persistent_cookies: bool = False
    secret_keys: Sequence[str | bytes] = ()
    header_transport: bool = True
    csrf: bool = True
    csrf_exempt_paths: Sequence[str] = ()
    trusted_proxies: Sequence[str] = ()
    rotation_grace: float = 30.0
    modify_attempts: int = 64
    max_user_agent: int = 256
    refuse_cross_site: bool = True
    trusted_origins: Sequence[str] = ()
    refuse_ambiguous_cookies: bool = True
    guess_limit: int = 100
    guess_window: float = 60.0
    clear_site_data: Sequence[str] = ("cache",)
    json_only_paths: Sequence[str] = ()
    max_sessions_per_user: int = 0
    on_limit: OnLimit = "evict"
    eviction_reason: str = EVICTION_REASON
    accept_imported: bool = False
    legacy_cookie_name: str | None = None
    signer: Signer | None = field(init=False, repr=False, compare=False)
    proxy_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.idle_timeout > 0 or not self.absolute_timeout > 0:
            raise ConfigurationError("idle_timeout and absolute_timeout must be positive seconds")
        if self.idle_timeout > self.absolute_timeout:
            raise ConfigurationError("idle_timeout cannot exceed absolute_timeout")
        if not 0 <= self.renew_fraction < 1:
            raise ConfigurationError("renew_fraction must be in [0, 1)")
        if self.max_size < 256:
            raise ConfigurationError("max_size must be at least 256 bytes")
        if self.cookie_samesite not in ("lax", "strict", "none"):
            raise ConfigurationError("cookie_samesite must be 'lax', 'strict' or 'none'")
        if self.cookie_samesite == "none" and not self.cookie_secure:
            raise ConfigurationError("SameSite=None requires cookie_secure=True")
        if self.modify_attempts < 1 or self.rotation_grace < 0:
            raise ConfigurationError("modify_attempts must be >= 1 and rotation_grace >= 0")
        name = self.cookie_name or ("__Host-session" if self.host_prefix_allowed else "session")
        if name.startswith("__Host-") and not self.host_prefix_allowed:
            raise ConfigurationError("a __Host- cookie needs cookie_secure, Path=/ and no Domain")
        object.__setattr__(self, "cookie_name", name)
        object.__setattr__(self, "signer", Signer(self.secret_keys) if self.secret_keys else None)
        try:
            nets = tuple(ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies)
        except ValueError as exc:
            raise ConfigurationError(f"bad trusted_proxies entry: {exc}") from exc
        object.__setattr__(self, "proxy_networks", nets)
        if self.guess_limit < 0 or not self.guess_window > 0:
            raise ConfigurationError("guess_limit must be >= 0 (0: off) and guess_window positive seconds")
        if isinstance(self.trusted_origins, str) or isinstance(self.clear_site_data, str):
            raise ConfigurationError("trusted_origins and clear_site_data are lists of strings, not one string")
        origins = tuple(normal_origin(o) for o in self.trusted_origins)
        if None in origins:
            raise ConfigurationError(
                f"trusted_origins entries are scheme://host[:port] with no path, got {list(self.trusted_origins)!r}"
            )
        object.__setattr__(self, "trusted_origins", origins)
        unknown = set(self.clear_site_data) - CLEAR_SITE_DATA_DIRECTIVES
        if unknown:
            raise ConfigurationError(
                f"unknown clear_site_data directive(s) {sorted(unknown)}; known: {sorted(CLEAR_SITE_DATA_DIRECTIVES)}"
            )
        for name in ("csrf_exempt_paths", "json_only_paths"):
            paths = getattr(self, name)
            if isinstance(paths, str) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
                raise ConfigurationError(f"{name} is a list of paths starting with '/', got {paths!r}")
        self._check_user_cap()
        self._check_import()

    def _check_import(self) -> None:
        legacy = self.legacy_cookie_name
        if legacy is None:
            return
        if not isinstance(legacy, str) or _COOKIE_NAME.fullmatch(legacy) is None:
            raise ConfigurationError(f"legacy_cookie_name must be a cookie name (letters, digits, !#$%&'*+.^_`|~-), "
                                     f"got {legacy!r}")  # fmt: skip
        if not self.accept_imported:
            raise ConfigurationError("legacy_cookie_name needs accept_imported=True")
        if legacy == self.csrf_cookie_name:
            raise ConfigurationError(f"legacy_cookie_name {legacy!r} is the CSRF cookie's name")

    def _check_user_cap(self) -> None:
        cap = self.max_sessions_per_user
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            raise ConfigurationError(f"max_sessions_per_user must be a whole number, 0 (no limit) or more, got {cap!r}")
        if self.on_limit not in ("evict", "refuse"):
            raise ConfigurationError(f"on_limit must be 'evict' or 'refuse', got {self.on_limit!r}")
        reason = self.eviction_reason
        if not isinstance(reason, str) or not reason.strip() or len(reason) > 200 or not is_utf8(reason):
            raise ConfigurationError(f"eviction_reason must be text of 1 to 200 characters, got {reason!r}")

    @property
    def host_prefix_allowed(self) -> bool:
        """Whether the cookie meets the ``__Host-`` prefix rules."""
        return self.cookie_secure and self.cookie_path == "/" and not self.cookie_domain

    @property
    def renew_after(self) -> float:
        """Seconds after the last renewal before the idle deadline is pushed again."""
        return self.idle_timeout * self.renew_fraction

    @property
    def csrf_cookie_name(self) -> str:
        """Name of the pre-session CSRF cookie (see :mod:`serversession.core.csrf`)."""
        return f"{self.cookie_name}-csrf"
