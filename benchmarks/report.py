"""Turn one run's measurements into the printed tables and the PASS/MISS verdicts.

Everything here is a ratio or a count from the same run; absolute req/s are
printed for context only, since they depend on the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .harness import Row
from .targets import (
    COMMAND_GOALS,
    ENDPOINTS,
    EXPIRY_GROWTH_GOAL,
    INCUMBENTS,
    MEMORY_OVERHEAD_GOAL,
    RATIO_GOALS,
    TARGETS,
)


@dataclass(frozen=True)
class Verdict:
    """One goal of the issue: what was measured, the goal, and PASS / MISS / n/a."""

    label: str
    measured: str
    goal: str
    ok: bool | None  # None: not measured in this run


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def http_table(rows: list[Row], missing: dict[str, str]) -> str:
    """Rows = target x endpoint; ``missing`` maps skipped targets to the reason."""
    bare = {r.target.name: r.result.rps for r in rows if r.endpoint == "bare"}
    w = max([22, *(len(r.target.name) for r in rows)])
    head = (f"{'target':<{w}} {'endpoint':<8} {'req/s':>8} {'spread':>6} {'p50 ms':>7} {'p99 ms':>7} {'÷bare':>6} "
            f"{'cmds/req':>8} {'srv ops':>7} {'failed':>6} {'lost':>6}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = bare.get(r.target.name, 0) / r.result.rps if r.result.rps else None
        lost = "-" if r.endpoint != "write" else ("n/a" if r.lost is None else str(r.lost))
        lines.append(
            f"{r.target.name:<{w}} {r.endpoint:<8} {r.result.rps:>8.0f} "
            f"{'-' if r.spread is None else format(r.spread, '.0%'):>6} {r.result.p50_ms:>7.2f} "
            f"{r.result.p99_ms:>7.2f} {_num(ratio, '.2f'):>6} {_num(r.store_per_req, '.2f'):>8} "
            f"{_num(r.server_ops_per_req, '.2f'):>7} {r.result.failed:>6} {lost:>6}"
        )
    lines += [f"{name:<{w}} n/a ({reason})" for name, reason in missing.items()]
    return "\n".join(lines)


@dataclass(frozen=True)
class Ratio:
    """serversession's req/s on one endpoint of a family, over its floor's and over its incumbent's."""

    family: str
    endpoint: str
    ours: str
    incumbent: str
    to_floor: float | None  # ours / the floor's bare endpoint
    to_incumbent: float | None  # ours / the incumbent's same endpoint


def ratios(rows: list[Row]) -> list[Ratio]:
    """One :class:`Ratio` per family and endpoint that has serversession's row (see ``INCUMBENTS``)."""
    rps = {(r.target.name, r.endpoint): r.result.rps for r in rows}
    floors = {t.family: rps.get((t.name, "bare")) for t in TARGETS if t.floor}
    out = []
    for family, (ours, incumbent) in INCUMBENTS.items():
        for endpoint in ENDPOINTS:
            mine = rps.get((ours, endpoint))
            if not mine:
                continue
            floor, theirs = floors.get(family), rps.get((incumbent, endpoint))
            out.append(Ratio(family, endpoint, ours, incumbent, mine / floor if floor else None,
                             mine / theirs if theirs else None))  # fmt: skip
    return out


def ratio_table(found: list[Ratio]) -> str:
    """The ratios as printed: more than 1 is faster than the floor / the incumbent (no goal, no verdict)."""
    head = f"{'framework':<9} {'endpoint':<8} {'ours÷floor':>10} {'ours÷incumbent':>14}  incumbent"
    lines = [head, "-" * (len(head) + 20)]
    for r in found:
        lines.append(f"{r.family:<9} {r.endpoint:<8} {_num(r.to_floor, '.2f'):>10} "
                     f"{_num(r.to_incumbent, '.2f'):>14}  {r.incumbent}")  # fmt: skip
    return "\n".join(lines)


def http_verdicts(rows: list[Row]) -> list[Verdict]:
    """The issue's throughput, command-count and lost-update goals."""
    rps = {(r.target.name, r.endpoint): r.result.rps for r in rows}
    out = []
    for g in RATIO_GOALS:
        num, den = rps.get(g.num), rps.get(g.den)
        goal = f"{'≥' if g.at_least else '≤'} {g.limit:g}"
        if not num or not den:
            out.append(Verdict(g.label, "n/a", goal, None))
            continue
        ratio = num / den
        out.append(Verdict(g.label, f"{ratio:.2f}", goal, ratio >= g.limit if g.at_least else ratio <= g.limit))
    for r in rows:
        if r.target.ours and r.target.store in ("redis", "cluster") and r.endpoint in COMMAND_GOALS:
            limit, value = COMMAND_GOALS[r.endpoint], r.store_per_req
            ok = None if value is None else value <= limit + 1e-9
            out.append(Verdict(f"{r.target.name} {r.endpoint}: Redis commands/request", _num(value, ".2f"),
                               f"≤ {limit:g}", ok))  # fmt: skip
    for r in rows:
        if r.target.ours and r.endpoint == "write":
            out.append(Verdict(f"{r.target.name}: lost updates", _num(r.lost, "d"), "0",
                               None if r.lost is None else r.lost == 0))  # fmt: skip
    for r in rows:
        if r.target.ours and r.result.failed:
            out.append(Verdict(f"{r.target.name} {r.endpoint}: failed requests", str(r.result.failed), "0", False))
    return out


def scale_verdicts(scale: dict[str, Any]) -> list[Verdict]:
    """The memory-store overhead goal (only judged at 1,000,000 sessions) and the expiry growth goal."""
    out = []
    mem = scale.get("memory")
    if mem:
        judged = mem["sessions"] >= 1_000_000
        out.append(Verdict(f"memory store overhead/session at {mem['sessions']:,}",
                           f"{mem['overhead_bytes']:.0f} B", f"≤ {MEMORY_OVERHEAD_GOAL} B",
                           mem["overhead_bytes"] <= MEMORY_OVERHEAD_GOAL if judged else None))  # fmt: skip
    for store, exp in scale.get("expiry", {}).items():
        growth = exp["growth"]
        out.append(Verdict(f"{store}: cost to expire {exp['expiring']:,} at 100x live", f"{growth:.2f}x",
                           f"≤ {EXPIRY_GROWTH_GOAL:g}x", growth <= EXPIRY_GROWTH_GOAL))  # fmt: skip
    return out


#: What a smoke run prints where the verdicts would be: its rounds are far too short
#: (200 requests, 10,000 sessions) for a ratio to mean anything, so a MISS there would
#: only teach readers to ignore the table.
SMOKE_NOTE = (
    "smoke run: an end-to-end check, too short to judge the goals, so no verdicts "
    "(./dev bench --quick or ./dev bench judge them)"
)


def verdict_section(verdicts: list[Verdict], mode: str) -> str | None:
    """What a run prints after its tables: the verdict table, :data:`SMOKE_NOTE` for a
    smoke run (whatever was measured), or None when nothing was judged."""
    if mode == "smoke":
        return SMOKE_NOTE
    return verdict_table(verdicts) if verdicts else None


def verdict_table(verdicts: list[Verdict]) -> str:
    width = max((len(v.label) for v in verdicts), default=10)
    lines = [f"{'goal':<{width}} {'measured':>10} {'goal':>8}  verdict", "-" * (width + 30)]
    for v in verdicts:
        verdict = "n/a" if v.ok is None else ("PASS" if v.ok else "MISS")
        lines.append(f"{v.label:<{width}} {v.measured:>10} {v.goal:>8}  {verdict}")
    return "\n".join(lines)
