"""``python -m benchmarks.run [--quick | --smoke] [--only NAME ...]``: the whole comparison.

One command, one process tree, one table of ratios measured in the same run:
every target of :mod:`.targets` under load (:mod:`.harness`, :mod:`.load`),
the store micro-benchmarks (:mod:`.stores`), the scale measurements
(:mod:`.scale`) and the capacity model (:mod:`.capacity`).

Modes: default 3 rounds of 10 s per endpoint with wrk (medians reported) and
1,000,000 sessions for scale; ``--quick`` one round of 3 s per endpoint and
100,000 sessions; ``--smoke`` (run at the end of ``./dev test``) 200 requests
per endpoint with the asyncio load generator and 10,000 sessions, well under a
minute. No mode asserts speed: a MISS is printed (a smoke run, too short to
judge, says so and prints no verdicts), and the exit status is non-zero only
when something is broken (a server that does not start, a session that does not
read back, lost updates in serversession's own rows, a store that fails, a crash).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import capacity, harness, load, report, scale, stores
from .targets import TARGETS, Target

MODES = {
    # mode: (rounds, seconds per endpoint and round, requests per endpoint for the asyncio fallback
    # or None, scale sessions)
    "full": (3, 10, None, 1_000_000),
    "quick": (1, 3, None, 100_000),
    "smoke": (1, 2, 200, 10_000),
}
PHASES = ("http", "stores", "scale")
STORES = ("memory", "sqlite", "redis", "cluster", "postgres")
# Modules a target needs, to print "n/a (module missing)" instead of failing when one is absent.
NEEDS = {"ours flask": "serversession.integrations.flask", "ours django": "serversession.integrations.django",
         "starsessions": "starsessions", "flask-session": "flask_session",
         "litestar": "litestar", "ours litestar": "serversession.integrations.litestar",
         "litestar server-side": "litestar.stores.redis", "quart": "quart",
         "ours quart": "serversession.integrations.quart", "aiohttp": "aiohttp",
         "ours aiohttp": "serversession.integrations.aiohttp", "aiohttp-session": "aiohttp_session"}  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description="The whole comparison, as ratios measured in one run."
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="3 s per endpoint, 100,000 sessions for scale")
    group.add_argument("--smoke", action="store_true", help="a short end-to-end check (used by ./dev test)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="phases (http, stores, scale) or parts of target names: --only redis scale")  # fmt: skip
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator (auto: wrk if installed; python in --smoke)")  # fmt: skip
    parser.add_argument("--rounds", type=int, help="rounds over all targets (default: 3, --quick and --smoke 1)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    return parser.parse_args(argv)


def selected(only: list[str] | None) -> tuple[list[Target], set[str]]:
    """The targets and phases ``--only`` asks for (everything without it)."""
    if not only:
        return TARGETS, set(PHASES)
    only = [word for item in only for word in item.split(",") if word]  # --only litestar,quart works too
    phases = {p for p in only if p in PHASES}
    words = [w for w in only if w not in PHASES]
    targets = TARGETS if "http" in phases else [t for t in TARGETS if any(w in t.name for w in words)]
    if targets:
        phases.add("http")
    return targets, phases


def missing_module(target: Target) -> str | None:
    for prefix, module in NEEDS.items():
        if target.name.startswith(prefix):
            try:
                importlib.import_module(module)
            except ImportError:
                return "module missing"
    return None


def machine(cpus: harness.Cpus, loader: str) -> list[str]:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
    model = next((x.split(":", 1)[1].strip() for x in lscpu if x.startswith("Model name")), platform.processor())
    return [
        f"machine: {os.cpu_count()} CPUs, {model}, {platform.system()} {platform.release()}",
        f"python {platform.python_version()}; {cpus.describe()}",
        f"load: {loader}, {load.CONNECTIONS} connections, one signed-in session; uvicorn --workers 1 "
        f"{' '.join(harness.UVICORN_FLAGS)}; gunicorn gthread --workers 1 --threads {harness.GUNICORN_THREADS}; "
        f"aiohttp web.run_app {harness.UVICORN_FLAGS[0]} {harness.UVICORN_FLAGS[1]}",
    ]


def run_target(target: Target, backends: harness.Backends, cpus: harness.Cpus, loader: Any, warm: int,
               broken: list[str]) -> list[harness.Row]:  # fmt: skip
    """One round of one target: a fresh server, a fresh session, every endpoint."""
    rows = []
    try:
        url = backends.url(target)
        with harness.serve(target, url, cpus, backends.dir) as base:
            session = harness.sign_in(base, target)
            nodes = backends.redis_nodes(target.store)
            harness.warm_up(base, target, session, warm)
            for endpoint in target.endpoints:
                row = harness.measure(base, target, endpoint, session, nodes, loader)
                rows.append(row)
                if target.ours and row.lost:  # failed requests are a MISS; a lost update is a bug
                    broken.append(f"{target.name} {endpoint}: {row.lost} lost updates")
    finally:
        backends.flush()
    return rows


def run_http(targets: list[Target], backends: harness.Backends, cpus: harness.Cpus, loader: Any, rounds: int,
             warm: int, broken: list[str]) -> tuple[list[harness.Row], dict[str, str]]:  # fmt: skip
    """Every target, ``rounds`` times over (see :func:`harness.combine`); one row per target x endpoint."""
    measured: dict[tuple[str, str], list[harness.Row]] = {}
    missing: dict[str, str] = {}
    for n in range(rounds):
        for target in targets:
            if target.name in missing:
                continue
            reason = missing_module(target)
            if reason:
                missing[target.name] = reason
                continue
            started = time.perf_counter()
            try:
                for row in run_target(target, backends, cpus, loader, warm, broken):
                    measured.setdefault((target.name, row.endpoint), []).append(row)
            except Exception as exc:  # one broken target must not hide the others' numbers
                broken.append(f"{target.name}: {type(exc).__name__}: {exc}")
                missing[target.name] = f"failed: {type(exc).__name__}"
                traceback.print_exc()
            print(f"  round {n + 1}/{rounds} {target.name}: {time.perf_counter() - started:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    rows = [harness.combine(rs) for (name, _), rs in measured.items() if name not in missing]
    return rows, missing


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    rounds, seconds, count, sessions = MODES[mode]
    rounds = args.rounds or rounds
    use_wrk = args.load == "wrk" or (args.load == "auto" and mode != "smoke" and load.wrk_path() is not None)
    if args.load == "wrk" and load.wrk_path() is None:
        print("error: --load wrk but wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    cpus = harness.Cpus.split()
    if cpus.rest:
        os.sched_setaffinity(0, cpus.rest)
    if use_wrk:
        loader_name = f"wrk -t{load.THREADS} -c{load.CONNECTIONS} -d{seconds}s"
        loader: Any = functools.partial(_wrk, seconds=seconds, cpus=cpus.rest)
    else:
        loader_name = f"asyncio fallback, {count} requests" if count else f"asyncio fallback, {seconds} s"
        loader = functools.partial(_python, seconds=seconds if count is None else 30, count=count)
    targets, phases = selected(args.only)
    if not phases:
        print(f"error: --only {' '.join(args.only)} matches no phase and no target", file=sys.stderr)
        return 2
    header = machine(cpus, f"{rounds} round(s) of {loader_name}, medians" if rounds > 1 else loader_name)
    if mode == "smoke":
        print(report.SMOKE_NOTE)
    print("\n".join(header), flush=True)
    broken: list[str] = []
    backends = harness.Backends(cpus)
    results: dict[str, Any] = {"mode": mode, "machine": header}
    rows: list[harness.Row] = []
    missing: dict[str, str] = {}
    store_results: list[stores.StoreResult] = []
    scale_results: dict[str, Any] = {}
    try:
        if "http" in phases:
            rows, missing = run_http(targets, backends, cpus, loader, rounds, 50 if mode == "smoke" else 200, broken)
        if "stores" in phases:
            names = tuple(s for s in STORES if not (mode == "smoke" and s == "postgres"))
            store_results = stores.run(backends, 0.1 if mode == "smoke" else 1.0, names)
            broken += [f"store {r.store}: {r.skipped}" for r in store_results if r.failed]
        if "scale" in phases:
            scale_results = scale.run(sessions, 100 if mode == "smoke" else 1000, backends, cpus)
    except Exception as exc:
        broken.append(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        backends.stop(keep_logs=bool(broken))
        if broken:
            print(f"server logs kept in {backends.dir}", file=sys.stderr)

    verdicts: list[report.Verdict] = []
    found = report.ratios(rows)
    if rows or missing:
        print("\n" + report.http_table(rows, missing))
        if found:
            print("\n" + report.ratio_table(found))
        verdicts += report.http_verdicts(rows)
    if store_results:
        print("\n" + stores.table(store_results))
        if mode == "smoke":
            print("(postgres skipped in --smoke: starting PostgreSQL alone takes seconds)")
    if scale_results:
        print("\n" + scale.table(scale_results))
        print("\n" + "\n".join(capacity.model(scale_results, rows)))
        verdicts += report.scale_verdicts(scale_results)
    closing = report.verdict_section(verdicts, mode)
    if closing:
        print("\n" + closing)
    if args.json:
        results.update(rows=[_row_dict(r) for r in rows], missing=missing, broken=broken, scale=scale_results,
                       ratios=[dataclasses.asdict(r) for r in found],
                       stores={r.store: {f"{f} {op}": v for (f, op), v in r.rates.items()} | {"skipped": r.skipped}
                               for r in store_results})  # fmt: skip
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if broken:
        print("\nBROKEN:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    return 0


def _wrk(url: str, method: str, headers: dict[str, str], *, seconds: int, cpus: set[int] | None) -> load.LoadResult:
    return load.run_wrk(url, method, headers, seconds, cpus)


def _python(url: str, method: str, headers: dict[str, str], *, seconds: float, count: int | None) -> load.LoadResult:
    return load.run_python(url, method, headers, seconds, count)


def _row_dict(row: harness.Row) -> dict[str, Any]:
    return {"target": row.target.name, "endpoint": row.endpoint, "rps": row.result.rps, "p50_ms": row.result.p50_ms,
            "p99_ms": row.result.p99_ms, "requests": row.result.requests, "failed": row.result.failed,
            "served": row.served, "store_per_req": row.store_per_req, "server_ops_per_req": row.server_ops_per_req,
            "lost": row.lost}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
