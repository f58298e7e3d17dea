"""Load generators: wrk when installed, else a small asyncio HTTP/1.1 client.

wrk (Debian's ``wrk``) is written in C and is never the bottleneck against a
single Python worker; a Lua script counts 2xx and other statuses and prints
one JSON line with the latency percentiles. The fallback keeps 32 keep-alive
connections busy from one asyncio loop over raw sockets (httpx would cost
more CPU than the servers it measures); it is also what ``--smoke`` uses, with
a fixed request count, so that the smoke run stays short and exercises it.
Both only ever talk to 127.0.0.1, and both are bounded in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CONNECTIONS = 32
THREADS = 2

_LUA = r"""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  ok, other = 0, 0
  if args[1] == "POST" then
    wrk.method = "POST"
    wrk.body = "{}"
    wrk.headers["Content-Type"] = "application/json"
  end
end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local n_ok, n_other = 0, 0
  for _, t in ipairs(threads) do n_ok = n_ok + t:get("ok"); n_other = n_other + t:get("other") end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"us":%d,"ok":%d,"other":%d,"sock":%d,"p50":%d,"p99":%d}\n',
    summary.requests, summary.duration, n_ok, n_other,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class LoadResult:
    """What one load run saw: counts, throughput and latency (milliseconds)."""

    requests: int
    ok: int
    failed: int  # non-2xx responses plus socket errors
    rps: float
    p50_ms: float
    p99_ms: float


def wrk_path() -> str | None:
    """The wrk binary, or None (then the asyncio fallback runs)."""
    return shutil.which("wrk")


def run_wrk(url: str, method: str, headers: dict[str, str], seconds: int, cpus: set[int] | None) -> LoadResult:
    """``wrk -t2 -c32 -d{seconds}s`` against ``url``, pinned to ``cpus``."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA)
    argv = [wrk_path() or "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s",
            "-s", script.name]  # fmt: skip
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv += [url, "--", method]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)  # fmt: skip
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]}{done.stderr[-500:]}")
    r = json.loads(line[6:])
    return LoadResult(r["requests"], r["ok"], r["other"] + r["sock"], r["requests"] / (r["us"] / 1e6),
                      r["p50"] / 1000, r["p99"] / 1000)  # fmt: skip


def run_python(url: str, method: str, headers: dict[str, str], seconds: float, count: int | None) -> LoadResult:
    """The fallback: 32 asyncio connections for ``seconds`` or until ``count`` requests."""
    return asyncio.run(_python_load(url, method, headers, seconds, count))


async def _python_load(url: str, method: str, headers: dict[str, str], seconds: float,
                       count: int | None) -> LoadResult:  # fmt: skip
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, _, port = hostport.partition(":")
    body = b"{}" if method == "POST" else b""
    lines = [f"{method} /{path} HTTP/1.1", f"Host: {hostport}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body:
        lines.append("Content-Type: application/json")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    latencies: list[float] = []
    statuses = {"ok": 0, "failed": 0}
    budget = [count if count is not None else 1 << 62]
    start = time.perf_counter()
    deadline = start + seconds

    async def connection() -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            try:
                if reader is None or writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port))
                t0 = time.perf_counter()
                writer.write(request)
                status, close = await asyncio.wait_for(_read_response(reader), 5)
                latencies.append(time.perf_counter() - t0)
                statuses["ok" if 200 <= status < 300 else "failed"] += 1
            except (OSError, asyncio.TimeoutError, ValueError):
                statuses["failed"] += 1
                close = True
            if close and writer is not None:
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - start
    done = statuses["ok"] + statuses["failed"]
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return LoadResult(done, statuses["ok"], statuses["failed"], done / elapsed, cuts[49] * 1000, cuts[98] * 1000)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return (status, whether the server closes the connection)."""
    status_line = await reader.readline()
    if not status_line:
        raise ValueError("connection closed")
    status = int(status_line.split()[1])
    length, chunked, close = 0, False, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            close = value == "close"
    if not chunked:
        await reader.readexactly(length)
        return status, close
    while (size := int((await reader.readline()).split(b";")[0], 16)) > 0:
        await reader.readexactly(size + 2)
    await reader.readline()
    return status, close
