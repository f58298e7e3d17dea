"""A capacity model for Redis/Valkey from this run's numbers, not from folklore.

Memory: sessions x measured bytes per signed-in session (``used_memory`` grown,
so Redis's own dictionaries are included) x headroom. CPU: each request type's
commands divided by the rate one node serves exactly those commands
(redis-benchmark on this machine), kept at half utilisation so a node can take
a failed peer's spike. The larger of the two sets the number of masters; one
replica each doubles it. The assumptions are the constants below, stated once.
"""

from __future__ import annotations

import math
from typing import Any

from .harness import Row

SESSIONS = 10_000_000
WRITE_SHARE = 0.1  # one request in ten changes the session
RATES = (10_000, 100_000, 1_000_000)  # requests/s that carry a session
HEADROOM = 1.5  # allocator fragmentation, replication and client buffers, a margin below maxmemory
NODE_MEMORY = 16 * 2**30  # maxmemory per node, bytes
UTILISATION = 0.5
REPLICAS = 1


def _commands(rows: list[Row]) -> tuple[float, float]:
    """Commands per read request (measured on ours asgi redis) and per write request.

    A write is its load plus one commit script. The table's write rows measure
    the worst case instead (32 concurrent increments of one key of one session,
    retried on conflict), which 10 million sessions do not produce.
    """
    per = {r.endpoint: r.store_per_req for r in rows if r.target.name == "ours asgi redis"}
    return per.get("read") or 1.0, 2.0


def model(scale: dict[str, Any], rows: list[Row]) -> list[str]:
    """The model's lines for the report (empty when the Redis numbers are missing)."""
    redis, rates = scale.get("redis") or {}, scale.get("redis_rates") or {}
    if not redis or "load" not in rates or "write" not in rates:
        return ["capacity model: n/a (needs the Redis scale numbers and redis-benchmark)"]
    per_session = max(redis["signed_in_used_memory"], redis["anonymous_used_memory"])
    memory = SESSIONS * per_session * HEADROOM
    by_memory = math.ceil(memory / NODE_MEMORY)
    read_cmds, write_cmds = _commands(rows)
    # A request's first command is the load (HGETALL); the rest are script calls (EVALSHA).
    read_cost = 1 / rates["load"] + (read_cmds - 1) / rates["write"]
    write_cost = 1 / rates["load"] + (write_cmds - 1) / rates["write"]
    lines = [
        f"{SESSIONS:,} sessions x {per_session:.0f} B x {HEADROOM} headroom = {memory / 2**30:.1f} GiB"
        f" -> {by_memory} master(s) of {NODE_MEMORY // 2**30} GiB by memory",
        f"one node serves {rates['load']:,.0f} loads/s and {rates['write']:,.0f} commit scripts/s;"
        f" a read costs {read_cmds:.2f} commands, a write {write_cmds:.2f} ({WRITE_SHARE:.0%} writes)",
    ]
    for rate in RATES:
        busy = rate * ((1 - WRITE_SHARE) * read_cost + WRITE_SHARE * write_cost)
        masters = max(by_memory, math.ceil(busy / UTILISATION), 1)
        lines.append(f"  {rate:>9,} req/s: {busy:5.2f} node-cores busy -> {masters} master(s),"
                     f" {masters * (1 + REPLICAS)} nodes with {REPLICAS} replica each")  # fmt: skip
    return lines
