"""Tools for the fault and soak tests: sessions to drive, a load generator, a slow proxy.

Everything talks to 127.0.0.1 only, and every loop is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import httpx
from demo_client import COOKIE, DemoServer
from sec_kit import percentile, sign_in, start_session

SKU = "cookie-box"


@dataclass
class Shopper:
    """One session under load: its ID, CSRF token and what the server acknowledged."""

    session_id: str
    csrf: str
    user: str | None = None
    acked: int = 0  # cart additions answered 200
    unsure: int = 0  # additions answered otherwise (503, no answer): a timed-out write may still have landed
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def anonymous(cls, demo: DemoServer) -> Shopper:
        return cls(*start_session(demo))

    @classmethod
    def signed_in(cls, demo: DemoServer, user: str) -> Shopper:
        return cls(*sign_in(demo, user), user=user)


@dataclass(frozen=True)
class Outcome:
    """One request of a load: what, where, when (monotonic seconds), how long, and the status (0: no answer)."""

    op: str
    demo: int
    started: float
    seconds: float
    status: int
    error: str = ""


class Load:
    """Worker threads sending a mix of requests for ``shoppers`` to ``demos`` until stopped.

    ``mix`` maps an operation ("add", "cart", "me", "settings", "session") to its
    weight. Each worker has its own connection pool per demo. ``timeout`` bounds
    each request on the client side, well above the server's own store timeout.
    """

    def __init__(
        self,
        demos: Sequence[DemoServer],
        shoppers: Sequence[Shopper],
        *,
        workers: int = 8,
        mix: dict[str, int] | None = None,
        timeout: float = 10.0,
        seed: int = 0,
    ) -> None:
        self.demos = list(demos)
        self.shoppers = list(shoppers)
        self.workers = workers
        self.mix = mix or {"add": 3, "cart": 3, "me": 1}
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seed = seed

    def start(self) -> Load:
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
            assert not thread.is_alive(), "a load worker hung"
        return self.outcomes

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _work(self, n: int) -> None:
        rng = random.Random(self._seed * 1000 + n)
        ops, weights = zip(*self.mix.items(), strict=True)
        clients = [httpx.Client(base_url=d.url, timeout=self.timeout) for d in self.demos]
        try:
            while not self._stop.is_set():
                shopper = rng.choice(self.shoppers)
                index = rng.randrange(len(clients))
                op = rng.choices(ops, weights)[0]
                self.record(self.request(clients[index], index, shopper, op))
        finally:
            for client in clients:
                client.close()

    def request(self, client: httpx.Client, index: int, shopper: Shopper, op: str) -> Outcome:
        headers = {"Cookie": f"{COOKIE}={shopper.session_id}", "X-CSRF-Token": shopper.csrf}
        started = time.monotonic()
        try:
            if op == "add":
                response = client.post("/api/cart/items", json={"sku": SKU, "qty": 1}, headers=headers)
            elif op == "settings":
                theme = random.choice(["light", "dark"])
                response = client.put("/api/settings", json={"theme": theme}, headers=headers)
            elif op == "session":
                response = client.get("/api/session", headers=headers)
            else:
                response = client.get(f"/api/{op}", headers=headers)
            status, error = response.status_code, ""
        except httpx.HTTPError as exc:
            status, error = 0, type(exc).__name__
        outcome = Outcome(op, index, started, time.monotonic() - started, status, error)
        if op == "add":
            with shopper.lock:
                if status == 200:
                    shopper.acked += 1
                else:
                    shopper.unsure += 1
        return outcome

    def record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)


def summary(outcomes: Sequence[Outcome]) -> str:
    """A one-line account of a load: counts by status, p50/p99/max latency in ms."""
    statuses = Counter(o.status for o in outcomes)
    seconds = [o.seconds for o in outcomes]
    return (
        f"{len(outcomes)} requests, statuses {dict(sorted(statuses.items()))}, "
        f"p50 {percentile(seconds, 50) * 1000:.1f} ms, p99 {percentile(seconds, 99) * 1000:.1f} ms, "
        f"max {max(seconds, default=0) * 1000:.1f} ms"
    )


def cart_count(demo: DemoServer, shopper: Shopper) -> tuple[int, int]:
    """(status, cart count) of GET /api/cart for this shopper."""
    with httpx.Client(base_url=demo.url, timeout=10) as client:
        response = client.get("/api/cart", headers={"Cookie": f"{COOKIE}={shopper.session_id}"})
    return response.status_code, int(response.json().get("count", -1)) if response.status_code == 200 else -1


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll ``check`` until true; return the seconds it took. Bounded by ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - start


def healthy(demo: DemoServer) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{demo.url}/healthz", timeout=5).status_code == 200
    return False


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that holds every reply from the server for ``delay`` seconds.

    Runs its own event loop in a thread. Set ``delay`` at any time; 0 forwards at
    once. Stands in for a store that answers slowly (an overloaded or swapping
    Redis, a congested network) without stopping it.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> DelayProxy:
        self._thread.start()
        assert self._ready.wait(10), "proxy did not start"
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            sock: socket.socket = self._server.sockets[0]
            self.port = sock.getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            self._tasks.discard(task)
            return

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await reader.read(65536):
                    if slow and self.delay:
                        await asyncio.sleep(self.delay)
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(OSError):
                writer.close()

        try:
            await asyncio.gather(pump(client_reader, server_writer, False), pump(server_reader, client_writer, True))
        finally:
            self._tasks.discard(task)


def per_second(outcomes: Sequence[Outcome], start: float) -> Iterator[tuple[int, Counter[int]]]:
    """Statuses by whole second since ``start`` (for failure messages)."""
    buckets: dict[int, Counter[int]] = {}
    for o in outcomes:
        buckets.setdefault(int(o.started - start), Counter())[o.status] += 1
    yield from sorted(buckets.items())


def _postgres_children(postmaster: int) -> list[int]:
    """The processes ``postmaster`` forked (backends, checkpointer, WAL writer...), from /proc."""
    import os

    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == postmaster:
            children.append(int(entry))
    return children


@contextlib.contextmanager
def frozen_postgres(data_dir: object, limit: float = 30.0) -> Iterator[list[int]]:
    """SIGSTOP every process of the PostgreSQL cluster in ``data_dir`` (a path); SIGCONT them all on the way out.

    A stalled server: the kernel still accepts connections and acknowledges what is
    sent, so TCP keepalives and ``tcp_user_timeout`` never fire, and nothing answers
    (not even ``statement_timeout``, which runs in the frozen backend). The postmaster
    is stopped first, so it forks no backend while its children are listed. Yields
    the stopped pids. After ``limit`` seconds a timer resumes the server anyway, so a
    call that hangs until the server answers fails its test instead of hanging it.
    Linux only (/proc).
    """
    import os
    import signal
    from pathlib import Path

    postmaster = int((Path(str(data_dir)) / "postmaster.pid").read_text().split()[0])
    stopped: list[int] = []

    def resume() -> None:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    watchdog = threading.Timer(limit, resume)
    watchdog.daemon = True
    try:
        os.kill(postmaster, signal.SIGSTOP)
        stopped.append(postmaster)
        for pid in _postgres_children(postmaster):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        watchdog.start()
        yield stopped
    finally:
        watchdog.cancel()
        resume()
