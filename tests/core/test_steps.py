"""The typed steps between plans and their runners (core/steps.py)."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from core_fakes import Clock

import serversession.core
from serversession import MemoryStore
from serversession.core.events import EventKind, SessionEvent
from serversession.core.records import Commit, Outcome
from serversession.core.steps import Apply, Create, Delete, Emit, ListUser, Load, Rotate, StoreStep

USER = "alice"


def signed_in(clock: Clock) -> Commit:
    return Commit(set_data={"n": "1"}, meta={"c": repr(clock.now), "s": repr(clock.now), "u": USER},
                  expires_at=clock.now + 60, index_user=USER, absolute_at=clock.now + 600)  # fmt: skip


def test_every_answer_a_core_plan_uses_comes_through_a_typed_ask() -> None:
    """``x = yield step`` would give ``x`` the type Any: in the core only events are yielded bare."""
    root = Path(serversession.core.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Yield) or isinstance(parents[node], ast.Expr):
                continue
            parent, where = parents[node], f"{path.name}:{node.lineno}"
            if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute):
                # step.answer((yield step)): the same step answers
                assert parent.func.attr == "answer" and isinstance(node.value, ast.Name), where
                assert ast.unparse(parent.func.value) == node.value.id, where
            else:
                assert (path.name, ast.unparse(parent)) == ("steps.py", "answer: R = (yield self)"), where


def moved(clock: Clock) -> Commit:
    return Commit(meta={"u": USER}, expires_at=clock.now + 60, index_user=USER, absolute_at=clock.now + 600)


def test_ask_yields_the_step_and_returns_what_the_runner_sends() -> None:
    step = Load("k")
    asking = step.ask()
    assert next(asking) is step
    with pytest.raises(StopIteration) as done:
        asking.send(None)
    assert done.value.value is None


def test_answer_is_what_the_runner_sent() -> None:
    assert Load("k").answer(None) is None and ListUser("u").answer([]) == []


def test_steps_are_frozen_and_slotted() -> None:
    step = Apply("k", Commit())
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.key = "other"  # type: ignore[misc]
    assert not hasattr(step, "__dict__")
    assert Load("k") == Load("k") and hash(Load("k")) == hash(Load("k"))


def test_each_store_step_carries_itself_out_on_the_sync_face(clock: Clock) -> None:
    store = MemoryStore(clock=clock)
    assert Load("a").call(store) is None
    assert Create("a", signed_in(clock)).call(store)
    assert Create("a", signed_in(clock)).call(store).outcome is Outcome.TAKEN  # type: ignore[union-attr]
    assert Apply("a", Commit(set_data={"n": "2"})).call(store)
    loaded = Load("a").call(store)
    assert loaded is not None and loaded.data == {"n": "2"}
    assert Rotate("a", "b", moved(clock), 5.0).call(store)
    assert Apply("a", Commit()).call(store).moved_to == "b"
    assert [s.key for s in ListUser(USER).call(store)] == ["b"]
    assert Delete("b").call(store) and not Delete("b").call(store)


def test_each_store_step_carries_itself_out_on_the_async_face(clock: Clock) -> None:
    async def run() -> None:
        store = MemoryStore(clock=clock)
        assert await Load("a").acall(store) is None
        assert await Create("a", signed_in(clock)).acall(store)
        assert await Apply("a", Commit(set_data={"n": "2"})).acall(store)
        assert await Rotate("a", "b", moved(clock), 5.0).acall(store)
        assert [s.key for s in await ListUser(USER).acall(store)] == ["b"]
        assert await Delete("b").acall(store)
        assert await Load("b").acall(store) is None

    asyncio.run(run())


@pytest.mark.parametrize(
    ("step", "method"),
    [(Load("k"), "load"), (Create("k", Commit()), "create"), (Apply("k", Commit()), "commit"),
     (Rotate("k", "n", Commit(), 1.0), "rotate"), (Delete("k"), "delete"), (ListUser(USER), "list_user")],
)  # fmt: skip
def test_a_step_still_unpacks_as_the_tuple_plans_yielded_before(step: StoreStep[Any], method: str) -> None:
    """Deprecated, kept while code outside the core drives plans by hand that way."""
    name, args = step
    assert name == method == step.method
    assert args == tuple(getattr(step, f.name) for f in dataclasses.fields(step))  # type: ignore[arg-type]
    event = SessionEvent(EventKind.CREATED, 1.0)
    assert tuple(Emit(event)) == ("emit", (event,))
