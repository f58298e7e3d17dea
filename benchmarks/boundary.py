"""What the request boundary costs on the read path: this tree against a baseline revision, same run.

``python -m benchmarks.boundary [--baseline REV] [--against REV] [--rounds 5] [--requests 20000]``
``python -m benchmarks.boundary --instructions [--baseline REV] [--against REV]`` (valgrind)
``python -m benchmarks.boundary --untouched [--rounds 5] [--requests 20000]``

Drives the ASGI and WSGI middleware in-process (no sockets, so the middleware
is most of what is measured) over the memory store: a GET carrying a valid
session cookie that reads one key, the request every page view of a signed-in
user makes. The baseline revision (default: the commit before the guard
landed) is exported with ``git archive`` and measured by the same script in its
own process, rounds interleaved, medians kept. It prints microseconds per
request and the ratio of this tree to the baseline; a ratio near 1.00 means
the guard's checks (throttle, observe, screen, the facts it reads) cost
nothing measurable. ``--instructions`` counts instructions per request with
callgrind instead of timing: repeatable to a fraction of a percent on a shared,
noisy machine.

``--untouched`` measures this tree alone against the framework floor: a GET
carrying a valid session cookie to a route that never touches its session (a
static file, a health check), served by a Starlette app and a Flask app, each
bare and with sessions (the ASGI middleware with ``lazy=True``, Flask's
``init_app``), rounds interleaved in one process. It prints microseconds per
request, the ratio to the bare app (goal: at most 1.10) and the store reads the
sessions made (goal: 0, counted by the store).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The last commit before the request guard (core/guard.py) landed.
DEFAULT_BASELINE = "50d074c"

_MEASURE = r'''
import asyncio, json, sys, time
from serversession import MemoryStore, SessionConfig
from serversession.integrations.asgi import SessionMiddleware as AsgiMiddleware
from serversession.integrations.wsgi import SessionMiddleware as WsgiMiddleware, get_session

N = int(sys.argv[1])
config = SessionConfig(cookie_secure=False, csrf=False)  # the one write below needs no token

async def asgi_app(scope, receive, send):
    scope["session"].get("cart")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})

def wsgi_app(environ, start_response):
    get_session(environ).get("cart")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

store = MemoryStore()
asgi = AsgiMiddleware(asgi_app, store=store, config=config)
wsgi = WsgiMiddleware(wsgi_app, store=store, config=config)

def cookie_from(headers):
    for name, value in headers:
        if name.lower() == "set-cookie" and value.startswith("session="):
            return value.split(";")[0]
    raise SystemExit("no session cookie")

# One stored session, made through the WSGI face (same store, same config).
def create(environ, start_response):
    get_session(environ)["cart"] = {"sku": 1}
    start_response("200 OK", [])
    return [b""]
seen: list = []
WsgiMiddleware(create, store=store, config=config)(
    {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1"},
    lambda status, headers, exc=None: seen.extend(headers))
cookie = cookie_from(seen)
'''

_MEASURE_TAIL = r'''
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_COOKIE": cookie, "REMOTE_ADDR": "127.0.0.1",
           "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "bench"}
def start(status, headers, exc=None):
    return None

def wsgi_round():
    t = time.process_time()
    for _ in range(N):
        wsgi(dict(environ), start)
    return (time.process_time() - t) / N * 1e6

scope = {"type": "http", "method": "GET", "path": "/", "scheme": "http", "client": ("127.0.0.1", 5000),
         "headers": [(b"host", b"127.0.0.1:8000"), (b"cookie", cookie.encode()), (b"user-agent", b"bench")]}
async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}
async def send(message):
    return None

async def asgi_round():
    t = time.process_time()
    for _ in range(N):
        await asgi(dict(scope), receive, send)
    return (time.process_time() - t) / N * 1e6

wsgi_round(); asyncio.run(asgi_round())  # warm up
print(json.dumps({"wsgi": wsgi_round(), "asgi": asyncio.run(asgi_round())}))
'''


_UNTOUCHED = r'''
import asyncio, json, statistics, sys, time
import flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from serversession import MemoryStore, SessionConfig
from serversession.integrations import flask as ss_flask
from serversession.integrations.asgi import SessionMiddleware

N, ROUNDS = int(sys.argv[1]), int(sys.argv[2])
config = SessionConfig(cookie_secure=False, csrf=False)

class Counting(MemoryStore):
    reads = 0
    def load(self, key):
        Counting.reads += 1
        return super().load(key)
    async def aload(self, key):
        Counting.reads += 1
        return await super().aload(key)

store = Counting()
async def health(request):
    return PlainTextResponse("ok")
async def sign_in(request):
    request.scope["session"]["cart"] = {"sku": 1}
    return PlainTextResponse("in")
bare_asgi = Starlette(routes=[Route("/health", health), Route("/in", sign_in)])
ours_asgi = SessionMiddleware(Starlette(routes=[Route("/health", health), Route("/in", sign_in)]), store=store,
                              config=config, lazy=True)
eager_asgi = SessionMiddleware(Starlette(routes=[Route("/health", health)]), store=store, config=config)

def flask_app(sessions):
    app = flask.Flask("bench")
    if sessions:
        ss_flask.init_app(app, store=store, config=config)
    app.add_url_rule("/health", "health", lambda: "ok")
    return app
bare_wsgi, ours_wsgi = flask_app(False), flask_app(True)

# One stored session; its cookie goes with every measured request.
sent = []
async def grab(message):
    sent.append(message)
async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}
base = {"type": "http", "method": "GET", "scheme": "http", "client": ("127.0.0.1", 5000), "root_path": "",
        "query_string": b"", "http_version": "1.1", "server": ("127.0.0.1", 8000)}
asyncio.run(ours_asgi({**base, "path": "/in", "raw_path": b"/in", "headers": [(b"host", b"127.0.0.1:8000")]},
                      receive, grab))
cookie = next(v for n, v in sent[0]["headers"] if n == b"set-cookie").split(b";")[0]
scope = {**base, "path": "/health", "raw_path": b"/health",
         "headers": [(b"host", b"127.0.0.1:8000"), (b"cookie", cookie), (b"user-agent", b"bench")]}
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/health", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
           "wsgi.url_scheme": "http", "HTTP_HOST": "127.0.0.1:8000", "HTTP_COOKIE": cookie.decode(),
           "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "bench", "SERVER_PROTOCOL": "HTTP/1.1"}
async def drop(message):
    return None
def start(status, headers, exc=None):
    return None

def asgi_round(app):
    async def run():
        t = time.process_time()
        for _ in range(N):
            await app(dict(scope), receive, drop)
        return (time.process_time() - t) / N * 1e6
    return asyncio.run(run())

def wsgi_round(app):
    t = time.process_time()
    for _ in range(N):
        b"".join(app(dict(environ), start))
    return (time.process_time() - t) / N * 1e6

faces = {"starlette": (asgi_round, bare_asgi, ours_asgi), "flask": (wsgi_round, bare_wsgi, ours_wsgi)}
for run, bare, ours in faces.values():
    run(bare), run(ours)  # warm up
Counting.reads = 0
times = {face: {"floor": [], "ours": []} for face in faces}
for _ in range(ROUNDS):
    for face, (run, bare, ours) in faces.items():
        times[face]["floor"].append(run(bare))
        times[face]["ours"].append(run(ours))
reads = Counting.reads
eager = statistics.median(asgi_round(eager_asgi) for _ in range(ROUNDS))  # the read before the app, for scale
print(json.dumps({face: {k: statistics.median(v) for k, v in t.items()} for face, t in times.items()}
                 | {"reads": reads, "requests": 2 * N * ROUNDS, "eager": eager}))
'''


def untouched(args: argparse.Namespace) -> int:
    """``--untouched``: a request that ignores its session, against the bare framework (this tree only)."""
    argv = [sys.executable, "-c", _UNTOUCHED, str(args.requests), str(args.rounds)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"a cookie-bearing GET to a route that ignores its session, in-process, memory store, "
          f"{args.requests} requests x {args.rounds} rounds (median)")
    print(f"{'framework':10} {'bare':>10} {'sessions':>11} {'ratio':>7}")
    for face in ("starlette", "flask"):
        floor, ours = result[face]["floor"], result[face]["ours"]
        print(f"{face:10} {floor:7.1f} us {ours:8.1f} us {ours / floor:7.2f}")
    print(f"store reads: {result['reads']} in {result['requests']} requests with sessions")
    print(f"for scale: the same Starlette request read eagerly (lazy=False): {result['eager']:.1f} us")
    return 0


def export(revision: str, into: Path) -> Path:
    """Export ``revision``'s ``src/`` into ``into`` and return the folder to put on ``PYTHONPATH``."""
    archive = into / "tree.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def measure(src: Path, requests: int) -> dict[str, float]:
    """One round in a fresh process importing serversession from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    argv = [sys.executable, "-c", _MEASURE + _MEASURE_TAIL, str(requests)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, cwd=tempfile.gettempdir())
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def instructions(src: Path, face: str, tmp: Path) -> float:
    """Instructions per request on ``face``, counted by callgrind (repeatable on a busy machine):
    the difference between a run of 1,500 requests and one of 500, over 1,000."""
    script = tmp / "count.py"
    tail = _MEASURE_TAIL.split("wsgi_round(); asyncio.run(asgi_round())")[0]
    script.write_text(_MEASURE + tail + "wsgi_round() if sys.argv[2] == 'wsgi' else asyncio.run(asgi_round())\n")
    counts = []
    for n in (500, 1500):
        out = tmp / f"cg.{face}.{n}"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(script), str(n), face],
            env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True, check=True,
        )  # fmt: skip
        line = next(x for x in done.stderr.splitlines() if "Collected" in x)
        counts.append(int(line.rsplit(":", 1)[1]))
    return (counts[1] - counts[0]) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare with")
    parser.add_argument("--against", default=None, help="a git revision to measure instead of the working tree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--instructions", action="store_true", help="count instructions with valgrind instead")
    parser.add_argument("--untouched", action="store_true",
                        help="a request that ignores its session against the bare framework (this tree)")
    args = parser.parse_args(argv)
    if args.instructions:
        return count_instructions(args)
    if args.untouched:
        return untouched(args)
    with tempfile.TemporaryDirectory(prefix="ss-bench-") as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        ours = export(args.against, Path(tmp) / "b") if args.against else ROOT / "src"
        trees = {"baseline": export(args.baseline, Path(tmp) / "a"), "this tree": ours}
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():  # interleaved: both see the same machine
                rounds[name].append(measure(src, args.requests))
    print(f"read path, in-process, memory store, {args.requests} requests x {args.rounds} rounds (median)")
    print(f"{'face':6} {'baseline ' + args.baseline:>20} {'this tree':>12} {'ratio':>7}")
    for face in ("asgi", "wsgi"):
        base = statistics.median(r[face] for r in rounds["baseline"])
        ours = statistics.median(r[face] for r in rounds["this tree"])
        print(f"{face:6} {base:17.1f} us {ours:9.1f} us {ours / base:7.2f}")
    return 0


def count_instructions(args: argparse.Namespace) -> int:
    """``--instructions``: the same comparison in instructions per request (callgrind)."""
    with tempfile.TemporaryDirectory(prefix="ss-bench-") as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        ours = export(args.against, Path(tmp) / "b") if args.against else ROOT / "src"
        base = export(args.baseline, Path(tmp) / "a")
        print("read path, in-process, memory store: instructions per request (callgrind)")
        print(f"{'face':6} {'baseline ' + args.baseline:>20} {'this tree':>12} {'ratio':>7}")
        for face in ("asgi", "wsgi"):
            a, b = instructions(base, face, Path(tmp)), instructions(ours, face, Path(tmp))
            print(f"{face:6} {a:20,.0f} {b:12,.0f} {b / a:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
