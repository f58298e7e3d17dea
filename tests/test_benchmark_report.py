"""benchmarks/report.py: the verdicts a run prints, and that a smoke run prints none."""

from __future__ import annotations

from benchmarks import load, report
from benchmarks.harness import Row
from benchmarks.targets import EXPIRY_GROWTH_GOAL, INCUMBENTS, MEMORY_OVERHEAD_GOAL, TARGETS

#: Scale figures as a short run measures them: 10,000 sessions, and an expiry that
#: grows far past its goal (short runs are noisy), so a judged run would print MISS.
SHORT_RUN = {
    "memory": {"sessions": 10_000, "overhead_bytes": MEMORY_OVERHEAD_GOAL + 100},
    "expiry": {"memory": {"expiring": 100, "growth": EXPIRY_GROWTH_GOAL * 3}},
}


def test_a_judged_run_prints_its_verdicts() -> None:
    verdicts = report.scale_verdicts(SHORT_RUN)
    printed = report.verdict_section(verdicts, "quick")
    assert printed is not None and "MISS" in printed
    assert "n/a" in printed  # memory overhead is judged at 1,000,000 sessions only


def test_a_smoke_run_says_so_and_prints_no_verdicts() -> None:
    printed = report.verdict_section(report.scale_verdicts(SHORT_RUN), "smoke")
    assert printed == report.SMOKE_NOTE
    assert "smoke run" in printed and not {"MISS", "PASS"} & set(printed.split())


def test_a_run_that_judged_nothing_prints_no_table() -> None:
    assert report.verdict_section([], "full") is None
    assert report.verdict_section([], "smoke") == report.SMOKE_NOTE


def measured(name: str, endpoint: str, rps: float) -> Row:
    target = next(t for t in TARGETS if t.name == name)
    return Row(target, endpoint, load.LoadResult(1000, 1000, 0, rps, 1.0, 2.0), 1000)


def test_every_family_has_a_floor_ours_and_its_incumbent() -> None:
    names = {t.name: t for t in TARGETS}
    for family, (ours, incumbent) in INCUMBENTS.items():
        assert names[ours].ours and names[ours].family == family
        assert names[incumbent].family == family and not names[incumbent].ours
        assert any(t.floor for t in TARGETS if t.family == family)


def test_ratios_divide_ours_by_the_floor_and_by_the_incumbent() -> None:
    rows = [
        measured("litestar floor", "bare", 4000),
        measured("ours litestar redis", "read", 3000),
        measured("litestar server-side redis", "read", 2000),
        measured("ours quart redis", "write", 1000),
    ]
    found = {(r.family, r.endpoint): r for r in report.ratios(rows)}
    assert set(found) == {("litestar", "read"), ("quart", "write")}
    assert found["litestar", "read"].to_floor == 0.75
    assert found["litestar", "read"].to_incumbent == 1.5
    assert found["quart", "write"].to_floor is None and found["quart", "write"].to_incumbent is None
    table = report.ratio_table(list(found.values()))
    assert "litestar server-side redis" in table and "quart cookie" in table
    assert not {"MISS", "PASS"} & set(table.split())  # ratios without a goal are not verdicts
