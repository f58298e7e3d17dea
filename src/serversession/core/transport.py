"""How a session ID travels: reading it from a request, writing it to a response.

Pure functions over header values, shared by the ASGI, WSGI, Flask and Django
integrations. IDs are read from the cookie or from ``Authorization: Session <id>``
only; a URL query string is never consulted (it leaks through logs and Referer).
Oversized or garbled headers are ignored rather than rejected with an error: the
request simply has no session.

During a migration (``SessionConfig.accept_imported``) a token may also be the
cookie value another framework issued, read from our cookie or from
``legacy_cookie_name`` when ours is absent; :func:`resolve_token` says which
kind it is, and the lifecycle believes a legacy one only for an imported record.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from . import csrf
from .config import SessionConfig
from .ids import is_legacy_shaped, is_well_formed

#: Cookie headers longer than this are not parsed at all (servers cap headers lower anyway).
MAX_COOKIE_HEADER = 65536
AUTH_SCHEME = "session"
#: Response header that hands an API client its (new) session ID.
RESPONSE_HEADER = "Session-Id"


#: Stands for a cookie sent more than once in :func:`parse_cookie_header`'s answer.
AMBIGUOUS = "\x00ambiguous"


def parse_cookie_header(header: str, wanted: tuple[str, ...]) -> dict[str, str]:
    """Return the values of the ``wanted`` cookie names found in a Cookie header.

    A name sent more than once maps to :data:`AMBIGUOUS`:
    a sibling subdomain or a stale path can add a cookie of the same name (cookie
    tossing), and the header does not say which one is ours, so neither is
    believed. Malformed pairs are skipped.
    """
    found: dict[str, str] = {}
    if not header or len(header) > MAX_COOKIE_HEADER:
        return found
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name in wanted:
            found[name] = AMBIGUOUS if name in found else value.strip().strip('"')
    return found


@dataclass(frozen=True, slots=True)
class IncomingToken:
    """The session token a request carried and how it came."""

    value: str | None
    via_header: bool
    csrf_secret: str | None = None
    #: The session cookie came more than once: served as no session, and cleared.
    ambiguous: bool = False


def read_token(config: SessionConfig, cookie_header: str | None, authorization: str | None) -> IncomingToken:
    """Find the session token in a request's headers (cookie or Authorization)."""
    if authorization and config.header_transport:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == AUTH_SCHEME:
            return IncomingToken(value.strip() or None, via_header=True)
    name = config.cookie_name or ""
    csrf_name = config.csrf_cookie_name
    legacy = config.legacy_cookie_name
    wanted = (name, csrf_name) if legacy is None or legacy == name else (name, csrf_name, legacy)
    cookies = parse_cookie_header(cookie_header or "", wanted)
    csrf_secret = csrf.well_formed_secret(cookies.get(csrf_name))  # AMBIGUOUS is never well formed
    cookie = cookies.get(name)
    if cookie is None and legacy is not None and legacy in cookies:
        name, cookie = legacy, cookies[legacy]  # ours is absent: the old framework's, once
    if cookie is AMBIGUOUS and config.refuse_ambiguous_cookies:
        return IncomingToken(None, via_header=False, csrf_secret=csrf_secret, ambiguous=True)
    if cookie is AMBIGUOUS:  # the check is off: the first one wins, as browsers order them
        cookie = parse_first(cookie_header or "", name)
    return IncomingToken(cookie, via_header=False, csrf_secret=csrf_secret)


def parse_first(header: str, name: str) -> str | None:
    """The first value of cookie ``name`` in a Cookie header (the most specific path first)."""
    for part in header.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key == name:
            return value.strip().strip('"')
    return None


def resolve_token(config: SessionConfig, token: str | None) -> tuple[str, bool] | None:
    """Return (session ID, strict) for a token, or None when it cannot be a session.

    ``strict`` is True for an ID we issued (the signature checked when signing
    is on, then the shape): no store round trip for garbage. With
    ``accept_imported`` on, a token that is not ours but has the shape of
    another framework's cookie value is returned as is with ``strict`` False:
    the lifecycle believes it only for a record carrying the import marker.
    """
    if not token or len(token) > 128:
        return None
    candidate: str | None = token
    if config.signer is not None:
        candidate = config.signer.unsign(token)
    if candidate is not None and is_well_formed(candidate):
        return candidate, True
    if config.accept_imported and is_legacy_shaped(token):
        return token, False
    return None


def session_id_from_token(config: SessionConfig, token: str | None) -> str | None:
    """Return the session ID inside a token, or None when it cannot be a session.

    An ID we issued, or (``accept_imported`` on) another framework's cookie
    value for the lifecycle to check against its import marker: see
    :func:`resolve_token`.
    """
    resolved = resolve_token(config, token)
    return None if resolved is None else resolved[0]


def token_for_client(config: SessionConfig, session_id: str) -> str:
    """Return what the client stores: the ID, signed when signing is on."""
    return config.signer.sign(session_id) if config.signer is not None else session_id


def set_cookie(config: SessionConfig, name: str, value: str, max_age: int | None) -> str:
    """Build a ``Set-Cookie`` value with the configured attributes.

    ``max_age`` None makes a browser-session cookie; 0 deletes the cookie.
    """
    parts = [f"{name}={value}", f"Path={config.cookie_path}"]
    if config.cookie_domain:
        parts.append(f"Domain={config.cookie_domain}")
    if max_age is not None:
        parts.append(f"Max-Age={max(0, max_age)}")
        if max_age <= 0:
            parts.append("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    parts.append("HttpOnly")
    if config.cookie_secure:
        parts.append("Secure")
    parts.append(f"SameSite={config.cookie_samesite.capitalize()}")
    return "; ".join(parts)


#: Control characters (C0, DEL) dropped from what a request says about itself.
_CONTROL = dict.fromkeys([*range(32), 127])


def printable(text: str) -> str:
    """``text`` without control characters: a User-Agent or an address is shown on
    pages and in logs, and PostgreSQL cannot store NUL at all."""
    return text.translate(_CONTROL) if not text.isprintable() else text


def client_ip(config: SessionConfig, peer: str | None, forwarded_for: str | None) -> str:
    """Return the client IP, believing ``X-Forwarded-For`` only from trusted proxies.

    Walks the forwarded chain from the right and stops at the first address that
    is not a trusted proxy: that is the client as seen by our own infrastructure.
    """
    ip = printable(peer or "")
    if not forwarded_for or not config.proxy_networks or not _trusted(config, ip):
        return ip
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        ip = hop
        if not _trusted(config, hop):
            break
    return printable(ip)[:64]


def _trusted(config: SessionConfig, ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in config.proxy_networks)
