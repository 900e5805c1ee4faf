"""DynamicSupervisor: children started at run time, bounded by max_children."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_foundation import FoundationError
from trio_foundation.supervision import (
    ChildSpec,
    DynamicSupervisor,
    MaxChildrenError,
    Supervisor,
    SupervisorEscalation,
    open_dynamic_supervisor,
    open_supervisor,
)
from trio_foundation.supervision.testing import ControlledChildren as Controls

settle = trio.testing.wait_all_tasks_blocked


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="max_children must be >= 0, got -1"):
        DynamicSupervisor(max_children=-1)
    with pytest.raises(ValueError, match="intensity must be >= 0, got -2"):
        DynamicSupervisor(intensity=-2)
    with pytest.raises(ValueError, match="period must be > 0"):
        DynamicSupervisor(period=-1.0)
    with pytest.raises(TypeError, match="max_children must be an int"):
        DynamicSupervisor(max_children="3")  # type: ignore[arg-type]


async def test_max_children_refuses_and_starts_nothing() -> None:
    controls = Controls()
    async with open_dynamic_supervisor(max_children=2, name="agents") as sup:
        assert sup.which_children() == []
        await sup.start_child(ChildSpec("a1", controls.child("a1")))
        await sup.start_child(ChildSpec("a2", controls.child("a2")))
        with pytest.raises(MaxChildrenError, match="already at max_children=2") as info:
            await sup.start_child(ChildSpec("a3", controls.child("a3")))
        assert isinstance(info.value, FoundationError)
        assert info.value.child_id == "a3"
        await settle()
        assert controls.starts["a3"] == 0
        assert [c.id for c in sup.which_children()] == ["a1", "a2"]
        await sup.terminate_child("a1")  # frees a slot, and is forgotten
        assert [c.id for c in sup.which_children()] == ["a2"]
        await sup.start_child(ChildSpec("a3", controls.child("a3")))
        await settle()
        assert controls.running == {"a2", "a3"}
    assert controls.running == set()


async def test_max_children_zero() -> None:
    async with open_dynamic_supervisor(max_children=0) as sup:
        with pytest.raises(MaxChildrenError):
            await sup.start_child(ChildSpec("a", Controls().child("a")))


async def test_children_not_restarted_are_forgotten() -> None:
    controls = Controls()
    async with open_dynamic_supervisor(intensity=5) as sup:
        await sup.start_child(ChildSpec("p", controls.child("p")))
        await sup.start_child(ChildSpec("t", controls.child("t"), restart="transient"))
        await sup.start_child(ChildSpec("x", controls.child("x"), restart="temporary"))
        await settle()
        controls.tell("p", "crash")
        controls.tell("t", "return")
        controls.tell("x", "crash")
        await settle()
        assert [(c.id, c.state) for c in sup.which_children()] == [("p", "running")]
        assert controls.starts["p"] == 2
        assert sup.count_children().active == 1


async def test_dynamic_escalation_and_reverse_shutdown() -> None:
    controls = Controls()
    with pytest.raises(SupervisorEscalation):
        async with open_dynamic_supervisor(intensity=0) as sup:
            for cid in "abc":
                await sup.start_child(ChildSpec(cid, controls.child(cid)))
            await settle()
            controls.tell("a", "crash")
            await settle()
    assert controls.running == set()
    assert [e[1] for e in controls.log if e[0] == "stop"] == ["a", "c", "b"]


async def test_dynamic_supervisor_is_a_child_like_any_other() -> None:
    dyn = DynamicSupervisor(max_children=4)
    async with open_supervisor([ChildSpec("agents", dyn)]) as root:
        info = root.which_children()[0]
        assert info.kind == "supervisor" and info.handle is dyn
        await dyn.start_child(ChildSpec("a", Controls().child("a")))
        assert dyn.running and dyn.count_children().active == 1
    assert not dyn.running
    assert repr(dyn) == "DynamicSupervisor(name='dynamic_supervisor', max_children=4)"
    assert isinstance(Supervisor([]), Supervisor)
