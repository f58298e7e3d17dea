"""The write tail: cart adds spread over many sessions, SQLite against Redis, measured from outside.

Why: a write that waits in SQLite's busy handler sleeps (1, 2, 5 ... 100 ms
steps) instead of queueing, and that shows only when many sessions are written
at once, which a micro-benchmark on one key cannot see. This drives the real
demo (``serversession demo``) with ``wrk -t2 -c32`` posting cart adds spread at
random over 64 signed-in sessions and 8 products, on ``sqlite://`` and on
``redis://``, with one demo process and with two processes on one store.

Two processes listen on two ports; one wrk process sends its first thread's 16
connections to one and its second thread's to the other, so one latency
histogram covers both (no merging of percentiles). Each configuration runs
``--rounds`` times, configurations interleaved so that a noisy minute on the
shared machine does not land on one of them; the table gives the median of the
rounds and the spread of p99 (min-max). The verdict compares SQLite's median
p99 with Redis's at the same process count: PASS at 3x or less.

After each run the carts are read back: ``lost`` is successful adds that no
cart shows (must be 0; adds still in flight when wrk stops may show as extra).

    python -m benchmarks.write_tail            # 3 rounds of 15 s per configuration
    python -m benchmarks.write_tail --quick    # 1 round of 3 s (a smoke run)
"""

from __future__ import annotations

import argparse
import contextlib
import json
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

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the real-server helpers shared with the test suite

from servers import HOST, RedisServer, free_port  # noqa: E402

LUA = Path(__file__).with_name("write_tail.lua")
SESSIONS = 64
PRODUCTS = 8
THREADS = 2
CONNECTIONS = 32
LIMIT = 3.0  # SQLite p99 / Redis p99 at most this
START_TIMEOUT = 30.0
ACCOUNTS = (("alice", "wonderland"), ("bob", "builder"))


@dataclass(frozen=True)
class Run:
    """One wrk run against one configuration (latencies in milliseconds)."""

    adds: float  # successful adds per second
    p50: float
    p99: float
    max: float
    failed: int  # non-200 answers and socket errors
    lost: int  # successful adds missing from the carts afterwards


@contextlib.contextmanager
def demo(store_url: str, workdir: Path, name: str) -> Iterator[str]:
    """One ``serversession demo`` process on a free port; yields its base URL."""
    port = free_port()
    log_path = workdir / f"{name}.log"
    argv = [sys.executable, "-m", "serversession", "demo", "--host", HOST, "--port", str(port), "--store", store_url]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"demo did not start (exit {proc.poll()}):\n{log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cookie(response: httpx.Response, current: str) -> str:
    """The session cookie a response set (the demo's is ``Secure``, which httpx's jar
    would not send back over http://127.0.0.1), else the one already held."""
    for header in response.headers.get_list("set-cookie"):
        pair = header.split(";", 1)[0]
        if pair.startswith("__Host-session="):
            return pair
    return current


def sign_in(client: httpx.Client, n: int) -> tuple[str, str]:
    """A new session signed in as one of the demo accounts: (Cookie header, CSRF token)."""
    started = client.get("/api/session")
    started.raise_for_status()
    cookie = _cookie(started, "")
    username, password = ACCOUNTS[n % len(ACCOUNTS)]
    login = client.post("/api/login", json={"username": username, "password": password},
                        headers={"Cookie": cookie, "X-CSRF-Token": started.json()["csrf_token"]})  # fmt: skip
    login.raise_for_status()
    return _cookie(login, cookie), str(login.json()["csrf_token"])


def cart_total(client: httpx.Client, sessions: list[tuple[str, str]]) -> int:
    total = 0
    for cookie, _ in sessions:
        answer = client.get("/api/cart", headers={"Cookie": cookie})
        answer.raise_for_status()
        total += int(answer.json()["count"])
    return total


def wrk(urls: list[str], sessions_file: Path, seconds: float) -> dict[str, int]:
    """``wrk -t2 -c32`` with write_tail.lua; thread n loads ``urls[n % len(urls)]``."""
    ports = ",".join(url.rsplit(":", 1)[1] for url in urls)
    argv = [shutil.which("wrk") or "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s",
            "--timeout", "10s", "-s", str(LUA), urls[0], "--", str(sessions_file)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False,
                          env={**os.environ, "WRITE_TAIL_PORTS": ports})  # fmt: skip
    line = next((x for x in done.stdout.splitlines() if x.startswith("TAIL ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]}{done.stderr[-500:]}")
    result: dict[str, int] = json.loads(line[5:])
    return result


def run_once(store_url: str, processes: int, seconds: float, workdir: Path, name: str) -> Run:
    """Start ``processes`` demos on ``store_url``, make the sessions, load them, check the carts."""
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(demo(store_url, workdir, f"{name}-{n}")) for n in range(processes)]
        with httpx.Client(base_url=urls[0], timeout=10) as client:
            skus = [p["sku"] for p in client.get("/api/products").json()["products"]][:PRODUCTS]
            sessions = [sign_in(client, n) for n in range(SESSIONS)]
            before = cart_total(client, sessions)
            sessions_file = workdir / f"{name}.sessions"
            lines = [f"{cookie}\t{csrf}" for cookie, csrf in sessions] + ["skus\t" + ",".join(skus)]
            sessions_file.write_text("\n".join(lines) + "\n")
            r = wrk(urls, sessions_file, seconds)
            grown = cart_total(client, sessions) - before
    return Run(adds=r["ok"] / (r["us"] / 1e6), p50=r["p50"] / 1000, p99=r["p99"] / 1000, max=r["max"] / 1000,
               failed=r["other"] + r["sock"], lost=max(0, r["ok"] - grown))  # fmt: skip


CONFIGS = (("sqlite", 1), ("sqlite", 2), ("redis", 1), ("redis", 2))


def measure(rounds: int, seconds: float, workdir: Path) -> dict[tuple[str, int], list[Run]]:
    """Every configuration ``rounds`` times, interleaved; a fresh store for each run."""
    runs: dict[tuple[str, int], list[Run]] = {config: [] for config in CONFIGS}
    with RedisServer() as redis_server:
        for round_no in range(rounds):
            for store, processes in CONFIGS:
                name = f"{store}{processes}-r{round_no}"
                if store == "sqlite":
                    url = f"sqlite:///{workdir / (name + '.sqlite3')}"
                else:
                    with redis_server.client() as r:
                        r.flushall()
                    url = redis_server.url
                run = run_once(url, processes, seconds, workdir, name)
                runs[(store, processes)].append(run)
                print(f"  round {round_no + 1} {store:<6} x{processes}: {run.adds:7.0f} adds/s  "
                      f"p50 {run.p50:6.1f} ms  p99 {run.p99:6.1f} ms  max {run.max:7.1f} ms", flush=True)  # fmt: skip
    return runs


def report(runs: dict[tuple[str, int], list[Run]]) -> tuple[str, bool]:
    """The table and the verdicts; True when every verdict passes and nothing failed or was lost."""
    head = f"{'store':<8}{'procs':>5}{'adds/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99 spread':>16}{'max ms':>9}"
    lines = [head + f"{'failed':>8}{'lost':>6}", "-" * (len(head) + 14)]
    ok = True
    for (store, processes), rs in runs.items():
        p99s = [r.p99 for r in rs]
        failed, lost = sum(r.failed for r in rs), sum(r.lost for r in rs)
        ok = ok and failed == 0 and lost == 0
        lines.append(
            f"{store:<8}{processes:>5}{statistics.median(r.adds for r in rs):>9.0f}"
            f"{statistics.median(r.p50 for r in rs):>9.1f}{statistics.median(p99s):>9.1f}"
            f"{f'{min(p99s):.0f}-{max(p99s):.0f}':>16}{max(r.max for r in rs):>9.0f}{failed:>8}{lost:>6}"
        )
    lines.append("")
    for processes in (1, 2):
        sqlite_p99 = statistics.median(r.p99 for r in runs[("sqlite", processes)])
        redis_p99 = statistics.median(r.p99 for r in runs[("redis", processes)])
        ratio = sqlite_p99 / redis_p99 if redis_p99 else float("inf")
        verdict = "PASS" if ratio <= LIMIT else "MISS"
        ok = ok and verdict == "PASS"
        lines.append(f"{processes} process{'es' if processes > 1 else ''}: SQLite p99 / Redis p99 = "
                     f"{sqlite_p99:.1f} / {redis_p99:.1f} ms = {ratio:.2f}x  {verdict} (<= {LIMIT:.0f}x)")  # fmt: skip
    return "\n".join(lines), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.write_tail", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 3 s per configuration (a smoke run)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per configuration (default 3)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each wrk run (default 15)")
    args = parser.parse_args(argv)
    rounds, seconds = (1, 3.0) if args.quick else (max(1, args.rounds), args.seconds)
    if shutil.which("wrk") is None:
        print("wrk is not installed", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ss-write-tail-"))
    print(f"cart adds over {SESSIONS} sessions and {PRODUCTS} products, wrk -t{THREADS} -c{CONNECTIONS} "
          f"-d{seconds:.0f}s, {rounds} round(s); {os.cpu_count()} CPUs, not pinned (shared machine)",
          flush=True)  # fmt: skip
    try:
        runs = measure(rounds, seconds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text, ok = report(runs)
    print()
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
