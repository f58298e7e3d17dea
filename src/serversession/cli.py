"""The ``serversession`` command line: the demo shop and session administration.

    serversession demo [--host H] [--port P] [--store URL] [--idle-timeout S]
                       [--absolute-timeout S] [--workers N]
    serversession sessions list --store URL [--user U] [--json]
    serversession sessions revoke --store URL (--user U [--handle H] | --handle H --user U)
    serversession gc --store URL

Every setting can also come from the environment (``SERVERSESSION_STORE``,
``SERVERSESSION_IDLE_TIMEOUT``, ``SERVERSESSION_ABSOLUTE_TIMEOUT``,
``SERVERSESSION_SECRET_KEY``). Errors print one line to stderr and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from .core.config import SessionConfig
from .exceptions import SessionError
from .manager import SessionManager
from .stores.url import DEFAULT_STORE_URL, open_store


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"serversession: {name} must be a number of seconds, got {raw!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serversession", description="Server-side HTTP sessions.")
    sub = parser.add_subparsers(dest="command", required=True)

    store_default = os.environ.get("SERVERSESSION_STORE", DEFAULT_STORE_URL)
    demo = sub.add_parser("demo", help="run the demo shop")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--store", default=store_default, help=f"store URL (default {store_default})")
    demo.add_argument("--idle-timeout", type=float, default=_env_float("SERVERSESSION_IDLE_TIMEOUT", 1800.0))
    demo.add_argument("--absolute-timeout", type=float, default=_env_float("SERVERSESSION_ABSOLUTE_TIMEOUT", 43200.0))
    demo.add_argument("--workers", type=int, default=1)

    sessions = sub.add_parser("sessions", help="list or revoke stored sessions")
    ssub = sessions.add_subparsers(dest="action", required=True)
    listing = ssub.add_parser("list", help="list live sessions")
    listing.add_argument("--store", default=store_default)
    listing.add_argument("--user", help="only this user's sessions")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    revoke = ssub.add_parser("revoke", help="end a session by handle, or all of a user's")
    revoke.add_argument("--store", default=store_default)
    revoke.add_argument("--user", required=True)
    revoke.add_argument("--handle", help="end only this session (default: all of the user's)")

    gc = sub.add_parser("gc", help="purge expired sessions (stores without native expiry)")
    gc.add_argument("--store", default=store_default)
    return parser


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _manager(url: str) -> SessionManager:
    config = SessionConfig(
        idle_timeout=_env_float("SERVERSESSION_IDLE_TIMEOUT", 1800.0),
        absolute_timeout=_env_float("SERVERSESSION_ABSOLUTE_TIMEOUT", 43200.0),
    )
    return SessionManager(open_store(url), config)


def _list(args: argparse.Namespace) -> int:
    from .core.ids import public_handle
    from .core.lifecycle import deadlines, is_expired

    manager = _manager(args.store)
    now = manager.clock()
    rows: list[dict[str, Any]] = []
    try:
        if args.user:
            infos = manager.list_sessions(args.user)
            rows = [
                {
                    "handle": i.handle,
                    "user": i.user,
                    "created_at": _iso(i.created_at),
                    "last_seen_at": _iso(i.last_seen_at),
                    "idle_expires_at": _iso(i.idle_expires_at),
                    "ip": i.ip,
                    "user_agent": i.user_agent,
                }
                for i in infos
            ]
        else:
            for s in manager.store.scan():
                if is_expired(manager.config, s.meta, now):
                    continue
                idle, _ = deadlines(manager.config, s.meta)
                rows.append(
                    {
                        "handle": public_handle(s.key),
                        "user": s.meta.user,
                        "created_at": _iso(s.meta.created_at),
                        "last_seen_at": _iso(s.meta.last_seen_at),
                        "idle_expires_at": _iso(idle),
                        "ip": s.meta.ip,
                        "user_agent": s.meta.user_agent,
                    }
                )
    finally:
        manager.store.close()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'HANDLE':<24} {'USER':<16} {'CREATED':<26} {'LAST SEEN':<26} IP")
    for row in rows:
        print(
            f"{row['handle']:<24} {row['user'] or '-':<16} {row['created_at']:<26} "
            f"{row['last_seen_at']:<26} {row['ip']}"
        )
    print(f"{len(rows)} session(s)")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    manager = _manager(args.store)
    try:
        if args.handle:
            if not manager.revoke(args.user, args.handle):
                print(f"serversession: no session {args.handle} for user {args.user}", file=sys.stderr)
                return 1
            print("revoked 1 session")
        else:
            print(f"revoked {manager.revoke_user(args.user)} session(s)")
    finally:
        manager.store.close()
    return 0


def _gc(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    total = 0
    interactive = sys.stderr.isatty()
    try:
        while True:
            purged = store.purge_expired(1000)
            total += purged
            if interactive:
                print(f"\rpurged {total} expired session(s)…", end="", file=sys.stderr, flush=True)
            if purged < 1000:
                break
    finally:
        store.close()
    if interactive:
        print(file=sys.stderr)
    print(f"purged {total} expired session(s)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo.server import serve

    serve(
        host=args.host,
        port=args.port,
        store_url=args.store,
        idle_timeout=args.idle_timeout,
        absolute_timeout=args.absolute_timeout,
        workers=args.workers,
        secret_key=os.environ.get("SERVERSESSION_SECRET_KEY") or None,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    handlers = {"demo": _demo, "gc": _gc}
    try:
        if args.command == "sessions":
            return _list(args) if args.action == "list" else _revoke(args)
        return handlers[args.command](args)
    except SessionError as exc:
        print(f"serversession: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
