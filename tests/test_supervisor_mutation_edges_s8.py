"""The supervisor's edges left by a fresh mutation sample, one exact check each.

Written for the survivors of session 7's sample (``benchmarks/mutation.py supervisor
--sample 150 --sample-seed 300945527``; docs/verification.md, ``### supervision/_supervisor.py``):
the supervisor's name in the errors and the escalation event, the two constructor
messages, ``rest_for_one`` leaving a stopped earlier child alone, and a zero grace
period that cancels without asking.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.supervision import (
    ChildSpec,
    ChildStartError,
    Escalated,
    MaxChildrenError,
    SupervisionEvent,
    Supervisor,
    SupervisorEscalation,
    current_child,
    open_dynamic_supervisor,
    open_supervisor,
)
from trio_foundation.supervision._supervisor import _SupervisorBase
from trio_foundation.supervision.testing import ControlledChildren as Controls

settle = trio.testing.wait_all_tasks_blocked


async def _forever() -> None:
    await trio.sleep_forever()


def test_an_unknown_strategy_is_refused_with_the_strategies_listed() -> None:
    with pytest.raises(ValueError) as raised:
        Supervisor([], strategy="bogus")  # type: ignore[arg-type]
    assert str(raised.value) == (
        "strategy must be one of one_for_one, one_for_all, rest_for_one; got 'bogus'"
    )


def test_the_base_refuses_more_initial_children_than_max_children_exactly() -> None:
    # only reachable through the base class: DynamicSupervisor, the one public class
    # with max_children, always starts empty
    specs = [ChildSpec("a", _forever), ChildSpec("b", _forever)]
    with pytest.raises(ValueError) as raised:
        _SupervisorBase(specs, max_children=1)
    assert str(raised.value) == "2 children exceed max_children=1"


async def test_max_children_error_names_the_supervisor() -> None:
    async with open_dynamic_supervisor(max_children=1, name="agents") as sup:
        await sup.start_child(ChildSpec("a1", _forever))
        with pytest.raises(MaxChildrenError) as raised:
            await sup.start_child(ChildSpec("a2", _forever))
    assert (raised.value.supervisor, raised.value.child_id) == ("agents", "a2")
    assert str(raised.value) == (
        "supervisor 'agents': cannot start child 'a2': already at max_children=1"
    )


class _FailsBeforeReady:
    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("boom")


async def test_a_start_error_names_the_supervisor() -> None:
    async with open_supervisor([], name="named") as sup:
        with pytest.raises(ChildStartError) as raised:
            await sup.start_child(ChildSpec("svc", _FailsBeforeReady()))
        assert sup.which_children() == []
    assert (raised.value.supervisor, raised.value.child_id) == ("named", "svc")
    assert str(raised.value) == (
        "supervisor 'named': child 'svc' failed to start: raised ValueError('boom')"
    )


async def test_the_escalation_event_names_the_supervisor() -> None:
    seen: list[SupervisionEvent] = []
    controls = Controls()
    with pytest.raises(SupervisorEscalation):
        async with open_supervisor(
            [ChildSpec("a", controls.child("a"))], intensity=0, name="named", handlers=[seen.append]
        ):
            await settle()
            controls.tell("a", "crash")
            await trio.sleep_forever()  # the escalation cancels the block
    escalations = [e for e in seen if isinstance(e, Escalated)]
    assert [(e.supervisor, e.child_id, len(e.causes)) for e in escalations] == [("named", "a", 1)]


async def test_rest_for_one_leaves_a_stopped_earlier_child_stopped() -> None:
    # a was terminated; b's crash restarts b and the children after it, never a
    controls = Controls()
    specs = [ChildSpec(cid, controls.child(cid)) for cid in "abc"]
    async with open_supervisor(specs, strategy="rest_for_one", intensity=5) as sup:
        await settle()
        await sup.terminate_child("a")
        controls.tell("b", "crash")
        await settle()
        assert [(i.id, i.state, i.restarts) for i in sup.which_children()] == [
            ("a", "stopped", 0),
            ("b", "running", 1),
            ("c", "running", 1),
        ]
        assert dict(controls.starts) == {"a": 1, "b": 2, "c": 2}


@pytest.mark.parametrize(("shutdown", "asked"), [(0, False), ("brutal_kill", False), (0.5, True)])
async def test_a_zero_grace_cancels_without_asking(shutdown: Any, asked: bool) -> None:
    # ChildSpec: '"brutal_kill" or 0 cancels at once': the stop event is never set
    seen: list[bool] = []

    async def polite() -> None:
        stop = current_child().trap_stop()
        try:
            await stop.wait()
        finally:
            seen.append(stop.is_set())

    async with open_supervisor([ChildSpec("p", polite, shutdown=shutdown)]) as sup:
        await settle()
        await sup.terminate_child("p")
        assert [i.state for i in sup.which_children()] == ["stopped"]
    assert seen == [asked]
