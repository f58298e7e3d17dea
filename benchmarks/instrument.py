"""Counters inside a benchmark server process, read over ``GET /_stats``.

Why count in the app process: Redis's ``INFO commandstats`` also counts the
commands a Lua script runs, so it cannot tell one EVALSHA round trip from
five; the driver can. Every target (ours and the peers) talks to Redis through
redis-py and to SQLite through the ``sqlite3`` module, so one wrapper each
counts all of them the same way:

* ``store``: Redis commands sent by the app (``execute_command`` and each
  command of a pipeline), or SQL statements run (``sqlite3`` trace callback,
  ``BEGIN``/``COMMIT`` included);
* ``served`` / ``ok`` per path: responses started, and those with a 2xx status.
  ``ok`` of ``/write`` is the number of acknowledged increments, counted when
  the response starts, i.e. after every session layer has saved. Lost updates
  are ``ok["/write"] - final counter``, exact even when the load generator
  stops with requests in flight: ``inflight`` counts requests still running,
  and the harness waits for it to reach zero before reading anything.

:func:`install` patches the drivers and must run before the app opens its
store. :func:`asgi` and :func:`wsgi` wrap the outermost app, and :func:`aiohttp`
puts the outermost middleware first in an ``aiohttp.web.Application``; each
answers ``/_stats`` itself, so reading the counters never touches a session.
"""

from __future__ import annotations

import functools
import inspect
import json
import sqlite3
import threading
from collections import Counter
from typing import Any

_lock = threading.Lock()
_counts: Counter[str] = Counter()
STATS_PATH = "/_stats"


def bump(name: str, n: int = 1) -> None:
    """Add ``n`` to counter ``name`` (thread-safe: gthread workers share it)."""
    with _lock:
        _counts[name] += n


def snapshot() -> bytes:
    """The counters as JSON bytes."""
    with _lock:
        return json.dumps(dict(_counts)).encode()


def _count_calls(cls: Any, name: str, how_many: Any = None) -> None:
    original = getattr(cls, name)
    size = how_many or (lambda self: 1)
    if _is_async(original):

        @functools.wraps(original)
        async def awrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            bump("store", size(self))
            return await original(self, *args, **kwargs)

        setattr(cls, name, awrapper)
    else:

        @functools.wraps(original)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            bump("store", size(self))
            return original(self, *args, **kwargs)

        setattr(cls, name, wrapper)


def _is_async(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn)


def _patch_redis() -> None:
    try:
        import redis.asyncio.client
        import redis.asyncio.cluster
        import redis.client
        import redis.cluster
    except ImportError:
        return
    # Pipelines override execute_command (it only queues); each queued command counts at execute().
    for cls in (redis.client.Redis, redis.asyncio.client.Redis, redis.cluster.RedisCluster,
                redis.asyncio.cluster.RedisCluster):  # fmt: skip
        _count_calls(cls, "execute_command")
    for cls in (redis.client.Pipeline, redis.asyncio.client.Pipeline, redis.cluster.ClusterPipeline,
                redis.asyncio.cluster.ClusterPipeline):  # fmt: skip
        _count_calls(cls, "execute", len)


def _patch_sqlite() -> None:
    original = sqlite3.connect

    @functools.wraps(original)
    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = original(*args, **kwargs)
        conn.set_trace_callback(lambda _statement: bump("store"))
        return conn

    # serversession calls sqlite3.connect, Django calls sqlite3.dbapi2.connect.
    sqlite3.connect = connect
    sqlite3.dbapi2.connect = connect  # type: ignore[attr-defined]


_installed = False


def install() -> None:
    """Patch redis-py and sqlite3 so that every store command is counted (idempotent)."""
    global _installed
    if not _installed:
        _installed = True
        _patch_redis()
        _patch_sqlite()


def _record(path: str, status: int) -> None:
    with _lock:
        _counts["served " + path] += 1
        if 200 <= status < 300:
            _counts["ok " + path] += 1


def asgi(app: Any) -> Any:
    """Wrap an ASGI app: count responses per path, answer ``GET /_stats``."""

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        path = scope["path"]
        if path == STATS_PATH:
            body = snapshot()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                _record(path, message["status"])
            await send(message)

        bump("inflight")
        try:
            await app(scope, receive, counting_send)
        finally:
            bump("inflight", -1)

    return counted


def wsgi(app: Any) -> Any:
    """Wrap a WSGI app: count responses per path, answer ``GET /_stats``."""

    def counted(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == STATS_PATH:
            body = snapshot()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]

        def counting_start(status: str, headers: Any, exc_info: Any = None) -> Any:
            _record(path, int(status.split(" ", 1)[0]))
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        bump("inflight")
        try:
            return app(environ, counting_start)  # the session is saved before this returns
        finally:
            bump("inflight", -1)

    return counted


def aiohttp(app: Any) -> Any:
    """Count responses per path in an ``aiohttp.web.Application``, answer ``GET /_stats``; return the app.

    The middleware goes first in ``app.middlewares`` (outermost), after the
    session layer's own: a handler's response comes back through it only once
    the session layer's middleware has saved, as with :func:`asgi`'s count at
    ``http.response.start``. An exception counts as the 500 aiohttp answers.
    """
    from aiohttp import web

    @web.middleware
    async def counted(request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path == STATS_PATH:
            return web.Response(body=snapshot(), content_type="application/json")
        bump("inflight")
        try:
            try:
                response: web.StreamResponse = await handler(request)
            except web.HTTPException as exc:
                _record(path, exc.status)
                raise
            except Exception:
                _record(path, 500)
                raise
            _record(path, response.status)
            return response
        finally:
            bump("inflight", -1)

    app.middlewares.insert(0, counted)
    return app
