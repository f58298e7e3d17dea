"""Scale: memory per session, bytes per session in Redis, and the cost of expiry.

Why each measurement:

* **Memory store, bytes per session** at ``n`` sessions (1,000,000 in the full
  run): resident memory of a fresh process before and after creating them
  through the real lifecycle, minus the session's own data (its encoded keys
  and values); what is left is what the library spends per session.
* **Redis, bytes per session**: ``MEMORY USAGE`` of each session hash (and of
  the user index, for signed-in sessions), and ``used_memory`` grown per
  session, which also counts Redis's keyspace and expiry dictionaries. These
  feed the capacity model.
* **Expiry cost** as the live sessions grow 1x, 10x and 100x while the number
  of expiring sessions stays fixed: purging must cost what expires, not what
  lives (the memory store's timing wheel, SQLite's index on ``expires_at``).
  A fake clock ages the sessions, so nothing waits. Redis expires keys itself.
* **Redis throughput** for the exact commands a request sends (HGETALL for a
  load, the commit script's EVALSHA for a write), with ``redis-benchmark`` when
  installed: the per-node rate the capacity model divides by.

Run as ``python -m benchmarks.scale memory N [--user]`` it measures the memory
store in the current (fresh) process and prints JSON; :func:`run` starts that.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from typing import Any

from serversession import MemoryStore, SessionConfig, SessionManager, SQLiteStore
from serversession.core.codec import encode_value
from serversession.core.transport import IncomingToken

# The most common browser User-Agent shape (Chrome on Windows, 111 characters).
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
IP = "203.0.113.7"
DATA = {"cart": {"sku-1042": 2, "sku-77": 1}, "theme": "dark"}
DATA_BYTES = sum(len(k) + len(encode_value(k, v)) for k, v in DATA.items())
NO_TOKEN = IncomingToken(None, via_header=False)
LIVE_CONFIG = SessionConfig(idle_timeout=86400, absolute_timeout=86400)
SHORT_CONFIG = SessionConfig(idle_timeout=60, absolute_timeout=86400)


def new_session(manager: SessionManager, user: str | None = None) -> None:
    """Create one session the way a request does: load (nothing), set data, save.

    The User-Agent and IP are fresh string objects, as a server's parsed headers
    are: a shared constant would hide what each session really keeps.
    """
    session = manager.load(NO_TOKEN, user_agent=USER_AGENT.encode().decode(), ip=IP.encode().decode())
    for key, value in DATA.items():
        session[key] = value
    if user is not None:
        session.user = user
    manager.save(session)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Clock:
    """A clock the test moves: sessions age without waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _purge_cost(store: Any, manager: SessionManager, clock: _Clock, expiring: int) -> float:
    """Seconds to purge ``expiring`` sessions that just expired (best of 3 rounds)."""
    best = float("inf")
    for _ in range(3):
        for _ in range(expiring):
            new_session(manager)
        clock.now += SHORT_CONFIG.idle_timeout + 1
        start = time.perf_counter()
        removed = 0
        while (n := store.purge_expired(10_000)) > 0:
            removed += n
        best = min(best, time.perf_counter() - start)
        if removed != expiring:
            raise RuntimeError(f"{store.kind}: purged {removed} sessions, expected {expiring}")
    return best


def memory_store(n: int, expiring: int, user: bool) -> dict[str, Any]:
    """In this process: expiry cost at n/100, n/10, n live sessions, then bytes per session at n."""
    clock = _Clock()
    store = MemoryStore(clock=clock)
    live = SessionManager(store, LIVE_CONFIG, clock=clock)
    short = SessionManager(store, SHORT_CONFIG, clock=clock)
    base = _rss()
    costs: dict[int, float] = {}
    made = 0
    for stage in (n // 100, n // 10, n):
        while made < stage:
            new_session(live, f"user{made}" if user else None)
            clock.now += 0.002  # 500 new sessions a second: expiries spread over many seconds
            made += 1
        if stage == n:
            rss_per_session = (_rss() - base) / n
        if not user:
            costs[stage] = _purge_cost(store, short, clock, expiring)
    return {"sessions": n, "bytes_per_session": rss_per_session, "data_bytes": DATA_BYTES,
            "overhead_bytes": rss_per_session - DATA_BYTES, "purge_seconds": costs}  # fmt: skip


def _memory_subprocess(n: int, expiring: int, user: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.scale", "memory", str(n), str(expiring)] + (["--user"] if user else [])
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"memory scale run failed: {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    result["purge_seconds"] = {int(k): v for k, v in result["purge_seconds"].items()}  # JSON made them strings
    return result


def sqlite_expiry(path: str, n: int, expiring: int) -> dict[int, float]:
    """Expiry cost in SQLite at n/100, n/10, n live rows (filled in bulk: the fill is not measured)."""
    clock = _Clock()
    store = SQLiteStore(path, clock=clock)
    short = SessionManager(store, SHORT_CONFIG, clock=clock)
    row = ('{"cart":"{}"}', json.dumps({"c": "1", "s": "1", "a": USER_AGENT, "i": IP, "x": "x" * 43}))
    costs, made = {}, 0
    fill = sqlite3.connect(path, isolation_level=None)
    for stage in (n // 100, n // 10, n):
        fill.execute("BEGIN")
        fill.executemany("INSERT INTO serversession (key, data, meta, expires_at) VALUES (?, ?, ?, ?)",
                         ((f"live{i:09d}", *row, clock.now + 86400) for i in range(made, stage)))  # fmt: skip
        fill.execute("COMMIT")
        made = stage
        costs[stage] = _purge_cost(store, short, clock, expiring)
    fill.close()
    store.close()
    return costs


def redis_bytes(url: str, node: Any, count: int) -> dict[str, float]:
    """Bytes per session in Redis: anonymous, signed in (plus a user index each), and signed in
    with ``hash-max-listpack-value 256`` (by default a field over 64 bytes, such as a browser's
    User-Agent, turns the session's compact listpack into a hash table).
    """
    from serversession.stores.redis import RedisStore

    out = {}
    for label, user, listpack in (("anonymous", False, 64), ("signed_in", True, 64), ("listpack256", True, 256)):
        with node.client() as r:
            r.flushall()
            r.config_set("hash-max-listpack-value", listpack)
            before = int(r.info("memory")["used_memory"])
        store = RedisStore(url)
        manager = SessionManager(store)
        for i in range(count):
            new_session(manager, f"user{i}" if user else None)
        store.close()
        with node.client() as r:
            grown = int(r.info("memory")["used_memory"]) - before
            keys = [k for k in r.scan_iter(match="ss:*", count=1000)]
            usage = sum(int(r.memory_usage(k, samples=0) or 0) for k in keys)
        out[f"{label}_memory_usage"] = usage / count
        out[f"{label}_used_memory"] = grown / count
    with node.client() as r:
        r.config_set("hash-max-listpack-value", 64)
    return out


def redis_throughput(node: Any, cpus: set[int] | None, requests: int) -> dict[str, float]:
    """Requests/s one Redis node serves for a session load and a session write (redis-benchmark)."""
    from serversession.core.records import Commit
    from serversession.stores import _redis_scripts as scripts
    from serversession.stores.redis import RedisStore

    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    store = RedisStore(node.url)
    manager = SessionManager(store)
    new_session(manager, "user0")
    with node.client() as r:
        key = next(iter(r.scan_iter(match="ss:s:*"))).decode()
        sha = r.script_load(scripts.COMMIT)
    store.close()
    now = time.time()
    spec = scripts.pack(Commit(set_data={"n": "1"}, meta={"s": repr(now)}, expires_at=now + 1800), now, now + 1800)
    commands = {"load": ["HGETALL", key], "write": ["EVALSHA", sha, "1", key, *map(str, spec)]}
    rates = {}
    for name, command in commands.items():
        argv = [binary, "-h", "127.0.0.1", "-p", str(node.port), "-c", "32", "-n", str(requests), "--csv", *command]
        runs = []
        for _ in range(3):  # the median of three: a virtual machine's neighbours come and go
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                                  preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)  # fmt: skip
            lines = [x for x in done.stdout.splitlines() if x and not x.startswith('"test"')]
            if done.returncode == 0 and lines:
                runs.append(float(lines[-1].split(",")[1].strip('"')))
        if runs:
            rates[name] = statistics.median(runs)
    return rates


def growth(costs: dict[int, float]) -> float:
    """Purge time at the most live sessions over the time at the fewest."""
    stages = sorted(costs)
    return costs[stages[-1]] / costs[stages[0]]


def run(n: int, expiring: int, backends: Any, cpus: Any) -> dict[str, Any]:
    """Every scale measurement at ``n`` sessions; each result is a plain dict for the report."""
    out: dict[str, Any] = {"memory": _memory_subprocess(n, expiring, user=False)}
    out["memory_signed_in"] = _memory_subprocess(max(n // 10, 1000), expiring, user=True)
    out["expiry"] = {"memory": out["memory"]["purge_seconds"]}
    path = backends.dir / "scale.sqlite3"
    path.unlink(missing_ok=True)
    out["expiry"]["sqlite"] = sqlite_expiry(str(path), n, expiring)
    out["expiry"] = {store: {"expiring": expiring, "seconds": costs, "growth": growth(costs)}
                     for store, costs in out["expiry"].items()}  # fmt: skip
    from .targets import Target

    url = backends.url(Target("scale", "asgi", "ours", "redis"))
    node = backends.redis
    out["redis"] = redis_bytes(url, node, min(n // 10, 20_000))
    out["redis_rates"] = redis_throughput(node, cpus.server, 100_000 if n >= 100_000 else 10_000)
    with node.client() as r:
        r.flushall()
    return out


def table(scale: dict[str, Any]) -> str:
    mem, signed = scale["memory"], scale["memory_signed_in"]
    lines = [
        f"memory store, {mem['sessions']:,} anonymous sessions: {mem['bytes_per_session']:.0f} B/session "
        f"({mem['data_bytes']} B data + {mem['overhead_bytes']:.0f} B overhead)",
        f"memory store, {signed['sessions']:,} signed-in sessions: {signed['bytes_per_session']:.0f} B/session "
        f"({signed['overhead_bytes']:.0f} B overhead)",
    ]
    r = scale["redis"]
    for label in ("anonymous", "signed_in", "listpack256"):
        name = {"signed_in": "signed-in", "listpack256": "signed-in, hash-max-listpack-value 256"}.get(label, label)
        lines.append(f"redis, {name}: MEMORY USAGE {r[label + '_memory_usage']:.0f} B/session, "
                     f"used_memory {r[label + '_used_memory']:.0f} B/session")  # fmt: skip
    for store, exp in scale["expiry"].items():
        cells = ", ".join(f"{live:,} live: {sec * 1e6 / exp['expiring']:.2f} µs"
                          for live, sec in sorted(exp["seconds"].items()))  # fmt: skip
        lines.append(f"{store}: purge cost per expired session ({exp['expiring']:,} expiring) at {cells}; "
                     f"growth {exp['growth']:.2f}x")  # fmt: skip
    rates = scale.get("redis_rates") or {}
    if rates:
        lines.append("redis node (redis-benchmark, 32 clients): " +
                     ", ".join(f"{name} {rate:,.0f}/s" for name, rate in rates.items()))  # fmt: skip
    else:
        lines.append("redis node throughput: n/a (redis-benchmark not installed)")
    lines.append("redis expiry: native TTLs; nothing to purge")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["memory"]:
        print(json.dumps(memory_store(int(sys.argv[2]), int(sys.argv[3]), user="--user" in sys.argv)))
    else:
        raise SystemExit("usage: python -m benchmarks.scale memory N EXPIRING [--user]")
