"""Supervisor: construction checks, the restart table, intensity, shutdown, child API."""

from __future__ import annotations

import functools
import logging
import random
from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation import FoundationError
from trio_foundation.supervision import (
    Backoff,
    ChildExited,
    ChildRestarted,
    ChildSpec,
    ChildStarted,
    ChildStartError,
    Escalated,
    SupervisionEvent,
    Supervisor,
    SupervisorEscalation,
    current_child,
    open_supervisor,
)
from trio_foundation.supervision.testing import ChildCrash as Crash
from trio_foundation.supervision.testing import ControlledChildren as Controls

settle = trio.testing.wait_all_tasks_blocked


async def forever() -> None:
    await trio.sleep_forever()


# --------------------------------------------------------------------------- construction


def test_duplicate_child_id_is_refused() -> None:
    with pytest.raises(ValueError, match="duplicate child id 'a'"):
        Supervisor([ChildSpec("a", forever), ChildSpec("a", forever)])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"intensity": -1}, ValueError, "intensity must be >= 0, got -1"),
        ({"intensity": 1.5}, TypeError, "intensity must be an int"),
        ({"period": -1}, ValueError, "period must be > 0, got -1"),
        ({"period": 0}, ValueError, "period must be > 0, got 0"),
        ({"period": "5"}, TypeError, "period must be a number"),
        ({"strategy": "one_for_some"}, ValueError, "strategy must be one of"),
        ({"auto_shutdown": "sometimes"}, ValueError, "auto_shutdown must be one of"),
        ({"backoff": 0.1}, TypeError, "backoff must be a Backoff"),
    ],
)
def test_bad_supervisor_parameters_are_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Supervisor([ChildSpec("a", forever)], **kwargs)


def test_child_that_is_not_an_async_callable_is_refused() -> None:
    def sync() -> None: ...

    with pytest.raises(TypeError, match="async callable"):
        ChildSpec("a", sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async callable"):
        ChildSpec("a", 42)  # type: ignore[arg-type]


def test_async_partials_and_async_call_objects_are_accepted() -> None:
    async def work(n: int) -> None: ...

    class Callable:
        async def __call__(self) -> None: ...

    ChildSpec("a", functools.partial(work, 1))
    ChildSpec("b", Callable())
    ChildSpec("c", work, args=(1,))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"id": 1}, TypeError, "child id must be a str"),
        ({"id": ""}, ValueError, "child id must not be empty"),
        ({"restart": "sometimes"}, ValueError, "restart must be one of"),
        ({"shutdown": -1}, ValueError, "shutdown must be >= 0, got -1"),
        ({"shutdown": "later"}, TypeError, "shutdown must be a number"),
        ({"significant": True}, ValueError, "permanent child cannot be significant"),
        ({"start_timeout": 0}, ValueError, "start_timeout must be > 0"),
    ],
)
def test_bad_child_specs_are_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    fields: dict[str, Any] = {"id": "a", "start": forever, **kwargs}
    with pytest.raises(error, match=message):
        ChildSpec(**fields)


def test_significant_child_needs_auto_shutdown() -> None:
    spec = ChildSpec("a", forever, restart="transient", significant=True)
    with pytest.raises(ValueError, match="significant but auto_shutdown is 'never'"):
        Supervisor([spec])
    Supervisor([spec], auto_shutdown="any_significant")


def test_children_must_be_specs() -> None:
    with pytest.raises(TypeError, match="ChildSpec instances"):
        Supervisor([forever])  # type: ignore[list-item]


def test_constructor_spawns_nothing() -> None:
    sup = Supervisor([ChildSpec("a", forever)])
    assert not sup.running
    assert [info.state for info in sup.which_children()] == ["stopped"]


# ------------------------------------------------------------------------ the restart table
#
# Children: a (permanent), X (the subject, restart type varies), c (permanent),
# d (temporary). X exits normally, abnormally (raises) or is shut down (terminate_child).
# The expected set of children that run again, and whether d is forgotten, are the table
# in docs/supervision.md.

RESTARTS_AFTER = {
    ("permanent", "normal"): True,
    ("permanent", "abnormal"): True,
    ("permanent", "shutdown"): False,
    ("transient", "normal"): False,
    ("transient", "abnormal"): True,
    ("transient", "shutdown"): False,
    ("temporary", "normal"): False,
    ("temporary", "abnormal"): False,
    ("temporary", "shutdown"): False,
}
TAKEN_ALONG = {"one_for_one": set(), "one_for_all": {"a", "c"}, "rest_for_one": {"c"}}


def expected_restarts(strategy: str, restart: str, reason: str) -> set[str]:
    if not RESTARTS_AFTER[(restart, reason)]:
        return set()
    return {"X"} | TAKEN_ALONG[strategy]


@pytest.mark.parametrize("reason", ["normal", "abnormal", "shutdown"])
@pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
async def test_restart_table(strategy: Any, restart: Any, reason: str) -> None:
    controls = Controls()
    specs = [
        ChildSpec("a", controls.child("a")),
        ChildSpec("X", controls.child("X"), restart=restart),
        ChildSpec("c", controls.child("c")),
        ChildSpec("d", controls.child("d"), restart="temporary"),
    ]
    async with open_supervisor(specs, strategy=strategy, intensity=5) as sup:
        await settle()
        if reason == "shutdown":
            await sup.terminate_child("X")
        else:
            controls.tell("X", "crash" if reason == "abnormal" else "return")
        await settle()
        restarted = {cid for cid, n in controls.starts.items() if n > 1}
        assert restarted == expected_restarts(strategy, restart, reason)
        ids = [info.id for info in sup.which_children()]
        forgotten = {"a", "X", "c", "d"} - set(ids)
        expect_forgotten: set[str] = set()
        if restart == "temporary":
            expect_forgotten.add("X")
        if restarted and strategy != "one_for_one":
            expect_forgotten.add("d")  # a temporary among the "others" is removed (OTP)
        assert forgotten == expect_forgotten
        running = {info.id for info in sup.which_children() if info.state == "running"}
        assert running == controls.running
        assert ("X" in running) == ("X" in restarted)
    assert controls.running == set()


# ------------------------------------------------------------------ intensity and escalation


async def test_escalation_after_intensity_exceeded(autojump_clock: trio.abc.Clock) -> None:
    controls = Controls()
    specs = [ChildSpec(cid, controls.child(cid)) for cid in "abc"]
    with pytest.raises(SupervisorEscalation) as info:
        async with open_supervisor(specs, intensity=2, period=10) as sup:
            await settle()
            controls.tell("a", "crash")
            await settle()
            controls.tell("b", "crash")
            await settle()
            assert sup.running  # 2 restarts within 10 s: allowed
            controls.tell("a", "crash")
            await settle()
            pytest.fail("the third restart within the period must escalate")
    error = info.value
    assert isinstance(error, FoundationError)
    assert error.child_id == "a"
    assert [str(cause) for cause in error.causes] == ["a", "b", "a"]
    assert all(isinstance(cause, Crash) for cause in error.causes)
    assert controls.running == set()
    assert controls.log[-2:] == [("stop", "c"), ("stop", "b")]  # reverse order


async def test_restarts_outside_the_period_do_not_count(autojump_clock: trio.abc.Clock) -> None:
    controls = Controls()
    async with open_supervisor([ChildSpec("a", controls.child("a"))], intensity=1, period=5):
        await settle()
        for _ in range(5):
            controls.tell("a", "crash")
            await settle()
            # Each restart leaves the window before the next one. A restart exactly 5 s
            # old still counts (OTP: R >= Now - Period), so wait a little longer.
            await trio.sleep(5.5)
        assert controls.starts["a"] == 6


async def test_intensity_is_counted_per_supervisor_not_per_child() -> None:
    controls = Controls()
    specs = [ChildSpec(cid, controls.child(cid)) for cid in "ab"]
    with pytest.raises(SupervisorEscalation) as info:
        async with open_supervisor(specs, intensity=1, period=60):
            await settle()
            controls.tell("a", "crash")
            await settle()
            controls.tell("b", "crash")  # per child: 1 each, allowed; per supervisor: 2 > 1
            await settle()
    assert info.value.child_id == "b"


async def test_intensity_zero_escalates_on_first_restart() -> None:
    controls = Controls()
    with pytest.raises(SupervisorEscalation):
        async with open_supervisor([ChildSpec("a", controls.child("a"))], intensity=0):
            await settle()
            controls.tell("a", "return")  # permanent: a normal exit is restarted too
            await settle()


async def test_escalation_from_run_in_a_nursery() -> None:
    controls = Controls()
    sup = Supervisor([ChildSpec("a", controls.child("a"))], intensity=0)
    with pytest.raises(SupervisorEscalation):
        await_run = sup.run

        async def crash_soon() -> None:
            await settle()
            controls.tell("a", "crash")

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(await_run)
                nursery.start_soon(crash_soon)
        except* SupervisorEscalation as group:
            raise group.exceptions[0] from None
    assert sup.escalated and not sup.running


# ---------------------------------------------------------------------------- shutdown


async def test_shutdown_is_reverse_order_and_nothing_outlives() -> None:
    controls = Controls()
    specs = [ChildSpec(cid, controls.child(cid)) for cid in "abcd"]
    async with open_supervisor(specs) as sup:
        await settle()
        assert controls.running == set("abcd")
    assert not sup.running
    assert controls.running == set()
    assert [entry for entry in controls.log if entry[0] == "stop"] == [
        ("stop", cid) for cid in "dcba"
    ]


async def test_cancelling_the_supervisor_still_stops_in_reverse_order() -> None:
    controls = Controls()
    specs = [ChildSpec(cid, controls.child(cid)) for cid in "abc"]
    with trio.move_on_after(1) as scope:
        async with open_supervisor(specs):
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert controls.running == set()
    assert [entry for entry in controls.log if entry[0] == "stop"] == [
        ("stop", cid) for cid in "cba"
    ]


async def test_grace_period_for_a_child_that_traps_stop(autojump_clock: trio.abc.Clock) -> None:
    events: list[tuple[str, float]] = []

    async def polite() -> None:
        stop = current_child().trap_stop()
        await stop.wait()
        events.append(("asked", trio.current_time()))
        await trio.sleep(1)  # cleanup within the grace period
        events.append(("clean", trio.current_time()))

    async def stubborn() -> None:
        current_child().trap_stop()
        try:
            await trio.sleep_forever()
        finally:
            events.append(("cancelled", trio.current_time()))

    async def oblivious() -> None:
        try:
            await trio.sleep_forever()
        finally:
            events.append(("oblivious", trio.current_time()))

    specs = [
        ChildSpec("polite", polite, shutdown=5),
        ChildSpec("stubborn", stubborn, shutdown=2),
        ChildSpec("oblivious", oblivious, shutdown=30),
        ChildSpec("brutal", stubborn, shutdown="brutal_kill"),
    ]
    async with open_supervisor(specs):
        await settle()
    # reverse order: brutal (at once), oblivious (at once), stubborn (after 2 s), polite.
    assert events == [
        ("cancelled", 0.0),
        ("oblivious", 0.0),
        ("cancelled", 2.0),
        ("asked", 2.0),
        ("clean", 3.0),
    ]


def test_current_child_outside_a_child() -> None:
    with pytest.raises(RuntimeError, match="outside a supervised child"):
        current_child()


async def test_stop_requested_flag_and_child_id() -> None:
    seen: list[tuple[str, bool]] = []

    async def child() -> None:
        ctx = current_child()
        seen.append((ctx.id, ctx.stop_requested))
        try:
            await trio.sleep_forever()
        finally:
            seen.append((ctx.id, ctx.stop_requested))

    async with open_supervisor([ChildSpec("w", child)]):
        await settle()
    assert seen == [("w", False), ("w", True)]


# ------------------------------------------------------------------------- auto_shutdown


async def test_auto_shutdown_any_significant() -> None:
    controls = Controls()
    specs = [
        ChildSpec("a", controls.child("a")),
        ChildSpec("s", controls.child("s"), restart="transient", significant=True),
        ChildSpec("t", controls.child("t"), restart="temporary", significant=True),
    ]
    async with open_supervisor(specs, auto_shutdown="any_significant") as sup:
        await settle()
        controls.tell("s", "crash")  # transient + abnormal: restarted, no shutdown
        await settle()
        assert sup.running and controls.starts["s"] == 2
        controls.tell("s", "return")
        await settle()
        assert not sup.running
        assert controls.running == set()


async def test_auto_shutdown_all_significant() -> None:
    controls = Controls()
    specs = [
        ChildSpec("a", controls.child("a")),
        ChildSpec("s", controls.child("s"), restart="transient", significant=True),
        ChildSpec("t", controls.child("t"), restart="temporary", significant=True),
    ]
    async with open_supervisor(specs, auto_shutdown="all_significant") as sup:
        await settle()
        controls.tell("t", "crash")  # temporary: gone, but s still runs
        await settle()
        assert sup.running
        controls.tell("s", "return")
        await settle()
        assert not sup.running
        assert controls.running == set()


async def test_terminating_a_significant_child_does_not_auto_shutdown() -> None:
    controls = Controls()
    specs = [ChildSpec("s", controls.child("s"), restart="transient", significant=True)]
    async with open_supervisor(specs, auto_shutdown="any_significant") as sup:
        await settle()
        await sup.terminate_child("s")
        assert sup.running


# ----------------------------------------------------------------------------- child API


async def test_child_api() -> None:
    controls = Controls()
    specs = [ChildSpec(cid, controls.child(cid)) for cid in "ab"]
    async with open_supervisor(specs) as sup:
        await settle()
        await sup.terminate_child("a")
        assert [(i.id, i.state) for i in sup.which_children()] == [
            ("a", "stopped"),
            ("b", "running"),
        ]
        assert sup.count_children().active == 1
        with pytest.raises(RuntimeError, match="child 'b' is running; terminate it first"):
            await sup.delete_child("b")
        with pytest.raises(RuntimeError, match="child 'b' is running"):
            await sup.restart_child("b")
        await sup.restart_child("a")
        await settle()
        assert controls.starts["a"] == 2
        await sup.terminate_child("a")
        await sup.delete_child("a")
        assert [i.id for i in sup.which_children()] == ["b"]
        await sup.start_child(ChildSpec("c", controls.child("c")))
        with pytest.raises(ValueError, match="duplicate child id 'c'"):
            await sup.start_child(ChildSpec("c", forever))
        with pytest.raises(LookupError, match="no child 'zz'"):
            await sup.terminate_child("zz")
        await settle()
        assert [i.id for i in sup.which_children()] == ["b", "c"]
        assert sup.count_children().specs == 2
        # restart_child does not count toward the intensity; terminate never restarts
        assert sup.which_children()[0].restarts == 0
    with pytest.raises(RuntimeError, match="not running"):
        await sup.start_child(ChildSpec("d", forever))
    assert controls.running == set()


async def test_start_child_appends_and_stops_in_reverse() -> None:
    controls = Controls()
    async with open_supervisor([ChildSpec("a", controls.child("a"))]) as sup:
        await sup.start_child(ChildSpec("b", controls.child("b")))
        await settle()
    assert [e for e in controls.log if e[0] == "stop"] == [("stop", "b"), ("stop", "a")]


# ------------------------------------------------------------------------------- services


class Service:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(0.1)
        if self.fail:
            raise Crash(self.name)
        self.log.append(f"ready {self.name}")
        task_status.started(f"handle-{self.name}")
        try:
            await trio.sleep_forever()
        finally:
            self.log.append(f"stop {self.name}")


async def test_services_start_strictly_in_order_with_handles(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    specs = [ChildSpec(n, Service(n, log)) for n in "abc"]
    async with open_supervisor(specs) as sup:
        assert log == ["ready a", "ready b", "ready c"]
        assert [i.handle for i in sup.which_children()] == ["handle-a", "handle-b", "handle-c"]
    assert log[3:] == ["stop c", "stop b", "stop a"]


async def test_service_start_failure_stops_the_started_ones(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    specs = [
        ChildSpec("a", Service("a", log)),
        ChildSpec("b", Service("b", log)),
        ChildSpec("c", Service("c", log, fail=True)),
    ]
    with pytest.raises(ChildStartError, match="child 'c' failed to start") as info:
        async with open_supervisor(specs):
            pytest.fail("must not be reached")
    assert isinstance(info.value.cause, Crash)
    assert log == ["ready a", "ready b", "stop b", "stop a"]


async def test_service_start_timeout(autojump_clock: trio.abc.Clock) -> None:
    with pytest.raises(ChildStartError, match="did not report ready in time"):
        async with open_supervisor([ChildSpec("a", Service("a", []), start_timeout=0.05)]):
            pass


# --------------------------------------------------------------------------------- nesting


async def test_nested_supervisor_escalation_restarts_the_subtree() -> None:
    controls = Controls()
    inner = Supervisor([ChildSpec(cid, controls.child(cid)) for cid in "xy"], intensity=0)
    specs = [ChildSpec("w", controls.child("w")), ChildSpec("inner", inner)]
    with pytest.raises(SupervisorEscalation) as info:
        async with open_supervisor(specs, intensity=1, name="outer") as outer:
            await settle()
            kinds = [i.kind for i in outer.which_children()]
            assert kinds == ["worker", "supervisor"]
            assert outer.count_children().supervisors == 1
            controls.tell("x", "crash")  # inner escalates -> outer restarts inner
            await settle()
            assert controls.starts["x"] == 2 and controls.starts["y"] == 2
            assert controls.running == {"w", "x", "y"}
            controls.tell("y", "crash")  # second restart in outer's window -> outer escalates
            await settle()
    assert info.value.supervisor == "outer"
    assert info.value.child_id == "inner"
    assert isinstance(info.value.causes[0], SupervisorEscalation)
    assert controls.running == set()


async def test_cancelling_the_root_stops_the_whole_tree_in_order() -> None:
    controls = Controls()
    inner = Supervisor([ChildSpec(cid, controls.child(cid)) for cid in "xy"])
    specs = [ChildSpec("a", controls.child("a")), ChildSpec("inner", inner)]
    with trio.move_on_after(1):
        async with open_supervisor(specs):
            await trio.sleep_forever()
    assert controls.running == set()
    assert [e[1] for e in controls.log if e[0] == "stop"] == ["y", "x", "a"]


# ------------------------------------------------------------------------------- telemetry


async def test_telemetry_events_and_broken_handler(caplog: pytest.LogCaptureFixture) -> None:
    events: list[SupervisionEvent] = []

    def broken(event: SupervisionEvent) -> None:
        raise ZeroDivisionError

    controls = Controls()
    with caplog.at_level(logging.ERROR, logger="trio_foundation.supervision"):
        with pytest.raises(SupervisorEscalation):
            async with open_supervisor(
                [ChildSpec("a", controls.child("a"))],
                intensity=1,
                handlers=[broken, events.append],
                name="tele",
            ):
                await settle()
                controls.tell("a", "crash")
                await settle()
                controls.tell("a", "return")
                await settle()
    assert events[0] == ChildStarted("tele", "a")
    assert events[1] == ChildExited("tele", "a", "abnormal")
    assert isinstance(events[1], ChildExited) and isinstance(events[1].exception, Crash)
    assert events[2:4] == [ChildStarted("tele", "a"), ChildRestarted("tele", "a", "a")]
    assert events[4] == ChildExited("tele", "a", "normal")
    assert isinstance(events[5], Escalated) and events[5].child_id == "a"
    assert len(events) == 6
    assert "telemetry handler" in caplog.text


# --------------------------------------------------------------------------------- backoff


async def test_backoff_delays_restarts_with_seeded_jitter(autojump_clock: trio.abc.Clock) -> None:
    controls = Controls()
    backoff = Backoff(initial=1.0, maximum=4.0, multiplier=2.0, jitter=0.5, rng=random.Random(7))
    expected = Backoff(initial=1.0, maximum=4.0, multiplier=2.0, jitter=0.5, rng=random.Random(7))
    async with open_supervisor(
        [ChildSpec("a", controls.child("a"))], intensity=10, period=100, backoff=backoff
    ) as sup:
        await settle()
        for attempt in (1, 2, 3, 4):
            start = trio.current_time()
            controls.tell("a", "crash")
            await settle()
            while controls.starts["a"] == attempt:
                assert sup.which_children()[0].state == "restarting"
                await trio.sleep(0.001)
            delay = expected.delay(attempt)
            assert trio.current_time() - start == pytest.approx(delay, abs=0.002)
            assert delay <= 4.0 * 1.5


def test_backoff_validation() -> None:
    with pytest.raises(ValueError, match="jitter must be within"):
        Backoff(jitter=2)
    with pytest.raises(ValueError, match="maximum must be >= initial"):
        Backoff(initial=2, maximum=1)
    with pytest.raises(ValueError, match="initial must be > 0"):
        Backoff(initial=0)


async def test_run_twice_concurrently_is_refused() -> None:
    sup = Supervisor([ChildSpec("a", forever)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with pytest.raises(RuntimeError, match="already running"):
            await sup.run()
        await sup.aclose()
    assert not sup.running


async def test_a_child_cannot_terminate_itself_or_its_ancestor() -> None:
    errors: list[str] = []
    holder: dict[str, Any] = {}

    ready = trio.Event()
    tried = trio.Event()

    async def selfish() -> None:
        await ready.wait()
        try:
            await holder["outer"].terminate_child("inner")
        except RuntimeError as exc:
            errors.append(str(exc))
        tried.set()
        await trio.sleep_forever()

    inner = Supervisor([ChildSpec("selfish", selfish)])
    async with open_supervisor([ChildSpec("inner", inner)]) as outer:
        holder["outer"] = outer
        ready.set()
        await tried.wait()
        assert outer.which_children()[0].state == "running"
    assert errors == ["child 'inner' cannot terminate itself; return from it instead"]


class Flaky:
    """A service that fails to start after its first run."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        self.runs += 1
        if self.runs > 1:
            raise Crash(f"start {self.runs}")
        task_status.started(self.runs)
        await trio.sleep(1)
        raise Crash("first run")


async def test_a_failed_restart_counts_as_a_new_abnormal_exit(
    autojump_clock: trio.abc.Clock,
) -> None:
    flaky = Flaky()
    with pytest.raises(SupervisorEscalation) as info:
        async with open_supervisor([ChildSpec("f", flaky)], intensity=2, period=60):
            await trio.sleep_forever()
    assert flaky.runs == 3  # first run crashed, two restarts failed to start, escalate
    assert [str(c) for c in info.value.causes] == ["first run", "start 2", "start 3"]


async def test_service_children_through_the_child_api(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    async with open_supervisor([]) as sup:
        assert await sup.start_child(ChildSpec("s", Service("s", log))) == "handle-s"
        await sup.terminate_child("s")
        assert await sup.restart_child("s") == "handle-s"
        with pytest.raises(ChildStartError):
            await sup.start_child(ChildSpec("bad", Service("bad", log, fail=True)))
        assert [i.id for i in sup.which_children()] == ["s"]  # the failed spec is not kept
    assert log == ["ready s", "stop s", "ready s", "stop s"]


async def test_service_returning_before_ready_is_a_start_error() -> None:
    class Quitter:
        async def run(
            self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
        ) -> None:
            return

    with pytest.raises(ChildStartError, match="returned before reporting ready"):
        async with open_supervisor([ChildSpec("q", Quitter())]):
            pass


async def test_body_exception_is_unwrapped_and_children_stopped() -> None:
    controls = Controls()
    with pytest.raises(KeyError):
        async with open_supervisor([ChildSpec("a", controls.child("a"))]):
            await settle()
            raise KeyError("body")
    assert controls.running == set()


async def test_aclose_and_rerun() -> None:
    controls = Controls()
    sup = Supervisor([ChildSpec("a", controls.child("a"))])
    await sup.aclose()  # not running: nothing to do
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await settle()
            assert controls.running == {"a"}
            await sup.aclose()
        assert controls.running == set()
    assert controls.starts["a"] == 2
    assert "Supervisor(name='supervisor'" in repr(sup)


async def test_shutdown_cuts_a_backoff_short(autojump_clock: trio.abc.Clock) -> None:
    controls = Controls()
    backoff = Backoff(initial=100, maximum=100, jitter=0)
    async with open_supervisor(
        [ChildSpec("a", controls.child("a"))], backoff=backoff, intensity=5
    ) as sup:
        await settle()
        controls.tell("a", "crash")
        await trio.sleep(1)
        assert sup.which_children()[0].state == "restarting"
    assert trio.current_time() < 2  # not 100
    assert controls.starts["a"] == 1 and controls.running == set()
    assert sup.which_children()[0].state == "stopped"


async def test_cancelled_while_starting_services(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    specs = [ChildSpec(n, Service(n, log)) for n in "abc"]
    with trio.move_on_after(0.15):  # during b's start (each takes 0.1 s)
        async with open_supervisor(specs):
            pytest.fail("must not be reached")
    # The cancellation does not wait for b to become ready: b's start is cut short (it
    # is cancelled like any child), then a is stopped; c never starts.
    assert log == ["ready a", "stop a"]
    assert trio.current_time() == pytest.approx(0.15)
