"""The ``serversession`` command line: the demo shop and session administration.

    serversession demo [--host H] [--port P] [--store URL] [--idle-timeout S]
                       [--absolute-timeout S] [--workers N] [--insecure-cookie]
                       [--max-sessions N] [--reauth-window S]
    serversession sessions list  [--store URL] [--user U] [--older-than S] [--idle-over S] [--json]
    serversession sessions show  HANDLE [--store URL]
    serversession sessions revoke (HANDLE | --user U) [--store URL]
    serversession stats   [--store URL] [--json]
    serversession gc      [--store URL]
    serversession migrate --from URL --to URL
    serversession import  --from URL --to URL [--dry-run] [--checkpoint PATH] [--restart]
                          [--secret-key-env NAME] [--batch N] [--progress]

Settings also come from the environment (``SERVERSESSION_STORE``,
``SERVERSESSION_IDLE_TIMEOUT``, ``SERVERSESSION_ABSOLUTE_TIMEOUT``,
``SERVERSESSION_SECRET_KEY``, and for the demo ``SERVERSESSION_INSECURE_COOKIE=1``).
Errors print one line to stderr and exit 2 (``import`` exits 1 when it finished
but refused some sessions).
Administrative commands may scan the whole store; none of this runs per request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .core import _credentials as credentials
from .core.codec import encode_meta
from .core.config import SessionConfig
from .core.ids import public_handle
from .core.lifecycle import deadlines, imported_deadline, index_deadline, stored_expired
from .core.records import Commit, StoredSession
from .exceptions import ConfigurationError, SessionError
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


def _config() -> SessionConfig:
    return SessionConfig(
        idle_timeout=_env_float("SERVERSESSION_IDLE_TIMEOUT", 1800.0),
        absolute_timeout=_env_float("SERVERSESSION_ABSOLUTE_TIMEOUT", 43200.0),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serversession", description="Server-side HTTP sessions.")
    sub = parser.add_subparsers(dest="command", required=True)
    store_default = os.environ.get("SERVERSESSION_STORE", DEFAULT_STORE_URL)

    def with_store(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--store", default=store_default, help=f"store URL (default {store_default})")
        return p

    demo = with_store(
        sub.add_parser(
            "demo",
            help="run the demo shop",
            description="Serve the demo shop (a web shop with sign-in, a cart, settings and a sessions page) "
            "until Ctrl-C or SIGTERM. Durations are in seconds. The store URL is sqlite:///PATH, memory://, "
            "redis://HOST:PORT/DB, redis+cluster://HOST:PORT or postgresql://...",
            epilog="Defaults may also come from SERVERSESSION_STORE, SERVERSESSION_IDLE_TIMEOUT, "
            "SERVERSESSION_ABSOLUTE_TIMEOUT, SERVERSESSION_MAX_SESSIONS, SERVERSESSION_REAUTH_WINDOW and "
            "SERVERSESSION_SECRET_KEY (signs the session IDs; default: unsigned).",
        )
    )
    demo.add_argument("--host", default="127.0.0.1", metavar="HOST", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, metavar="PORT", help="TCP port to listen on (default 8000)")
    idle = _env_float("SERVERSESSION_IDLE_TIMEOUT", 1800.0)
    absolute = _env_float("SERVERSESSION_ABSOLUTE_TIMEOUT", 43200.0)
    demo.add_argument(
        "--idle-timeout",
        type=float,
        default=idle,
        metavar="S",
        help=f"a session unused for S seconds ends (default {idle:g} s)",
    )
    demo.add_argument(
        "--absolute-timeout",
        type=float,
        default=absolute,
        metavar="S",
        help=f"a session ends S seconds after it was created, however busy (default {absolute:g} s)",
    )
    demo.add_argument(
        "--workers", type=int, default=1, metavar="N", help="worker processes serving the same store (default 1)"
    )
    max_sessions = int(_env_float("SERVERSESSION_MAX_SESSIONS", 0))
    reauth = _env_float("SERVERSESSION_REAUTH_WINDOW", 300.0)
    demo.add_argument(
        "--max-sessions",
        type=int,
        default=max_sessions,
        metavar="N",
        help="a user has at most N sessions; signing in beyond that ends the least recently used one "
        f"(default {max_sessions}: no limit)",
    )
    demo.add_argument(
        "--reauth-window",
        type=float,
        default=reauth,
        metavar="S",
        help=f"a password change needs a sign-in or re-authentication within the last S seconds (default {reauth:g} s)",
    )
    demo.add_argument(
        "--insecure-cookie",
        action="store_true",
        help="drop the session cookie's Secure attribute (and so its __Host- prefix), for plain HTTP on a host "
        "other than localhost; never needed on http://localhost, which browsers treat as secure "
        "(also SERVERSESSION_INSECURE_COOKIE=1; default: off)",
    )

    sessions = sub.add_parser("sessions", help="list, show or revoke stored sessions")
    ssub = sessions.add_subparsers(dest="action", required=True)
    listing = with_store(ssub.add_parser("list", help="list live sessions"))
    listing.add_argument("--user", help="only this user's sessions")
    listing.add_argument("--older-than", type=float, metavar="S", help="created more than S seconds ago")
    listing.add_argument("--idle-over", type=float, metavar="S", help="unused for more than S seconds")
    listing.add_argument("--json", action="store_true", help="print JSON lines")
    show = with_store(ssub.add_parser("show", help="show one session by public handle"))
    show.add_argument("handle")
    revoke = with_store(ssub.add_parser("revoke", help="end one session (HANDLE) or all of a user's (--user)"))
    revoke.add_argument("handle", nargs="?")
    revoke.add_argument("--user")

    stats = with_store(sub.add_parser("stats", help="count sessions, users and bytes"))
    stats.add_argument("--json", action="store_true")
    with_store(sub.add_parser("gc", help="purge expired sessions (stores without native expiry)"))
    migrate = sub.add_parser("migrate", help="copy live sessions to another store (resumable)")
    migrate.add_argument("--from", dest="source", required=True, metavar="URL")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL")
    _import_parser(sub)
    return parser


def _import_parser(sub: Any) -> None:
    imp = sub.add_parser(
        "import",
        help="copy Django's or Flask-Session's live sessions in, so signed-in users stay signed in",
        description="Copy the live sessions of another framework into a serversession store, each under the "
        "cookie value the browser already holds (turn on SessionConfig(accept_imported=True) to serve them). "
        "Sources: django-db:///PATH.sqlite3, django-db+postgresql://..., django-cache+redis://HOST:PORT/DB, "
        "flask-session+redis://HOST:PORT/DB (docs/cli.md lists their options). Resumable: a rerun continues "
        "from the checkpoint; writes are create-only.",
        epilog="Exit status: 0 all live sessions imported (or already present), 1 finished but some were "
        "refused (listed), 2 an error (bad URL, missing secret key, a store down).",
    )
    imp.add_argument("--from", dest="source", required=True, metavar="URL", help="the incumbent's sessions")
    imp.add_argument("--to", dest="target", required=True, metavar="URL", help="the serversession store URL")
    imp.add_argument("--dry-run", action="store_true", help="read and count only; write nothing")
    imp.add_argument("--checkpoint", metavar="PATH",
                     help="the resume file (default .serversession-import-<hash of the URLs>.json here)")  # fmt: skip
    imp.add_argument("--restart", action="store_true", help="ignore the checkpoint and read the source from the start")
    imp.add_argument("--secret-key-env", default="SERVERSESSION_IMPORT_SECRET_KEY", metavar="NAME",
                     help="the environment variable holding the incumbent's SECRET_KEY, needed for Django's "
                     "database sessions and signed Flask-Session cookies "
                     "(default SERVERSESSION_IMPORT_SECRET_KEY)")  # fmt: skip
    imp.add_argument("--batch", type=int, default=500, metavar="N", help="records per read (default 500)")
    imp.add_argument("--progress", action="store_true", help="draw the progress bar even when stderr is not a terminal")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def _row(config: SessionConfig, s: StoredSession) -> dict[str, Any]:
    idle, absolute = deadlines(config, s.meta)
    authenticated = s.meta.authenticated_at
    return {
        "handle": public_handle(s.key),
        "user": s.meta.user,
        "created_at": _iso(s.meta.created_at),
        "last_seen_at": _iso(s.meta.last_seen_at),
        "idle_expires_at": _iso(idle),
        "absolute_expires_at": _iso(absolute),
        "authenticated_at": _iso(authenticated) if authenticated is not None and s.meta.user else None,
        "ip": s.meta.ip,
        "user_agent": s.meta.user_agent,
        "keys": sorted(s.data),
        "bytes": sum(len(k) + len(v) for k, v in s.data.items()),
    }


def _live(manager: SessionManager, user: str | None = None) -> Iterator[StoredSession]:
    now = manager.clock()
    found = manager.store.list_user(user) if user else manager.store.scan()
    for s in found:
        if credentials.is_marker(s.key):
            continue  # a credential-change marker, no session (it only guards sign-ins in flight)
        if not stored_expired(manager.config, s, now) and (user is None or s.meta.user == user):
            yield s


def _progress(label: str, done: int) -> None:
    if sys.stderr.isatty():
        print(f"\r{label}: {done}", end="", file=sys.stderr, flush=True)


def _list(manager: SessionManager, args: argparse.Namespace) -> int:
    now = manager.clock()
    rows = []
    for s in _live(manager, args.user):
        if args.older_than is not None and now - s.meta.created_at <= args.older_than:
            continue
        if args.idle_over is not None and now - s.meta.last_seen_at <= args.idle_over:
            continue
        rows.append(_row(manager.config, s))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'HANDLE':<24} {'USER':<16} {'CREATED':<26} {'LAST SEEN':<26} {'AUTHENTICATED':<26} IP")
    for row in rows:
        print(
            f"{row['handle']:<24} {row['user'] or '-':<16} {row['created_at']:<26} "
            f"{row['last_seen_at']:<26} {row['authenticated_at'] or '-':<26} {row['ip']}"
        )
    print(f"{len(rows)} session(s)")
    return 0


def _find(manager: SessionManager, handle: str) -> StoredSession | None:
    return next((s for s in _live(manager) if public_handle(s.key) == handle), None)


def _show(manager: SessionManager, args: argparse.Namespace) -> int:
    found = _find(manager, args.handle)
    if found is None:
        print(f"serversession: no live session with handle {args.handle}", file=sys.stderr)
        return 1
    print(json.dumps(_row(manager.config, found), indent=2))
    return 0


def _revoke(manager: SessionManager, args: argparse.Namespace) -> int:
    if args.handle:
        found = _find(manager, args.handle)
        if found is None or not manager.store.delete(found.key):
            print(f"serversession: no live session with handle {args.handle}", file=sys.stderr)
            return 1
        print("revoked 1 session")
    elif args.user:
        print(f"revoked {manager.revoke_user(args.user, reason='revoked by an administrator')} session(s)")
    else:
        print("serversession: give a HANDLE or --user", file=sys.stderr)
        return 2
    return 0


def _stats(manager: SessionManager, args: argparse.Namespace) -> int:
    count, users, data_bytes, anonymous = 0, set(), 0, 0
    for s in _live(manager):
        count += 1
        data_bytes += sum(len(k) + len(v) for k, v in s.data.items())
        if s.meta.user:
            users.add(s.meta.user)
        else:
            anonymous += 1
    stats = {
        "store": manager.store.kind,
        "sessions": count,
        "users": len(users),
        "anonymous_sessions": anonymous,
        "data_bytes": data_bytes,
        "average_data_bytes": round(data_bytes / count, 1) if count else 0,
    }
    if args.json:
        print(json.dumps(stats))
    else:
        for name, value in stats.items():
            print(f"{name:<20} {value}")
    return 0


def _gc(manager: SessionManager, args: argparse.Namespace) -> int:
    total = 0
    while True:
        purged = manager.store.purge_expired(1000)
        total += purged
        _progress("purged expired sessions", total)
        if purged < 1000:
            break
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"purged {total} expired session(s)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """Copy every live session; re-running skips what was copied, so it resumes."""
    config = _config()
    source = SessionManager(open_store(args.source), config)
    target = open_store(args.target)
    copied = skipped = 0
    try:
        for s in _live(source):
            commit = Commit(
                set_data=dict(s.data),
                meta=encode_meta(s.meta),
                expires_at=imported_deadline(config, s) or deadlines(config, s.meta)[0],
                index_user=s.meta.user,
                # the configured bound, not an app-set end a later request may lift
                absolute_at=index_deadline(config, s.meta),
            )
            if target.create(s.key, commit):
                copied += 1
            else:
                skipped += 1
            _progress("copied sessions", copied)
    finally:
        source.store.close()
        target.close()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(f"copied {copied} session(s), {skipped} already present")
    return 0


def _import(args: argparse.Namespace) -> int:
    """Import another framework's sessions (see :mod:`serversession.importers.runner`)."""
    from .importers import runner

    if args.batch < 1:
        raise ConfigurationError("--batch must be 1 or more")
    config = _config()
    secret = os.environ.get(args.secret_key_env) or None
    source = runner.open_source(args.source, secret, config.absolute_timeout, args.batch)
    try:
        target = None if args.dry_run else open_store(args.target)
        try:
            path = Path(args.checkpoint) if args.checkpoint else runner.default_checkpoint(args.source, args.target)
            checkpoint = runner.Checkpoint(path, source.kind)
            draw = _import_progress if args.progress or sys.stderr.isatty() else None
            report = runner.run(source, target, time.time, checkpoint, draw, restart=args.restart)
        finally:
            if target is not None:
                target.close()
    finally:
        source.close()
    if draw is not None:
        print(file=sys.stderr)
    verb = "would import" if args.dry_run else "imported"
    present = "" if args.dry_run else f", {report.present} already present"
    print(f"{verb} {report.imported} session(s){present}, {report.expired} skipped as expired, "
          f"{report.refused} refused")  # fmt: skip
    for reason, count in sorted(report.reasons.items()):
        print(f"  refused {count}: {reason}")
    for refused in report.refusals:
        print(f"  refused {refused.label} {refused.reason}")
    if report.refused > len(report.refusals):
        print(f"  ... and {report.refused - len(report.refusals)} more")
    return 1 if report.refused else 0


def _import_progress(report: Any, total: int | None) -> None:
    done = report.seen()
    if total:
        share = min(1.0, done / total)
        bar = "#" * int(share * 30)
        line = f"importing [{bar:<30}] {share:4.0%} {done}/{total}"
    else:
        line = f"importing: {done} read"
    print(f"\r{line}", end="", file=sys.stderr, flush=True)


def _demo(args: argparse.Namespace) -> int:
    from .demo.app import ENV_INSECURE_COOKIE, env_flag
    from .demo.server import serve

    serve(
        host=args.host,
        port=args.port,
        store_url=args.store,
        idle_timeout=args.idle_timeout,
        absolute_timeout=args.absolute_timeout,
        workers=args.workers,
        secret_key=os.environ.get("SERVERSESSION_SECRET_KEY") or None,
        insecure_cookie=args.insecure_cookie or env_flag(os.environ, ENV_INSECURE_COOKIE),
        max_sessions=args.max_sessions,
        reauth_window=args.reauth_window,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "migrate":
            return _migrate(args)
        if args.command == "import":
            return _import(args)
        manager = SessionManager(open_store(args.store), _config())
        try:
            if args.command == "sessions":
                handler = {"list": _list, "show": _show, "revoke": _revoke}[args.action]
            else:
                handler = {"stats": _stats, "gc": _gc}[args.command]
            return handler(manager, args)
        finally:
            manager.store.close()
    except SessionError as exc:
        print(f"serversession: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
