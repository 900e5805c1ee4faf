"""Supervision events through ``trio_foundation.telemetry`` (issue 12, item 3)."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from trio_foundation.supervision import (
    ChildSpec,
    SupervisorEscalation,
    _supervisor,
    current_child,
    open_dynamic_supervisor,
    open_supervisor,
)
from trio_foundation.supervision._telemetry import EVENTS
from trio_foundation.supervision.testing import ControlledChildren
from trio_foundation.telemetry import Event, Telemetry, default_telemetry


def recorder() -> tuple[Telemetry, list[Event]]:
    telemetry = Telemetry(slow_handler=None)
    events: list[Event] = []
    telemetry.attach("recorder", EVENTS, events.append)
    return telemetry, events


def names(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.name, str(e.metadata.get("child_id", ""))) for e in events]


async def polite(stop_after: float) -> None:
    """Stops ``stop_after`` seconds after being asked to."""
    stop = current_child().trap_stop()
    await stop.wait()
    await trio.sleep(stop_after)


async def stubborn() -> None:
    """Ignores the stop request: cancelled when its grace ends."""
    current_child().trap_stop()
    await trio.sleep_forever()


async def test_lifecycle_restart_and_escalation() -> None:
    telemetry, events = recorder()
    children = ControlledChildren()
    with pytest.raises(SupervisorEscalation):
        async with open_supervisor(
            [ChildSpec("a", children.child("a")), ChildSpec("b", children.child("b"))],
            intensity=1,
            name="tele",
            telemetry=telemetry,
        ):
            await trio.testing.wait_all_tasks_blocked()
            children.tell("a", "crash")
            await trio.testing.wait_all_tasks_blocked()
            children.tell("a", "crash")
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep_forever()
    assert names(events) == [
        ("supervisor.child.start", "a"),
        ("supervisor.child.start", "b"),
        ("supervisor.child.exit", "a"),
        ("supervisor.child.start", "a"),
        ("supervisor.child.restart", "a"),
        ("supervisor.child.exit", "a"),
        ("supervisor.child.exit", "b"),  # escalation: the others stopped first, in reverse
        ("supervisor.child.stop", "b"),
        ("supervisor.shutdown", ""),
        ("supervisor.escalate", "a"),
    ]
    exit_a = events[2]
    assert exit_a.metadata["reason"] == "abnormal"
    assert type(exit_a.metadata["exception"]).__name__ == "ChildCrash"
    assert events[3].measurements == {"restarts": 1}
    assert events[4].metadata["cause_id"] == "a"
    assert events[4].measurements == {"restarts_in_period": 1}
    escalate = events[-1]
    assert escalate.measurements == {"restarts_in_period": 2, "intensity": 1, "period": 5.0}
    assert len(escalate.metadata["causes"]) == 2
    assert events[-2].metadata["cause"] == "escalation"
    assert events[-2].metadata["order"] == ("b",)


async def test_shutdown_order_and_durations(autojump_clock: trio.abc.Clock) -> None:
    telemetry, events = recorder()
    specs = [
        ChildSpec("first", polite, args=(2.0,), shutdown=5),
        ChildSpec("second", stubborn, shutdown=3),
        ChildSpec("third", polite, args=(1.0,), shutdown=5),
    ]
    async with open_supervisor(specs, telemetry=telemetry, name="s"):
        await trio.sleep(1)
    stops = [e for e in events if e.name == "supervisor.child.stop"]
    assert [(e.metadata["child_id"], e.metadata["cancelled"]) for e in stops] == [
        ("third", False),
        ("second", True),  # ignored the request: cancelled at the end of its grace
        ("first", False),
    ]
    assert [e.measurements["duration"] for e in stops] == pytest.approx([1.0, 3.0, 2.0])
    assert [e.measurements["grace"] for e in stops] == [5.0, 3.0, 5.0]
    (shutdown,) = [e for e in events if e.name == "supervisor.shutdown"]
    assert shutdown.metadata["order"] == ("third", "second", "first")
    assert shutdown.metadata["durations"] == pytest.approx((1.0, 3.0, 2.0))
    assert shutdown.metadata["cause"] == "shutdown"
    assert shutdown.measurements == pytest.approx({"duration": 6.0, "children": 3})


async def test_dynamic_supervisor_emits_through_the_default_telemetry() -> None:
    events: list[Event] = []
    children = ControlledChildren()
    with default_telemetry().attached("test-dynamic", EVENTS, events.append):
        async with open_dynamic_supervisor(max_children=2, name="dyn") as dyn:
            await dyn.start_child(ChildSpec("w", children.child("w"), restart="transient"))
            await trio.testing.wait_all_tasks_blocked()
            children.tell("w", "crash")
            await trio.testing.wait_all_tasks_blocked()
            children.tell("w", "return")
            await trio.testing.wait_all_tasks_blocked()
    assert all(e.metadata["supervisor"] == "dyn" for e in events)
    assert names(events) == [
        ("supervisor.child.start", "w"),
        ("supervisor.child.exit", "w"),
        ("supervisor.child.start", "w"),
        ("supervisor.child.restart", "w"),
        ("supervisor.child.exit", "w"),
        ("supervisor.shutdown", ""),
    ]
    assert events[-1].metadata["order"] == ()  # nothing was running any more
    assert not default_telemetry().listening("supervisor.child.start")


async def test_nothing_is_built_when_nobody_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """No handler: the supervisor never builds an event (the guard is one dict lookup)."""

    def must_not_run(*args: object) -> None:
        raise AssertionError("an event was built with nobody listening")

    monkeypatch.setattr(_supervisor, "notify", must_not_run)
    telemetry = Telemetry()
    telemetry.attach("elsewhere", "unrelated.event", lambda e: None)
    children = ControlledChildren()
    async with open_supervisor(
        [ChildSpec("a", children.child("a"))], intensity=3, telemetry=telemetry
    ):
        await trio.testing.wait_all_tasks_blocked()
        children.tell("a", "crash")
        await trio.testing.wait_all_tasks_blocked()
    assert children.starts["a"] == 2
    assert telemetry.statistics().emitted == 0


async def test_a_slow_sync_handler_is_detached_and_the_supervisor_goes_on() -> None:
    telemetry = Telemetry(slow_handler=0.001, max_failures=2)
    calls: list[str] = []

    def slow(event: Event) -> None:
        calls.append(event.name)
        time.sleep(0.005)  # blocks the supervisor's task: counted as a failure

    telemetry.attach("slow", EVENTS, slow)
    children = ControlledChildren()
    async with open_supervisor(
        [ChildSpec("a", children.child("a")), ChildSpec("b", children.child("b"))],
        intensity=5,
        telemetry=telemetry,
    ):
        await trio.testing.wait_all_tasks_blocked()
        children.tell("a", "crash")
        await trio.testing.wait_all_tasks_blocked()
        assert children.starts["a"] == 2
    assert len(calls) == 2  # detached after its second slow call
    assert telemetry.statistics().detached == 1


def test_telemetry_argument_is_checked() -> None:
    with pytest.raises(TypeError, match="telemetry must be a Telemetry"):
        _supervisor.Supervisor([], telemetry="default")  # type: ignore[arg-type]
