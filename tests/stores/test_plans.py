"""The store plans' shared runner and error mapping (stores/_plans.py), with no server.

The Redis and PostgreSQL suites check the same mapping over real servers; here
each rule once, with plain exceptions standing in for a driver's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import pytest

from serversession.exceptions import CorruptRecordError, StoreError, StoreUnavailableError
from serversession.stores._plans import DriverErrors, adrive, drive


class Down(ConnectionError):
    """Stands in for a driver's "cannot reach the server"."""


ERRORS = DriverErrors("fake", "Fake", unavailable=(Down,), caught=(Exception,))


def doubling() -> Generator[int, int, list[int]]:
    answers = [(yield 1), (yield 2)]
    return answers


def test_drive_answers_each_step_and_returns_the_plan_value() -> None:
    assert drive(doubling(), lambda step: step * 2) == [2, 4]


def test_adrive_awaits_each_answer() -> None:
    async def double(step: int) -> int:
        return step * 2

    assert asyncio.run(adrive(doubling(), double)) == [2, 4]


@pytest.mark.parametrize(
    ("raised", "expected"), [(Down("refused"), StoreUnavailableError), (KeyError("x"), StoreError)]
)
def test_a_driver_error_becomes_a_store_error_with_its_cause(raised: Exception, expected: type[Exception]) -> None:
    with pytest.raises(StoreError) as info, ERRORS.mapped("load"):
        raise raised
    assert type(info.value) is expected and info.value.__cause__ is raised
    assert (info.value.store, info.value.operation) == ("fake", "load")
    assert str(info.value).startswith("Fake load failed: ")


def test_a_store_error_from_below_is_named_after_the_store_and_operation() -> None:
    corrupt = CorruptRecordError("bad row")
    with pytest.raises(CorruptRecordError) as info, ERRORS.mapped("commit"):
        raise corrupt
    assert info.value is corrupt and (corrupt.store, corrupt.operation) == ("fake", "commit")


def test_what_is_not_caught_passes_through_untouched() -> None:
    narrow = DriverErrors("fake", "Fake", unavailable=(Down,), caught=(Down,))
    with pytest.raises(ValueError, match="not the driver's"), narrow.mapped("load"):
        raise ValueError("not the driver's")
    with pytest.raises(asyncio.CancelledError), ERRORS.mapped("load"):  # a BaseException: never a store error
        raise asyncio.CancelledError


def test_a_call_that_succeeds_is_left_alone() -> None:
    result: Any = None
    with ERRORS.mapped("load"):
        result = 42
    assert result == 42


def test_a_failed_step_closes_the_plan_so_its_finally_runs_now() -> None:
    released: list[str] = []

    def holding() -> Generator[int, int, int]:
        try:
            return (yield 1)
        finally:
            released.append("ticket")

    def fail(step: int) -> int:
        raise KeyError(step)

    with pytest.raises(KeyError) as info:
        drive(holding(), fail)
    assert released == ["ticket"] and info.value is not None  # while the traceback is still held

    async def afail(step: int) -> int:
        raise KeyError(step)

    with pytest.raises(KeyError):
        asyncio.run(adrive(holding(), afail))
    assert released == ["ticket", "ticket"]
