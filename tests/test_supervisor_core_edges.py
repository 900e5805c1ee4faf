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

from trio_foundation.supervision import (
    ChildCounts,
    ChildExited,
    ChildRestarted,
    ChildSpec,
    ChildStartError,
    SupervisionEvent,
    Supervisor,
    SupervisorEscalation,
    current_child,
    open_supervisor,
)
from trio_foundation.supervision._supervisor import _SupervisorBase
from trio_foundation.supervision._telemetry import SHUTDOWN, START, STOP
from trio_foundation.supervision.testing import ControlledChildren as Controls
from trio_foundation.telemetry import Event, Telemetry


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


# --- the second mutation run's survivors (a 300-mutant sample) ----------------------


async def _forever() -> None:
    await trio.sleep_forever()


def test_a_supervisors_defaults_are_otps() -> None:
    # OTP's defaults: intensity 1, period 5 s, one_for_one
    sup = Supervisor([ChildSpec("a", _forever)])
    assert repr(sup) == (
        "Supervisor(name='supervisor', strategy='one_for_one', intensity=1, period=5,"
        " children=['a'])"
    )


async def test_default_intensity_allows_one_restart_in_five_seconds(
    autojump_clock: trio.abc.Clock,
) -> None:
    controls = Controls()
    with pytest.raises(SupervisorEscalation) as raised:
        async with open_supervisor([ChildSpec("a", controls.child("a"))]):
            await trio.testing.wait_all_tasks_blocked()
            controls.tell("a", "crash")
            await trio.testing.wait_all_tasks_blocked()
            assert controls.starts["a"] == 2  # one restart: allowed
            await trio.sleep(5.0)  # exactly 5 s old: still in the window
            controls.tell("a", "crash")
            await trio.testing.wait_all_tasks_blocked()
            pytest.fail("a second restart within 5 s must escalate")
    assert (raised.value.intensity, raised.value.period) == (1, 5.0)


async def test_start_child_refuses_a_significant_child_under_never_exactly() -> None:
    spec = ChildSpec("s", _forever, restart="transient", significant=True)
    async with open_supervisor([]) as sup:
        with pytest.raises(ValueError) as raised:
            await sup.start_child(spec)
        assert str(raised.value) == "child 's' is significant but auto_shutdown is 'never'"
        assert sup.which_children() == []


async def test_count_children_counts_workers_and_supervisors() -> None:
    inner = Supervisor([ChildSpec("leaf", _forever)], name="inner")
    specs = [ChildSpec("w1", _forever), ChildSpec("sub", inner), ChildSpec("w2", _forever)]
    async with open_supervisor(specs) as sup:
        await trio.testing.wait_all_tasks_blocked()
        assert sup.count_children() == ChildCounts(specs=3, active=3, supervisors=1, workers=2)


async def test_exits_queued_together_restart_one_for_all_once() -> None:
    # a and b crash in the same scheduler batch: a's exit restarts both (one_for_all),
    # so b's queued exit belongs to a run that was already replaced and is ignored
    # (with the stale exit handled too, the run does not settle: pytest-timeout ends it)
    controls = Controls()
    specs = [ChildSpec(cid, controls.child(cid)) for cid in "abc"]
    async with open_supervisor(specs, strategy="one_for_all", intensity=5) as sup:
        await trio.testing.wait_all_tasks_blocked()
        controls.tell("a", "crash")
        controls.tell("b", "crash")
        await trio.testing.wait_all_tasks_blocked()
        assert dict(controls.starts) == {"a": 2, "b": 2, "c": 2}
        assert [(i.id, i.state, i.restarts) for i in sup.which_children()] == [
            ("a", "running", 1),
            ("b", "running", 1),
            ("c", "running", 1),
        ]


class _KeyPerChild(_SupervisorBase):
    """Counts restarts per child through the ``_intensity_key`` hook (as the broken
    variants of tests/test_supervisor_trace.py and property_tests do)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys: list[str] = []

    def _intensity_key(self, child_id: str) -> str | None:
        self.keys.append(child_id)
        return child_id


async def test_the_intensity_key_hook_gets_the_restarted_childs_id() -> None:
    controls = Controls()
    sup = _KeyPerChild([ChildSpec(cid, controls.child(cid)) for cid in "ab"], intensity=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.testing.wait_all_tasks_blocked()
        controls.tell("a", "crash")
        await trio.testing.wait_all_tasks_blocked()
        controls.tell("b", "crash")  # its own key: one restart each, within intensity 1
        await trio.testing.wait_all_tasks_blocked()
        assert sup.running and not sup.escalated
        assert sup.keys == ["a", "b"]
        await sup.aclose()
    assert dict(controls.starts) == {"a": 2, "b": 2}


async def test_a_workers_handle_is_none_and_its_task_is_named_after_it() -> None:
    names: list[str] = []

    async def worker() -> None:
        names.append(trio.lowlevel.current_task().name)
        await trio.sleep_forever()

    async with open_supervisor([ChildSpec("w", worker)]) as sup:
        await trio.testing.wait_all_tasks_blocked()
        assert [(i.id, i.handle) for i in sup.which_children()] == [("w", None)]
        await sup.terminate_child("w")
        assert await sup.restart_child("w") is None
        assert sup.which_children()[0].handle is None
    assert names == ["w", "w"]


async def test_which_children_reports_significance() -> None:
    specs = [
        ChildSpec("plain", _forever),
        ChildSpec("key", _forever, restart="transient", significant=True),
    ]
    async with open_supervisor(specs, auto_shutdown="any_significant") as sup:
        assert [(i.id, i.significant) for i in sup.which_children()] == [
            ("plain", False),
            ("key", True),
        ]


async def test_escalated_is_false_after_a_run_that_did_not_escalate() -> None:
    sup = Supervisor([ChildSpec("a", _forever)])
    assert sup.escalated is False
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await sup.aclose()
    assert sup.escalated is False and sup.running is False


async def test_a_grace_period_under_a_second_is_given(autojump_clock: trio.abc.Clock) -> None:
    log: list[tuple[str, float]] = []

    async def polite() -> None:
        stop = current_child().trap_stop()
        await stop.wait()
        log.append(("asked", trio.current_time()))
        await trio.sleep(0.2)
        log.append(("clean", trio.current_time()))

    async with open_supervisor([ChildSpec("p", polite, shutdown=0.5)]):
        await trio.testing.wait_all_tasks_blocked()
    assert log == [("asked", 0.0), ("clean", pytest.approx(0.2))]


async def test_a_listener_of_stops_alone_gets_timed_stops(autojump_clock: trio.abc.Clock) -> None:
    telemetry = Telemetry(slow_handler=None)
    events: list[Event] = []
    telemetry.attach("stops", (STOP,), events.append)
    async with open_supervisor([ChildSpec("x", _forever)], name="s", telemetry=telemetry):
        await trio.sleep(1)
    assert [(e.name, e.metadata) for e in events] == [
        (STOP, {"supervisor": "s", "child_id": "x", "cancelled": True}),
    ]
    assert events[0].measurements == {"duration": 0.0, "grace": 5.0}


async def test_an_interrupt_shutdown_is_reported_as_such() -> None:
    telemetry = Telemetry(slow_handler=None)
    events: list[Event] = []
    telemetry.attach("shutdowns", (SHUTDOWN,), events.append)

    async def interrupter() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        async with open_supervisor(
            [ChildSpec("a", _forever), ChildSpec("k", interrupter)], telemetry=telemetry
        ):
            await trio.sleep(10)  # the error ends it at once; if lost, no hang
    (shutdown,) = events
    assert shutdown.metadata["cause"] == "interrupt"
    assert shutdown.metadata["order"] == ("a",)


async def test_a_system_exit_raised_by_a_handler_in_the_supervisors_task_wins() -> None:
    # a legacy handler runs in the supervisor's own task for ChildRestarted; a
    # BaseException from it gets the same rule as a child's: ordered stop, re-raised
    controls = Controls()

    def handler(event: SupervisionEvent) -> None:
        if isinstance(event, ChildRestarted):
            raise SystemExit(3)

    with pytest.raises(SystemExit) as raised:
        async with open_supervisor(
            [ChildSpec("a", controls.child("a")), ChildSpec("b", controls.child("b"))],
            handlers=[handler],
        ):
            await trio.testing.wait_all_tasks_blocked()
            controls.tell("a", "crash")
            await trio.sleep(10)  # the error ends it at once; if lost, no hang
    assert raised.value.code == 3
    assert controls.running == set()


async def test_run_hands_back_the_callers_cancellation_bare() -> None:
    sup = Supervisor([ChildSpec("a", _forever)])
    seen: list[BaseException] = []

    async def runner(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(None)
            try:
                await sup.run()
            except BaseException as exc:
                seen.append(exc)
                raise
        assert scope.cancelled_caught

    async with trio.open_nursery() as nursery:
        await nursery.start(runner)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(seen) == 1 and type(seen[0]) is trio.Cancelled


def test_the_first_leaf_of_a_nested_group() -> None:
    from trio_foundation.supervision._supervisor import _first_leaf

    leaf = ValueError("leaf")
    group = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [leaf]), KeyError("k")])
    assert _first_leaf(group) is leaf


class _FailsOnRestart:
    """A service that starts once, then crashes; every later start fails."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.runs += 1
        if self.runs > 1:
            raise RuntimeError(f"start {self.runs} failed")
        task_status.started("h")
        await trio.lowlevel.checkpoint()
        raise RuntimeError("crashed")


async def test_a_transient_service_whose_restart_fails_is_retried_as_abnormal() -> None:
    # OTP retries a failed restart as a fresh abnormal exit: a transient child is
    # restarted again, and the second restart exceeds intensity 1
    service = _FailsOnRestart()
    with pytest.raises(SupervisorEscalation) as raised:
        async with open_supervisor([ChildSpec("svc", service, restart="transient")]):
            await trio.sleep(10)  # the error ends it at once; if lost, no hang
    assert service.runs == 2
    assert [str(c) for c in raised.value.causes] == ["crashed", "start 2 failed"]


class _ReadyOnce:
    """A service that reports ready on its first run only; records what its context
    said when each run ended."""

    def __init__(self) -> None:
        self.runs = 0
        self.stop_requested: list[bool] = []

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.runs += 1
        if self.runs == 1:
            task_status.started("h")
        try:
            await trio.sleep_forever()
        finally:
            self.stop_requested.append(current_child().stop_requested)


async def test_an_abandoned_restart_is_stopped_and_its_child_off_the_books() -> None:
    service = _ReadyOnce()
    async with open_supervisor([ChildSpec("svc", service)]) as sup:
        await sup.terminate_child("svc")
        with trio.move_on_after(0.01):
            await sup.restart_child("svc")
        # at once, before the abandoned run has even unwound
        assert [(i.id, i.state, i.handle) for i in sup.which_children()] == [
            ("svc", "stopped", None)
        ]
        await trio.testing.wait_all_tasks_blocked()
        assert service.stop_requested == [True, True]
        assert service.runs == 2


class _Fails:
    """A service whose start raises."""

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.lowlevel.checkpoint()
        raise RuntimeError("no")


class _Slow:
    """A service that reports ready after 10 s."""

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(10)
        task_status.started(None)
        await trio.sleep_forever()


async def test_failed_and_late_starts_are_reported_as_abnormal_exits(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen: list[SupervisionEvent] = []
    telemetry = Telemetry(slow_handler=None)
    started: list[Event] = []
    telemetry.attach("starts", (START,), started.append)
    async with open_supervisor(
        [ChildSpec("ok", _ReadyOnce())], handlers=[seen.append], name="s", telemetry=telemetry
    ) as sup:
        assert [e.metadata["child_id"] for e in started] == ["ok"]
        with pytest.raises(ChildStartError):
            await sup.start_child(ChildSpec("bad", _Fails()))
        with pytest.raises(ChildStartError):
            await sup.start_child(ChildSpec("late", _Slow(), start_timeout=1))
        assert [i.id for i in sup.which_children()] == ["ok"]
    exits = [e for e in seen if isinstance(e, ChildExited)]
    # the late one is stopped like any child (a shutdown exit), then reported
    assert [(e.supervisor, e.child_id, e.reason) for e in exits[:3]] == [
        ("s", "bad", "abnormal"),
        ("s", "late", "shutdown"),
        ("s", "late", "abnormal"),
    ]
    assert str(exits[0].exception) == "no" and exits[2].exception is None


async def test_a_failed_restart_child_leaves_the_child_stopped() -> None:
    class FailsAfterFirst:
        def __init__(self) -> None:
            self.runs = 0

        async def run(
            self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
        ) -> None:
            self.runs += 1
            if self.runs > 1:
                raise RuntimeError("no")
            task_status.started("h")
            await trio.sleep_forever()

    async with open_supervisor([ChildSpec("svc", FailsAfterFirst())]) as sup:
        await sup.terminate_child("svc")
        with pytest.raises(ChildStartError):
            await sup.restart_child("svc")
        assert [(i.id, i.state, i.handle) for i in sup.which_children()] == [
            ("svc", "stopped", None)
        ]


async def test_an_interrupting_childs_exit_is_abnormal_with_its_exception() -> None:
    seen: list[SupervisionEvent] = []

    async def interrupter() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        async with open_supervisor([ChildSpec("k", interrupter)], handlers=[seen.append]):
            await trio.sleep(10)  # the error ends it at once; if lost, no hang
    exits = [(e.child_id, e.reason, type(e.exception)) for e in seen if isinstance(e, ChildExited)]
    assert exits == [("k", "abnormal", KeyboardInterrupt)]


async def test_the_base_supervisors_defaults_are_otps() -> None:
    controls = Controls()
    sup = _SupervisorBase([ChildSpec("a", controls.child("a"))])
    with pytest.raises(SupervisorEscalation) as raised:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(sup.run)
                await trio.testing.wait_all_tasks_blocked()
                controls.tell("a", "crash")
                await trio.testing.wait_all_tasks_blocked()
                controls.tell("a", "crash")
        except* SupervisorEscalation as group:
            raise group.exceptions[0] from None
    assert (raised.value.intensity, raised.value.period) == (1, 5.0)


def test_a_handler_that_is_not_callable_is_named() -> None:
    with pytest.raises(TypeError) as raised:
        Supervisor([], handlers=[42])  # type: ignore[list-item]
    assert str(raised.value) == "handlers must be callables, got 42"


async def test_a_shutdown_nobody_listened_to_when_it_began_is_not_reported() -> None:
    # a listener attached during the shutdown (by a child's cleanup) does not get a
    # shutdown event whose start was never measured
    telemetry = Telemetry(slow_handler=None)
    events: list[Event] = []

    async def attaches_on_stop() -> None:
        try:
            await trio.sleep_forever()
        finally:
            telemetry.attach("late", (SHUTDOWN,), events.append)

    async with open_supervisor([ChildSpec("a", attaches_on_stop)], telemetry=telemetry):
        await trio.testing.wait_all_tasks_blocked()
    assert events == []


async def test_rest_for_one_leaves_the_children_before_running() -> None:
    controls = Controls()
    specs = [ChildSpec(cid, controls.child(cid)) for cid in "aXc"]
    async with open_supervisor(specs, strategy="rest_for_one", intensity=5) as sup:
        await trio.testing.wait_all_tasks_blocked()
        controls.tell("X", "crash")
        await trio.testing.wait_all_tasks_blocked()
        assert dict(controls.starts) == {"a": 1, "X": 2, "c": 2}
        assert ("stop", "a") not in controls.log
        assert [(i.id, i.state) for i in sup.which_children()] == [
            ("a", "running"),
            ("X", "running"),
            ("c", "running"),
        ]


async def test_a_service_start_is_reported_to_a_telemetry_listener() -> None:
    telemetry = Telemetry(slow_handler=None)
    events: list[Event] = []
    telemetry.attach("starts", (START,), events.append)
    async with open_supervisor(
        [ChildSpec("w", _forever), ChildSpec("svc", _ReadyOnce())], name="s", telemetry=telemetry
    ):
        pass
    assert [(e.metadata["supervisor"], e.metadata["child_id"]) for e in events] == [
        ("s", "w"),
        ("s", "svc"),
    ]
    assert [e.measurements for e in events] == [{"restarts": 0}, {"restarts": 0}]
