"""benchmarks/report.py: the verdicts a run prints, and that a smoke run prints none."""

from __future__ import annotations

from benchmarks import report
from benchmarks.targets import EXPIRY_GROWTH_GOAL, MEMORY_OVERHEAD_GOAL

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
