"""Run one target: start its server, sign in, load each endpoint, read the counters.

Why a subprocess per target: each server gets a clean interpreter, one worker
and its own CPU; the load generator, Redis and this process share the other
CPUs (pinned with ``sched_setaffinity``, the call ``taskset`` makes), so the
server under test is the only thing on its core. ASGI targets (Starlette,
Litestar, Quart) all run under uvicorn with the same flags; Flask and Django
under gunicorn ``gthread`` with the same thread count; aiohttp under its own
``web.run_app``, with the event loop uvicorn gets (see :data:`.targets.SERVERS`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from . import load
from .targets import MODULES, SERVERS, Target

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the real-server helpers shared with the test suite

from servers import HOST, RedisCluster, RedisServer, free_port  # noqa: E402

GUNICORN_THREADS = 4
START_TIMEOUT = 30.0


def _uvicorn_flags() -> list[str]:
    """The same loop and HTTP parser for every ASGI target: the fastest installed."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return ["--loop", loop, "--http", http]


UVICORN_FLAGS = _uvicorn_flags()


@dataclass(frozen=True)
class Cpus:
    """Which CPUs the server under test gets, and which everything else gets."""

    server: set[int] | None
    rest: set[int] | None

    @classmethod
    def split(cls) -> Cpus:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None)
        return cls({cpus[0]}, set(cpus[1:]))

    def describe(self) -> str:
        if self.server is None:
            return "not pinned (one CPU)"
        return f"server on CPU {sorted(self.server)}, load generator and stores on CPU {sorted(self.rest or ())}"


class Backends:
    """The stores the targets need, started on demand and shared by all targets."""

    def __init__(self, cpus: Cpus) -> None:
        self.cpus = cpus
        self.dir = Path(tempfile.mkdtemp(prefix="ss-bench-"))
        self.redis: RedisServer | None = None
        self.cluster: RedisCluster | None = None

    def _pin(self, servers: list[RedisServer]) -> None:
        for server in servers:
            if self.cpus.rest and server.proc is not None:
                os.sched_setaffinity(server.proc.pid, self.cpus.rest)

    def redis_nodes(self, store: str) -> list[RedisServer]:
        """The Redis processes behind ``store`` (masters only), empty for other stores."""
        if store == "redis" and self.redis is not None:
            return [self.redis]
        if store == "cluster" and self.cluster is not None:
            return self.cluster.nodes[: self.cluster.MASTERS]
        return []

    def url(self, target: Target) -> str:
        """The store URL for ``target``, starting its server on first use."""
        if target.store == "memory":
            return "memory://"
        if target.store == "sqlite":
            name = "django.sqlite3" if target.kind == "db" else "ours.sqlite3"
            path = self.dir / f"{target.family}-{name}"
            path.unlink(missing_ok=True)
            return f"sqlite:///{path}"
        if target.store == "redis":
            if self.redis is None:
                self.redis = RedisServer().start()
                self._pin([self.redis])
            return self.redis.url
        if target.store == "cluster":
            if self.cluster is None:
                self.cluster = RedisCluster().start()
                self._pin(self.cluster.nodes)
            return self.cluster.url
        return ""

    def flush(self) -> None:
        """Empty every Redis between targets, so each starts from the same state."""
        nodes = ([self.redis] if self.redis else []) + (self.cluster.nodes if self.cluster else [])
        for node in nodes:
            with node.client() as r:
                r.flushall()

    def stop(self, keep_logs: bool = False) -> None:
        """Stop the servers; delete the work directory unless its server logs are wanted."""
        for server in (self.cluster, self.redis):
            if server is not None:
                server.stop()
        if not keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)


def reset_commandstats(nodes: list[RedisServer]) -> None:
    for node in nodes:
        with node.client() as r:
            r.config_resetstat()


def server_ops(nodes: list[RedisServer]) -> int:
    """Commands the servers executed since the reset, Lua-internal ones included."""
    total = 0
    for node in nodes:
        with node.client() as r:
            for name, stats in r.info("commandstats").items():
                if not name.startswith(("cmdstat_config", "cmdstat_info")):
                    total += int(stats["calls"])
    return total


@contextlib.contextmanager
def serve(target: Target, store_url: str, cpus: Cpus, workdir: Path) -> Iterator[str]:
    """Start ``target``'s server on a free port; yield its base URL; stop it after."""
    port = free_port()
    module = MODULES[target.family]
    if SERVERS[target.family] == "uvicorn":
        argv = ["-m", "uvicorn", f"{module}:app", "--host", HOST, "--port", str(port), "--workers", "1",
                "--no-access-log", "--log-level", "warning", *UVICORN_FLAGS]  # fmt: skip
    elif SERVERS[target.family] == "aiohttp":
        argv = ["-m", module, "--host", HOST, "--port", str(port), "--loop", UVICORN_FLAGS[1]]
    else:
        attr = "application" if target.family == "django" else "app"
        argv = ["-m", "gunicorn", "--workers", "1", "--worker-class", "gthread", "--threads", str(GUNICORN_THREADS),
                "--bind", f"{HOST}:{port}", "--log-level", "warning", f"{module}:{attr}"]  # fmt: skip
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "BENCH_KIND": target.kind, "BENCH_STORE": store_url, "PYTHONPATH": pythonpath}
    if target.kind == "db":
        env["BENCH_DB"] = store_url.removeprefix("sqlite:///")
    log_path = workdir / f"{target.name.replace(' ', '-')}.log"
    pin = cpus.server
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None,
        )  # fmt: skip
    url = f"http://{HOST}:{port}"
    try:
        _wait_ready(proc, url, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/_stats", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not start (exit {proc.poll()}):\n{log_path.read_text()[-2000:]}")


@dataclass
class Session:
    """The signed-in session wrk replays: its Cookie header and CSRF token."""

    cookie: str
    csrf: str


def sign_in(url: str, target: Target) -> Session:
    """Create a session and sign in, as a browser would; check that it reads back."""
    if target.floor:  # no session layer: send a cookie of the same size anyway
        return Session("session=" + "x" * 43, "")
    with httpx.Client(base_url=url, timeout=10) as client:
        started = client.get("/start")
        started.raise_for_status()
        login = client.post("/login", headers={"X-CSRF-Token": started.json()["csrf"]})
        login.raise_for_status()
        cookie = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
        session = Session(cookie, login.json()["csrf"])
    seen = httpx.get(url + "/read", headers={"Cookie": session.cookie}, timeout=10).json()
    if seen.get("user") != "bench":
        raise RuntimeError(f"the signed-in session does not read back: {seen!r}")
    return session


@dataclass
class Row:
    """One target x endpoint measurement."""

    target: Target
    endpoint: str
    result: load.LoadResult
    served: int
    store_per_req: float | None = None
    server_ops_per_req: float | None = None
    lost: int | None = None
    spread: float | None = None  # (max - min) / median of req/s over the rounds


def combine(rounds: list[Row]) -> Row:
    """One row from several rounds: the median rate and latencies; failures and lost updates summed.

    Why rounds: on a shared or virtual machine the speed drifts over minutes;
    running every target once per round and taking medians keeps that drift
    from favouring whichever target happened to run in a quiet minute.
    """
    if len(rounds) == 1:
        return rounds[0]
    first = rounds[0]
    rates = [r.result.rps for r in rounds]
    result = load.LoadResult(
        requests=sum(r.result.requests for r in rounds), ok=sum(r.result.ok for r in rounds),
        failed=sum(r.result.failed for r in rounds), rps=statistics.median(rates),
        p50_ms=statistics.median(r.result.p50_ms for r in rounds),
        p99_ms=statistics.median(r.result.p99_ms for r in rounds),
    )  # fmt: skip
    served = sum(r.served for r in rounds)

    def weighted(values: list[float | None]) -> float | None:
        if any(v is None for v in values) or not served:
            return None
        return sum((v or 0.0) * r.served for v, r in zip(values, rounds, strict=True)) / served

    lost = None if any(r.lost is None for r in rounds) else sum(r.lost or 0 for r in rounds)
    return Row(first.target, first.endpoint, result, served, weighted([r.store_per_req for r in rounds]),
               weighted([r.server_ops_per_req for r in rounds]), lost,
               (max(rates) - min(rates)) / result.rps if result.rps else None)  # fmt: skip


def stats(url: str) -> dict[str, int]:
    """The server's counters once no request is running (wrk stops with requests in flight)."""
    deadline = time.monotonic() + 60
    while True:
        data: dict[str, int] = httpx.get(url + "/_stats", timeout=10).json()
        if data.get("inflight", 0) == 0 or time.monotonic() > deadline:
            return data
        time.sleep(0.02)


def counter(url: str, session: Session) -> int:
    response = httpx.get(url + "/counter", headers={"Cookie": session.cookie}, timeout=10)
    response.raise_for_status()
    return int(response.json()["n"])


def _request(endpoint: str, session: Session) -> tuple[str, dict[str, str]]:
    method = "POST" if endpoint == "write" else "GET"
    headers = {"Cookie": session.cookie}
    if method == "POST" and session.csrf:
        headers["X-CSRF-Token"] = session.csrf
    return method, headers


def warm_up(url: str, target: Target, session: Session, count: int) -> None:
    """``count`` requests per endpoint first: imports, pools and caches settle outside the measurement."""
    for endpoint in target.endpoints:
        method, headers = _request(endpoint, session)
        load.run_python(f"{url}/{endpoint}", method, headers, 10, count)


def measure(url: str, target: Target, endpoint: str, session: Session, nodes: list[RedisServer],
            loader: Any) -> Row:  # fmt: skip
    """Load one endpoint with ``loader(url, method, headers)`` and read every counter around it."""
    method, headers = _request(endpoint, session)
    n0 = counter(url, session) if endpoint == "write" and target.counter else 0
    before = stats(url)
    reset_commandstats(nodes)
    result = loader(f"{url}/{endpoint}", method, headers)
    after = stats(url)
    ops = server_ops(nodes)
    path = "/" + endpoint

    def delta(name: str) -> int:
        return after.get(name, 0) - before.get(name, 0)

    served = delta("served " + path)
    row = Row(target, endpoint, result, served)
    if served and target.store in ("sqlite", "redis", "cluster"):
        row.store_per_req = delta("store") / served
        if nodes:
            row.server_ops_per_req = ops / served
    if endpoint == "write" and target.counter:
        row.lost = delta("ok " + path) - (counter(url, session) - n0)
    return row
