"""The supervisor's edges, one exact check each: ``current_child()`` from a task the
child spawned in a nested nursery, and the misuse messages.

Written for the survivors of a mutation run (``benchmarks/mutation.py supervisor``;
docs/verification.md lists them).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.supervision import ChildSpec, current_child, open_supervisor


def test_current_child_outside_a_child_says_so_exactly() -> None:
    with pytest.raises(RuntimeError) as raised:
        current_child()
    assert str(raised.value) == "current_child() called outside a supervised child"


async def test_a_grandchild_task_sees_its_childs_context() -> None:
    seen: list[str] = []

    async def grandchild() -> None:
        seen.append(current_child().id)

    async def child() -> None:
        async with trio.open_nursery() as outer:
            outer.start_soon(nested, outer)
        await trio.sleep_forever()

    async def nested(_: trio.Nursery) -> None:
        async with trio.open_nursery() as inner:
            inner.start_soon(grandchild)

    async with open_supervisor([ChildSpec("worker", child)]):
        await trio.testing.wait_all_tasks_blocked()
    assert seen == ["worker"]


class _StartsTwice:
    def __init__(self) -> None:
        self.error: RuntimeError | None = None

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started("handle")
        try:
            task_status.started("again")
        except RuntimeError as exc:
            self.error = exc
        await trio.sleep_forever()


async def test_a_service_that_reports_started_twice_is_told_exactly() -> None:
    service = _StartsTwice()
    async with open_supervisor([ChildSpec("svc", service)]) as sup:
        assert [info.handle for info in sup.which_children()] == ["handle"]
    assert service.error is not None
    assert str(service.error) == "called 'started' twice on the same task status"


async def test_current_child_in_a_trio_task_outside_a_child_says_so_exactly() -> None:
    # the walk up the task tree reaches the root task, whose parent nursery is None
    with pytest.raises(RuntimeError) as raised:
        current_child()
    assert str(raised.value) == "current_child() called outside a supervised child"


def test_an_interrupt_nested_in_a_group_wins_unwrapped() -> None:
    from trio_foundation.supervision._supervisor import _unwrap_group

    interrupt = KeyboardInterrupt()
    group = BaseExceptionGroup(
        "outer", [ValueError("a"), BaseExceptionGroup("inner", [RuntimeError("b"), interrupt])]
    )
    assert _unwrap_group(group) is interrupt
    plain = BaseExceptionGroup("outer", [ValueError("a"), RuntimeError("b")])
    assert _unwrap_group(plain) is plain
