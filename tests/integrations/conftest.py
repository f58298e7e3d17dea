"""Fixtures: the behaviour-suite app of every integration, served by a real server.

``live_app`` is parametrized over every kind in ``live_apps.KINDS`` (ASGI, WSGI,
Flask, Django, Litestar, Quart, aiohttp), each under the server ``live_apps.SERVERS``
names, with a SQLite store and a 2 s idle timeout, started once per run.
``outage_app`` starts each one again on a dedicated Redis server that the test
may kill. ``lazy_app`` and ``lazy_outage_app`` run each one reading its session
lazily (``SS_LAZY=1`` for the async kinds, where it is opt-in) on a Redis
server of its own, whose ``INFO commandstats`` count the store commands.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_apps import KINDS, SERVERS, LiveApp, close_browsers, serve

from servers import RedisServer

IDLE = "2"


def start(kind: str, store: str, workdir: Path, **extra: str) -> contextlib.AbstractContextManager[str]:
    env = {"SS_STORE": store, "SS_IDLE": IDLE, "SS_DB": str(workdir / "django.sqlite3"), **extra}
    server = SERVERS[kind]
    return serve(f"behaviour_{kind}:app", workdir, server=server, env=env)


@pytest.fixture(scope="session", params=KINDS)
def live_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """Each integration's behaviour app on a SQLite store."""
    kind = request.param
    workdir = tmp_path_factory.mktemp(f"live-{kind}")
    with start(kind, f"sqlite:///{workdir / 'sessions.sqlite3'}", workdir) as url:
        yield LiveApp(kind, url)


@pytest.fixture(params=KINDS)
def outage_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LiveApp, RedisServer]]:
    """Each integration's behaviour app on its own Redis server, which the test may kill."""
    with RedisServer() as redis, start(request.param, redis.url, tmp_path) as url:
        yield LiveApp(request.param, url), redis


#: A lazy app's environment: opt in where it is an option, and an idle window no test waits out
#: (no renewal write, so a read is exactly one store command).
LAZY = {"SS_LAZY": "1", "SS_IDLE": "600"}


@pytest.fixture(scope="session", params=KINDS)
def lazy_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[tuple[LiveApp, RedisServer]]:  # fmt: skip
    """Each integration's behaviour app reading its session at first use, on its own Redis server."""
    kind = request.param
    workdir = tmp_path_factory.mktemp(f"lazy-{kind}")
    with RedisServer() as redis, start(kind, redis.url, workdir, **LAZY) as url:
        yield LiveApp(kind, url), redis


@pytest.fixture(params=KINDS)
def lazy_outage_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LiveApp, RedisServer]]:
    """Each integration's behaviour app reading its session at first use, on a Redis server the test may kill."""
    with RedisServer() as redis, start(request.param, redis.url, tmp_path, **LAZY) as url:
        yield LiveApp(request.param, url), redis


@pytest.fixture(autouse=True)
def _close_browsers() -> Iterator[None]:
    yield
    close_browsers()


@pytest.fixture(params=KINDS)
def guessing_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveApp]:
    """Each integration's behaviour app with a guessing limit of 5 unknown IDs a minute."""
    env = {"SS_STORE": f"sqlite:///{tmp_path / 's.sqlite3'}", "SS_IDLE": "60", "SS_DB": str(tmp_path / "d.sqlite3"),
           "SS_GUESS_LIMIT": "5"}  # fmt: skip
    server = SERVERS[request.param]
    with serve(f"behaviour_{request.param}:app", tmp_path, server=server, env=env) as url:
        yield LiveApp(request.param, url)


@pytest.fixture(params=[(kind, policy) for kind in KINDS for policy in ("evict", "refuse")],
                ids=lambda p: f"{p[0]}-{p[1]}")  # fmt: skip
def capped_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LiveApp, str]]:
    """Each integration's behaviour app with at most one session per user, evicting or refusing."""
    kind, policy = request.param
    env = {"SS_STORE": f"sqlite:///{tmp_path / 's.sqlite3'}", "SS_IDLE": "60", "SS_DB": str(tmp_path / "d.sqlite3"),
           "SS_CAP": "1", "SS_ON_LIMIT": policy}  # fmt: skip
    server = SERVERS[kind]
    with serve(f"behaviour_{kind}:app", tmp_path, server=server, env=env) as url:
        yield LiveApp(kind, url), policy
