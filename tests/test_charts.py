"""benchmarks/charts.py: SVG charts from a small hand-written run, checked as XML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from benchmarks import charts

SVG = "{http://www.w3.org/2000/svg}"


def row(target: str, endpoint: str, rps: float, *, store: float | None = None, lost: int | None = None,
        served: int = 1000) -> dict[str, Any]:  # fmt: skip
    return {"target": target, "endpoint": endpoint, "rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "requests": served,
            "failed": 0, "served": served, "store_per_req": store, "server_ops_per_req": store,
            "lost": lost}  # fmt: skip


RESULTS = {
    "mode": "quick",
    "machine": ["machine: 2 CPUs"],
    "rows": [
        row("asgi floor", "bare", 3000),
        row("ours asgi redis", "bare", 2000, store=1.0),
        row("ours asgi redis", "read", 1800, store=1.0),
        row("ours asgi redis", "write", 900, store=2.0, lost=0),
        row("starsessions redis", "read", 600, store=2.0),
        row("starsessions redis", "write", 500, store=2.0, lost=250, served=1000),
        row("starlette cookie", "write", 1200),  # lost stays None: the counter lives in the client
    ],
    "missing": {},
    "broken": [],
}


def texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]


def bar_widths(svg: str) -> list[float]:
    """Widths of the bars (the rects that are neither the background nor a legend swatch)."""
    rects = ET.fromstring(svg).iter(f"{SVG}rect")
    return [float(r.get("width", 0)) for r in rects if r.get("height") not in (None, "10") and r.get("fill") != "white"]


def test_one_rps_chart_per_family_present() -> None:
    drawn = charts.draw(RESULTS)
    assert sorted(drawn) == ["lost-updates.svg", "rps-asgi.svg", "store-commands.svg"]  # no Flask or Django rows


def test_rps_chart_has_every_target_but_the_floor_which_is_the_line() -> None:
    svg = charts.draw(RESULTS)["rps-asgi.svg"]
    labels = texts(svg)
    assert {"ours asgi redis", "starsessions redis", "starlette cookie"} <= set(labels)
    assert "asgi floor" not in labels
    assert any("floor" in t and "3,000" in t for t in labels)
    assert len(re.findall(r"stroke-dasharray", svg)) == 1


def test_bars_are_proportional_to_the_values() -> None:
    widths = bar_widths(charts.draw(RESULTS)["rps-asgi.svg"])
    # ours: 2000, 1800, 900; starsessions: 600, 500; cookie: 1200 (in the run's order)
    assert len(widths) == 6
    assert widths[0] / widths[2] == pytest.approx(2000 / 900, rel=0.01)
    assert widths[3] / widths[5] == pytest.approx(600 / 1200, rel=0.01)


def test_store_commands_leave_out_targets_without_a_store() -> None:
    labels = texts(charts.draw(RESULTS)["store-commands.svg"])
    assert "ours asgi redis" in labels and "starlette cookie" not in labels


def test_lost_updates_say_none_a_share_or_not_measurable() -> None:
    labels = texts(charts.draw(RESULTS)["lost-updates.svg"])
    assert "none lost" in labels
    assert "250 of 1,000 writes lost (25%)" in labels
    assert any(t.startswith("not measurable") for t in labels)


def test_the_same_run_draws_the_same_bytes() -> None:
    assert charts.draw(RESULTS) == charts.draw(json.loads(json.dumps(RESULTS)))


#: A run of the three async frameworks added later, each with its floor and incumbent.
NEWER = {
    "mode": "quick",
    "rows": [
        row("litestar floor", "bare", 4000),
        row("ours litestar redis", "read", 3000, store=1.0),
        row("litestar server-side redis", "read", 2000, store=2.0),
        row("quart floor", "bare", 2500),
        row("ours quart redis", "write", 1000, store=2.0, lost=0),
        row("quart cookie", "write", 1500),
        row("aiohttp floor", "bare", 6000),
        row("ours aiohttp redis", "read", 3500, store=1.0),
        row("aiohttp-session redis", "write", 2000, store=2.0, lost=100),
    ],
}


def test_litestar_quart_and_aiohttp_get_a_chart_each_with_their_floor() -> None:
    drawn = charts.draw(NEWER)
    assert {"rps-litestar.svg", "rps-quart.svg", "rps-aiohttp.svg"} <= set(drawn)
    assert "rps-asgi.svg" not in drawn  # aiohttp-session and quart cookie are not guessed into another family
    litestar = texts(drawn["rps-litestar.svg"])
    assert {"ours litestar redis", "litestar server-side redis"} <= set(litestar)
    assert any("floor" in t and "4,000" in t for t in litestar)
    assert "aiohttp-session redis" in texts(drawn["rps-aiohttp.svg"])
    assert any(t.startswith("not measurable") for t in texts(drawn["lost-updates.svg"]))  # quart cookie


def test_command_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "run.json"
    source.write_text(json.dumps(RESULTS))
    assert charts.main([str(source), str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["lost-updates.svg", "rps-asgi.svg", "store-commands.svg"]
    for name in written:
        ET.fromstring((tmp_path / "out" / name).read_text())  # well-formed
    assert capsys.readouterr().out.count(".svg") == 3


def test_command_refuses_a_missing_file_and_a_run_without_rows(tmp_path: Path) -> None:
    assert charts.main([str(tmp_path / "nothing.json"), str(tmp_path)]) == 2
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"mode": "smoke", "rows": []}))
    assert charts.main([str(empty), str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()


def test_the_committed_charts_are_drawn_from_the_committed_run() -> None:
    docs = Path(__file__).parent.parent / "docs"
    drawn = charts.draw(json.loads((docs / "data" / "bench-quick.json").read_text()))
    for name, svg in drawn.items():
        assert (docs / "img" / name).read_text() == svg, f"redraw: python -m benchmarks.charts ... docs/img ({name})"
