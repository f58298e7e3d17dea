"""What is compared: every target (a framework, a session layer, a store) and the goals.

A target is one app from ``app_<family>.py`` (``asgi``, ``flask``, ``django``,
``litestar``, ``quart``, ``aiohttp``) with one ``BENCH_KIND`` and one store.
Each family has a *floor* target with no session layer at all, so the cost of a
session can also be read against the framework alone, and an *incumbent*
(:data:`INCUMBENTS`): the session layer its users would otherwise reach for.
``÷bare`` in the table is the same target's bare endpoint, which for
serversession already includes loading the session (its middleware loads it
for every request that carries a cookie), while some peers load lazily.

The goals are the issue's numbers, checked against the ratios measured in the
same run; a miss is reported, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass

ENDPOINTS = ("bare", "read", "write")


@dataclass(frozen=True)
class Target:
    """One server configuration to load.

    ``store`` names a backend the harness provides: ``memory``, ``sqlite``,
    ``redis``, ``cluster`` or ``""`` (none). ``counter`` says whether the final
    counter can be read back on the server (not for signed cookies, whose state
    lives in a client that wrk does not update).
    """

    name: str
    family: str  # a key of MODULES
    kind: str  # BENCH_KIND
    store: str = ""
    counter: bool = True

    @property
    def ours(self) -> bool:
        return self.kind == "ours"

    @property
    def floor(self) -> bool:
        return self.kind == "floor"

    @property
    def endpoints(self) -> tuple[str, ...]:
        return ("bare",) if self.floor else ENDPOINTS


TARGETS = [
    Target("asgi floor", "asgi", "floor"),
    Target("ours asgi memory", "asgi", "ours", "memory"),
    Target("ours asgi sqlite", "asgi", "ours", "sqlite"),
    Target("ours asgi redis", "asgi", "ours", "redis"),
    Target("ours asgi cluster", "asgi", "ours", "cluster"),
    Target("starsessions redis", "asgi", "starsessions", "redis"),
    Target("starlette cookie", "asgi", "cookie", counter=False),
    Target("flask floor", "flask", "floor"),
    Target("ours flask redis", "flask", "ours", "redis"),
    Target("flask-session redis", "flask", "flask-session", "redis"),
    Target("django floor", "django", "floor"),
    Target("ours django redis", "django", "ours", "redis"),
    Target("ours django sqlite", "django", "ours", "sqlite"),
    Target("django cache redis", "django", "cache", "redis"),
    Target("django db sqlite", "django", "db", "sqlite"),
    Target("litestar floor", "litestar", "floor"),
    Target("ours litestar redis", "litestar", "ours", "redis"),
    Target("litestar server-side redis", "litestar", "server-side", "redis"),
    Target("quart floor", "quart", "floor"),
    Target("ours quart redis", "quart", "ours", "redis"),
    Target("quart cookie", "quart", "cookie", counter=False),
    Target("aiohttp floor", "aiohttp", "floor"),
    Target("ours aiohttp redis", "aiohttp", "ours", "redis"),
    Target("aiohttp-session redis", "aiohttp", "aiohttp-session", "redis"),
]

MODULES = {family: f"benchmarks.app_{family}" for family in ("asgi", "flask", "django", "litestar", "quart", "aiohttp")}
#: How each family is served: uvicorn (ASGI), gunicorn gthread (WSGI) or aiohttp's own runner.
SERVERS = {"asgi": "uvicorn", "litestar": "uvicorn", "quart": "uvicorn", "flask": "gunicorn", "django": "gunicorn",
           "aiohttp": "aiohttp"}  # fmt: skip

#: Per family: serversession's Redis target and the incumbent it is compared with
#: (the same endpoint of both, and each against the family's floor) in the ratio
#: table. Quart has no maintained server-side session library, so its incumbent
#: is Quart's default signed-cookie session.
INCUMBENTS = {
    "asgi": ("ours asgi redis", "starsessions redis"),
    "flask": ("ours flask redis", "flask-session redis"),
    "django": ("ours django redis", "django cache redis"),
    "litestar": ("ours litestar redis", "litestar server-side redis"),
    "quart": ("ours quart redis", "quart cookie"),
    "aiohttp": ("ours aiohttp redis", "aiohttp-session redis"),
}


@dataclass(frozen=True)
class RatioGoal:
    """``num`` endpoint req/s divided by ``den`` endpoint req/s compared with ``limit``.

    ``at_least`` True means the ratio must be >= ``limit``, else <= ``limit``.
    """

    label: str
    num: tuple[str, str]  # (target, endpoint)
    den: tuple[str, str]
    limit: float
    at_least: bool


RATIO_GOALS = [
    RatioGoal("ASGI Redis read vs starsessions", ("ours asgi redis", "read"), ("starsessions redis", "read"),
              1.6, True),
    RatioGoal("ASGI Redis bare/read", ("ours asgi redis", "bare"), ("ours asgi redis", "read"), 1.5, False),
    RatioGoal("ASGI Redis floor/read", ("asgi floor", "bare"), ("ours asgi redis", "read"), 1.5, False),
    RatioGoal("ASGI memory bare/read", ("ours asgi memory", "bare"), ("ours asgi memory", "read"), 1.15, False),
    RatioGoal("ASGI memory floor/read", ("asgi floor", "bare"), ("ours asgi memory", "read"), 1.15, False),
    RatioGoal("Flask Redis read vs Flask-Session", ("ours flask redis", "read"), ("flask-session redis", "read"),
              1.5, True),
    RatioGoal("Django Redis read vs cache sessions", ("ours django redis", "read"), ("django cache redis", "read"),
              2.0, True),
    RatioGoal("Django SQLite read vs db sessions", ("ours django sqlite", "read"), ("django db sqlite", "read"),
              3.0, True),
]  # fmt: skip

#: Store commands per request for serversession on Redis: (endpoint, most allowed).
COMMAND_GOALS = {"read": 1.0, "write": 2.0}
#: Memory store: bytes of overhead per session beyond its data, at 1,000,000 sessions.
MEMORY_OVERHEAD_GOAL = 300
#: Expiring a fixed number of sessions may cost at most this much more at 100x the live sessions.
EXPIRY_GROWTH_GOAL = 2.0
