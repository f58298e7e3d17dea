"""``python -m benchmarks.charts RESULTS.json OUTDIR``: the comparison as SVG charts.

Reads the JSON that ``python -m benchmarks.run --json RESULTS.json`` writes and
draws, from that one run:

* ``rps-<family>.svg`` (``asgi``, ``flask``, ``django``, ``litestar``, ``quart``,
  ``aiohttp``): requests per second of every target of a framework family,
  endpoint by endpoint, with the family's floor (the framework with no session
  layer) as a dashed line;
* ``store-commands.svg``: store commands per request (fewer is better);
* ``lost-updates.svg``: the share of acknowledged writes lost under the
  concurrent write load (0 is correct).

The SVG is written by hand (no plotting library, so no new dependency), with
fixed sizes and fonts, so the same JSON always gives the same bytes and a
chart diff in review shows a change in the numbers only. A target or family
missing from the run is left out, never drawn as zero.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from .targets import ENDPOINTS, TARGETS

FAMILIES = {"asgi": "ASGI (Starlette, FastAPI)", "flask": "Flask", "django": "Django", "litestar": "Litestar",
            "quart": "Quart", "aiohttp": "aiohttp"}  # fmt: skip
COLORS = {"bare": "#9aa5b1", "read": "#2f7ebc", "write": "#e08a2c"}
WIDTH = 780
LABEL_W = 190  # the target names, left of the bars
VALUE_W = 170  # room right of the longest bar for its label
BAR_H = 13
GROUP_GAP = 10
TOP = 64
FONT = "font-family='system-ui, -apple-system, Segoe UI, sans-serif'"


@dataclass(frozen=True)
class Bar:
    series: str  # an endpoint: picks the colour
    value: float | None  # None: not measured, drawn as a label only
    text: str


@dataclass(frozen=True)
class Group:
    label: str
    ours: bool
    bars: tuple[Bar, ...]


def _kind(name: str) -> tuple[str, bool, bool]:
    """(family, ours, floor) of a target name; names from a newer run are guessed from their words."""
    for target in TARGETS:
        if target.name == name:
            return target.family, target.ours, target.floor
    family = next((f for f in FAMILIES if f in name), "other")
    return family, name.startswith("ours "), name.endswith(" floor")


def _ticks(top: float) -> list[float]:
    """Round tick values from 0 up to at least ``top``: 1, 2 or 5 times a power of ten apart."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 or value == int(value) else f"{value:.2f}".rstrip("0").rstrip(".")


def hbar_chart(title: str, note: str, groups: list[Group], *, unit: str,
               line: tuple[float, str] | None = None) -> str:  # fmt: skip
    """Horizontal grouped bars, one group per target, one bar per series, an optional reference line."""
    series = list(dict.fromkeys(b.series for g in groups for b in g.bars))
    values = [b.value for g in groups for b in g.bars if b.value is not None]
    ticks = _ticks(max([*values, line[0] if line else 0.0, 0.0]))
    scale = (WIDTH - LABEL_W - VALUE_W) / ticks[-1]
    heights = [len(g.bars) * BAR_H + GROUP_GAP for g in groups]
    plot_h = sum(heights) + GROUP_GAP
    height = TOP + plot_h + 56
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}' {FONT} font-size='12'>",
        f"<title>{escape(title)}</title>",
        f"<rect width='{WIDTH}' height='{height}' fill='white'/>",
        f"<text x='12' y='22' font-size='15' font-weight='600'>{escape(title)}</text>",
        f"<text x='12' y='40' fill='#52606d'>{escape(note)}</text>",
    ]
    x0, bottom = LABEL_W, TOP + plot_h
    for tick in ticks:
        x = x0 + tick * scale
        out.append(f"<line x1='{x:.1f}' y1='{TOP}' x2='{x:.1f}' y2='{bottom}' stroke='#e4e7eb'/>")
        out.append(f"<text x='{x:.1f}' y='{bottom + 14}' text-anchor='middle' fill='#52606d'>{_fmt(tick)}</text>")
    out.append(f"<text x='{x0 + (WIDTH - LABEL_W - VALUE_W) / 2:.1f}' y='{bottom + 30}' text-anchor='middle' "
               f"fill='#52606d'>{escape(unit)}</text>")  # fmt: skip
    y = TOP + GROUP_GAP
    for group, h in zip(groups, heights, strict=True):
        weight = " font-weight='700'" if group.ours else ""
        mid = y + len(group.bars) * BAR_H / 2 + 4
        out.append(f"<text x='{x0 - 8}' y='{mid:.1f}' text-anchor='end'{weight}>{escape(group.label)}</text>")
        for i, bar in enumerate(group.bars):
            top = y + i * BAR_H
            w = 0.0 if bar.value is None else max(bar.value * scale, 0.0)
            if w:
                out.append(f"<rect x='{x0}' y='{top + 1}' width='{w:.1f}' height='{BAR_H - 2}' "
                           f"fill='{COLORS.get(bar.series, '#7b8794')}'/>")  # fmt: skip
            out.append(f"<text x='{x0 + w + 4:.1f}' y='{top + BAR_H - 3}' font-size='10.5' "
                       f"fill='#323f4b'>{escape(bar.text)}</text>")  # fmt: skip
        y += h
    if line:
        x = x0 + line[0] * scale
        out.append(f"<line x1='{x:.1f}' y1='{TOP - 4}' x2='{x:.1f}' y2='{bottom}' stroke='#c81e1e' "
                   f"stroke-width='1.5' stroke-dasharray='5 3'/>")  # fmt: skip
        out.append(f"<text x='{x:.1f}' y='{TOP - 8}' text-anchor='middle' fill='#c81e1e' font-size='11'>"
                   f"{escape(line[1])}</text>")  # fmt: skip
    legend_x = 12
    for name in series:
        colour = COLORS.get(name, "#7b8794")
        out.append(f"<rect x='{legend_x}' y='{height - 18}' width='10' height='10' fill='{colour}'/>")
        out.append(f"<text x='{legend_x + 14}' y='{height - 9}'>{escape(name)}</text>")
        legend_x += 24 + 7 * len(name)
    out.append(f"<text x='{WIDTH - 12}' y='{height - 9}' text-anchor='end' fill='#52606d'>"
               "bold: serversession</text>")  # fmt: skip
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _rows(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """target name -> endpoint -> row, in the run's order."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for row in results.get("rows", []):
        rows.setdefault(row["target"], {})[row["endpoint"]] = row
    return rows


def rps_charts(results: dict[str, Any]) -> dict[str, str]:
    """One chart per framework family present in the run: ``{"rps-asgi.svg": svg, ...}``."""
    charts = {}
    rows = _rows(results)
    for family, title in FAMILIES.items():
        floor = None
        groups = []
        for name, endpoints in rows.items():
            fam, ours, is_floor = _kind(name)
            if fam != family:
                continue
            if is_floor:
                floor = endpoints.get("bare", {}).get("rps")
                continue
            bars = tuple(Bar(e, endpoints[e]["rps"], f"{endpoints[e]['rps']:,.0f}")
                         for e in ENDPOINTS if e in endpoints)  # fmt: skip
            groups.append(Group(name, ours, bars))
        if not groups:
            continue
        line = (floor, f"floor, {family} with no sessions: {floor:,.0f}") if floor else None
        charts[f"rps-{family}.svg"] = hbar_chart(
            f"{title}: requests per second (more is better)",
            f"{_mode(results)}; bare: no session access, read: one key read, write: one key incremented",
            groups, unit="requests per second", line=line,
        )  # fmt: skip
    return charts


def store_commands_chart(results: dict[str, Any]) -> str | None:
    """Store commands per request for every target that talks to a store (None if none does)."""
    groups = []
    for name, endpoints in _rows(results).items():
        bars = tuple(Bar(e, r["store_per_req"], _fmt(r["store_per_req"]))
                     for e, r in endpoints.items() if r.get("store_per_req") is not None)  # fmt: skip
        if bars:
            groups.append(Group(name, _kind(name)[1], bars))
    if not groups:
        return None
    return hbar_chart("Store commands per request (fewer is better)",
                      f"{_mode(results)}; store commands the app sent, per request served",
                      groups, unit="store commands per request")  # fmt: skip


def lost_updates_chart(results: dict[str, Any]) -> str | None:
    """The share of acknowledged writes each target lost (None if no write was measured)."""
    groups = []
    for name, endpoints in _rows(results).items():
        row = endpoints.get("write")
        if row is None:
            continue
        lost, served = row.get("lost"), row.get("served") or 0
        if lost is None:
            bar = Bar("write", None, "not measurable (the state lives in the client)")
        else:
            share = 100 * lost / served if served else 0.0
            bar = Bar("write", share, f"{lost:,} of {served:,} writes lost ({share:.0f}%)" if lost else "none lost")
        groups.append(Group(name, _kind(name)[1], (bar,)))
    if not groups:
        return None
    return hbar_chart("Lost updates under concurrent writes (0 is correct)",
                      f"{_mode(results)}; every connection increments one counter in one session",
                      groups, unit="% of acknowledged writes lost")  # fmt: skip


def _mode(results: dict[str, Any]) -> str:
    modes = {"full": "a full run", "quick": "a --quick run (1 round of 3 s)", "smoke": "a --smoke run"}
    return modes.get(results.get("mode", ""), "one run")


def draw(results: dict[str, Any]) -> dict[str, str]:
    """Every chart the run has data for: file name -> SVG text."""
    charts = rps_charts(results)
    for name, svg in (("store-commands.svg", store_commands_chart(results)),
                      ("lost-updates.svg", lost_updates_chart(results))):  # fmt: skip
        if svg is not None:
            charts[name] = svg
    return charts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.charts", description="Draw SVG charts from `python -m benchmarks.run --json` output."
    )
    parser.add_argument("results", type=Path, help="the JSON file benchmarks.run --json wrote")
    parser.add_argument("outdir", type=Path, help="directory for the .svg files (created if missing)")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.results}: {exc}", file=sys.stderr)
        return 2
    charts = draw(results)
    if not charts:
        print(f"error: {args.results} has no HTTP rows to draw (was the http phase run?)", file=sys.stderr)
        return 1
    args.outdir.mkdir(parents=True, exist_ok=True)
    for name, svg in charts.items():
        (args.outdir / name).write_text(svg)
        print(args.outdir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
