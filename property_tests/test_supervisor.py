"""Stateful test: the real Supervisor against a small reference model of OTP semantics.

The real supervisor runs in a live trio run in *guest mode* (``tests/trio_guest.py``:
``start_guest_run`` with a queue as ``run_sync_soon_threadsafe`` and ``MockClock(rate=0)``);
every rule schedules its action inside that run and pumps the queue until
``wait_all_tasks_blocked`` has returned, so the supervisor has reacted completely before
the invariants are checked.
Children are controllable: each waits for the test to make it crash (raise) or return.

Rules never use preconditions: once the supervisor is down only no-ops remain, and a
filtered rule choice would make Hypothesis give up on the example.
Rules are named after the TLA+ actions of ``specs/Supervisor.tla`` (ChildCrashes,
ChildExitsNormally, TerminateChild, RestartChild, DeleteChild, Tick, Shutdown), and the
invariants after its invariants (TypeOK, RestartsOnlyPerPolicy, IntensityBound,
OrderedShutdown, NoChildAfterSupervisorDown). ``StartChild`` goes beyond the spec.

Telemetry: every supervisor runs with a :class:`Telemetry` carrying hostile handlers — one
that raises (detached after three failures), one that calls back into the supervisor's
sync API and emits a nested event, and an async one that calls the supervisor's async
API (which takes the supervisor's lock) on every exit — next to a recorder. The model
invariants must hold all the same (a handler can neither break nor deadlock the
supervisor), the recorder must see exactly the legacy events in the same order, the
nested emits must all be delivered, and each ``supervisor.shutdown`` event must name
the children in the order they were stopped.

The broken variant counts the intensity per child, as the closest Python peer does;
``test_per_child_intensity_is_caught`` asserts that Hypothesis finds a failure.
"""

from __future__ import annotations

import collections

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from trio_guest import GuestRun

from trio_foundation.supervision import (
    ChildExited,
    ChildRestarted,
    ChildSpec,
    SupervisionEvent,
    SupervisorEscalation,
)
from trio_foundation.supervision._supervisor import _SupervisorBase
from trio_foundation.supervision._telemetry import EVENTS, SHUTDOWN
from trio_foundation.telemetry import Event, Telemetry

RESTART_TYPES = ("permanent", "transient", "temporary")


class Crash(Exception):
    pass


# ----------------------------------------------------------------------- reference model


@attrs.define
class ModelChild:
    id: str
    restart: str
    state: str = "running"  # "running" | "stopped"
    restarts: int = 0


@attrs.define
class ReferenceSupervisor:
    """OTP supervisor semantics, as small as it gets (no tasks, no time source)."""

    strategy: str
    intensity: int
    period: float
    children: list[ModelChild]
    now: float = 0.0
    window: list[float] = attrs.Factory(list)  # restart times, per supervisor
    running: bool = True
    escalated: bool = False
    last_restarted: set[str] = attrs.Factory(set)

    def find(self, cid: str) -> ModelChild:
        return next(child for child in self.children if child.id == cid)

    def exit(self, cid: str, reason: str) -> None:
        child = self.find(cid)
        child.state = "stopped"
        self.last_restarted = set()
        if not (
            child.restart == "permanent" or (child.restart == "transient" and reason == "abnormal")
        ):
            if child.restart == "temporary":
                self.children.remove(child)
            return
        # OTP's supervisor.erl keeps the restarts R with R >= Now - Period.
        self.window = [t for t in [*self.window, self.now] if self.now - t <= self.period]
        if len(self.window) > self.intensity:
            for other in self.children:
                other.state = "stopped"
            self.running = False
            self.escalated = True
            return
        index = self.children.index(child)
        if self.strategy == "one_for_one":
            scope = [child]
        elif self.strategy == "one_for_all":
            scope = list(self.children)
        else:
            scope = self.children[index:]
        for other in scope:
            if other is not child and other.restart == "temporary":
                self.children.remove(other)
        for other in scope:
            if other in self.children:
                other.state = "running"
                other.restarts += 1
                self.last_restarted.add(other.id)

    def terminate(self, cid: str) -> None:
        child = self.find(cid)
        child.state = "stopped"
        if child.restart == "temporary":
            self.children.remove(child)

    def restart(self, cid: str) -> None:
        self.find(cid).state = "running"

    def delete(self, cid: str) -> None:
        self.children.remove(self.find(cid))

    def start(self, cid: str, restart: str) -> None:
        self.children.append(ModelChild(cid, restart))

    def shutdown(self) -> None:
        for child in self.children:
            child.state = "stopped"
        self.running = False


# ------------------------------------------------------------------------- state machine


class SupervisorMachine(RuleBasedStateMachine):
    """The real supervisor next to the reference model."""

    supervisor_class: type[_SupervisorBase] = _SupervisorBase
    examples = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.clock = trio.testing.MockClock(rate=0)
        self.driver = GuestRun(self.clock)
        self.events: list[tuple[float, SupervisionEvent]] = []
        self.live: set[str] = set()
        self.gates: dict[str, trio.Event] = {}
        self.actions: dict[str, str] = {}
        self.starts: collections.Counter[str] = collections.Counter()
        self.manual_starts: collections.Counter[str] = collections.Counter()
        self.escalation: SupervisorEscalation | None = None
        self.sup: _SupervisorBase | None = None
        self.model: ReferenceSupervisor | None = None
        self.next_id = 0
        self.seen_escalation = False
        self.seen_strategy_restart = False
        self.telemetry = Telemetry(slow_handler=None, max_failures=3)
        self.seen: list[Event] = []
        self.nested_sent = 0
        self.nested_seen = 0
        self.callbacks_done = 0
        self.telemetry.attach("recorder", EVENTS, self.seen.append)
        self.telemetry.attach("raises", EVENTS, self.hostile_raise)
        self.telemetry.attach("calls_back", EVENTS, self.hostile_call_back)
        self.telemetry.attach("nested", "hostile.nested", self.count_nested)

    # ------------------------------------------------------------------ hostile handlers

    def hostile_raise(self, event: Event) -> None:
        raise RuntimeError(f"hostile handler on {event.name}")

    def hostile_call_back(self, event: Event) -> None:
        assert self.sup is not None
        self.sup.which_children()
        self.sup.count_children()
        self.nested_sent += 1
        self.telemetry.emit("hostile.nested", {"n": 1}, {"of": event.name})

    def count_nested(self, event: Event) -> None:
        self.nested_seen += 1

    async def hostile_async(self, event: Event) -> None:
        assert self.sup is not None
        try:  # takes the supervisor's lock: deadlocks if run inside the supervisor's task
            await self.sup.delete_child("no such child")
        except (LookupError, RuntimeError):
            pass
        self.callbacks_done += 1

    # --------------------------------------------------------------- controlled children

    def spec(self, cid: str, restart: str) -> ChildSpec:
        async def child() -> None:
            self.starts[cid] += 1
            self.live.add(cid)
            gate = self.gates[cid] = trio.Event()
            try:
                await gate.wait()
                if self.actions.pop(cid) == "crash":
                    raise Crash(cid)
            finally:
                self.live.discard(cid)

        return ChildSpec(cid, child, restart=restart)  # type: ignore[arg-type]

    def record(self, event: SupervisionEvent) -> None:
        self.events.append((trio.current_time(), event))

    def tell(self, cid: str, action: str) -> None:
        async def go() -> None:
            self.actions[cid] = action
            self.gates[cid].set()

        self.driver.do(go)

    # ----------------------------------------------------------------------------- rules

    @initialize(
        strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
        restarts=st.lists(st.sampled_from(RESTART_TYPES), min_size=1, max_size=4),
        intensity=st.integers(0, 3),
        period=st.sampled_from([1.0, 2.0, 5.0]),
    )
    def start_supervisor(
        self, strategy: str, restarts: list[str], intensity: int, period: float
    ) -> None:
        ids = [f"c{i}" for i in range(len(restarts))]
        self.next_id = len(ids)
        self.sup = self.supervisor_class(
            [self.spec(cid, r) for cid, r in zip(ids, restarts, strict=True)],
            strategy=strategy,  # type: ignore[arg-type]
            intensity=intensity,
            period=period,
            handlers=[self.record],
            telemetry=self.telemetry,
        )
        self.model = ReferenceSupervisor(
            strategy,
            intensity,
            period,
            [ModelChild(cid, r) for cid, r in zip(ids, restarts, strict=True)],
        )
        sup = self.sup

        async def run() -> None:
            try:
                await sup.run()
            except SupervisorEscalation as exc:
                self.escalation = exc

        async def hostile() -> None:
            async with self.telemetry.attach_async(
                "async_calls_back", "supervisor.child.exit", self.hostile_async
            ):
                await trio.sleep_forever()

        async def launch() -> None:
            assert self.driver.nursery is not None
            self.driver.nursery.start_soon(hostile)
            await trio.testing.wait_all_tasks_blocked()
            self.driver.nursery.start_soon(run)

        self.driver.do(launch)

    def ids_in(self, state: str) -> list[str]:
        assert self.model is not None
        return [c.id for c in self.model.children if c.state == state]

    def pick(self, state: str, index: int) -> str:
        ids = self.ids_in(state)
        return ids[index % len(ids)]

    def is_up(self) -> bool:
        return self.model is not None and self.model.running

    @rule(index=st.integers(0, 7))
    def ChildCrashes(self, index: int) -> None:
        if not (self.is_up() and self.ids_in("running")):
            return
        self.exit(self.pick("running", index), "abnormal")

    @rule(index=st.integers(0, 7))
    def ChildExitsNormally(self, index: int) -> None:
        if not (self.is_up() and self.ids_in("running")):
            return
        self.exit(self.pick("running", index), "normal")

    def exit(self, cid: str, reason: str) -> None:
        assert self.model is not None
        mark = len(self.events)
        order = self.start_order()
        self.tell(cid, "crash" if reason == "abnormal" else "return")
        self.model.exit(cid, reason)
        assert (self.escalation is not None) == self.model.escalated, (
            f"IntensityBound violated: {reason} exit of {cid}: supervisor escalated="
            f"{self.escalation is not None}, OTP escalates={self.model.escalated}"
        )
        restarted = {e.child_id for _, e in self.events[mark:] if isinstance(e, ChildRestarted)}
        assert restarted == self.model.last_restarted, (
            f"RestartsOnlyPerPolicy violated: {reason} exit of {cid} restarted "
            f"{sorted(restarted)}, OTP restarts {sorted(self.model.last_restarted)}"
        )
        if self.model.escalated:
            self.seen_escalation = True
            self.check_shutdown_event(mark, "escalation")
        self.check_stop_order(mark, order)  # escalation, or others taken along by a strategy
        if len(restarted) > 1:
            self.seen_strategy_restart = True

    @rule(index=st.integers(0, 7))
    def TerminateChild(self, index: int) -> None:
        if not (self.is_up() and self.ids_in("running")):
            return
        assert self.sup is not None and self.model is not None
        cid = self.pick("running", index)
        sup = self.sup
        self.driver.do(lambda: sup.terminate_child(cid))
        self.model.terminate(cid)

    @rule(index=st.integers(0, 7))
    def RestartChild(self, index: int) -> None:
        if not (self.is_up() and self.ids_in("stopped")):
            return
        assert self.sup is not None and self.model is not None
        cid = self.pick("stopped", index)
        sup = self.sup
        self.driver.do(lambda: sup.restart_child(cid))
        self.model.restart(cid)
        self.manual_starts[cid] += 1

    @rule(index=st.integers(0, 7))
    def DeleteChild(self, index: int) -> None:
        if not (self.is_up() and self.ids_in("stopped")):
            return
        assert self.sup is not None and self.model is not None
        cid = self.pick("stopped", index)
        sup = self.sup
        self.driver.do(lambda: sup.delete_child(cid))
        self.model.delete(cid)

    @rule(restart=st.sampled_from(RESTART_TYPES))
    def StartChild(self, restart: str) -> None:
        if not (self.is_up() and self.model is not None and len(self.model.children) < 6):
            return
        assert self.sup is not None and self.model is not None
        cid = f"c{self.next_id}"
        self.next_id += 1
        spec = self.spec(cid, restart)
        sup = self.sup
        self.driver.do(lambda: sup.start_child(spec))
        self.model.start(cid, restart)

    @rule(dt=st.sampled_from([0.25, 1.0, 2.0, 5.0]))
    def Tick(self, dt: float) -> None:
        assert self.model is not None
        self.clock.jump(dt)
        self.model.now += dt

        async def nothing() -> None:
            await trio.lowlevel.checkpoint()

        self.driver.do(nothing)

    @rule()
    def Shutdown(self) -> None:
        if not self.is_up():
            return
        assert self.sup is not None and self.model is not None
        mark = len(self.events)
        order = self.start_order()
        self.driver.do(self.sup.aclose)
        self.model.shutdown()
        self.check_stop_order(mark, order)
        self.check_shutdown_event(mark, "shutdown")

    def start_order(self) -> list[str]:
        assert self.sup is not None
        return [c.id for c in self.sup.which_children()]

    def check_stop_order(self, mark: int, order: list[str]) -> None:
        """OrderedShutdown: the supervisor stopped children in reverse start order."""
        stopped = [
            e.child_id
            for _, e in self.events[mark:]
            if isinstance(e, ChildExited) and e.reason == "shutdown"
        ]
        positions = [order.index(cid) for cid in stopped]
        assert positions == sorted(positions, reverse=True), (
            f"OrderedShutdown violated: stopped {stopped}, start order {order}"
        )

    def check_shutdown_event(self, mark: int, cause: str) -> None:
        """The ``supervisor.shutdown`` event names the stopped children in stop order."""
        stopped = tuple(
            e.child_id
            for _, e in self.events[mark:]
            if isinstance(e, ChildExited) and e.reason == "shutdown"
        )
        shutdowns = [e for e in self.seen if e.name == SHUTDOWN]
        assert shutdowns, "telemetry: no supervisor.shutdown event"
        last = shutdowns[-1]
        assert last.metadata["cause"] == cause, last
        assert last.metadata["order"] == stopped, (
            f"telemetry: shutdown order {last.metadata['order']} != stopped {stopped}"
        )
        assert len(last.metadata["durations"]) == len(stopped)
        assert last.measurements["children"] == len(stopped)

    # ------------------------------------------------------------------------ invariants

    @invariant()
    def telemetry_agrees(self) -> None:
        """The telemetry saw the legacy events, in order; hostile handlers broke nothing."""
        legacy = [(type(e).__name__, e.child_id) for _, e in self.events]
        names = {
            "supervisor.child.start": "ChildStarted",
            "supervisor.child.exit": "ChildExited",
            "supervisor.child.restart": "ChildRestarted",
            "supervisor.escalate": "Escalated",
        }
        seen = [(names[e.name], e.metadata["child_id"]) for e in self.seen if e.name in names]
        assert seen == legacy, f"telemetry events {seen} != handler events {legacy}"
        assert self.nested_seen == self.nested_sent, "a nested emit was lost"
        assert self.telemetry.statistics().dropped == 0
        exits = sum(1 for e in self.seen if e.name == "supervisor.child.exit")
        assert self.callbacks_done == exits, (
            f"the async handler finished {self.callbacks_done} of {exits} calls"
        )

    @invariant()
    def TypeOK(self) -> None:
        if self.sup is None:
            return
        infos = self.sup.which_children()
        assert len({i.id for i in infos}) == len(infos), "TypeOK violated: duplicate ids"
        assert all(i.state in ("running", "stopped") for i in infos), "TypeOK violated"

    @invariant()
    def RestartsOnlyPerPolicy(self) -> None:
        """The real child list, states and restart counts are the reference model's."""
        if self.sup is None or self.model is None:
            return
        real = [(i.id, i.state, i.restarts) for i in self.sup.which_children()]
        model = [(c.id, c.state, c.restarts) for c in self.model.children]
        assert real == model, f"RestartsOnlyPerPolicy violated: real {real} != OTP {model}"
        for child in self.model.children:
            expected = 1 + child.restarts + self.manual_starts[child.id]
            assert self.starts[child.id] == expected, (
                f"RestartsOnlyPerPolicy violated: {child.id} started {self.starts[child.id]} "
                f"times, expected {expected}"
            )

    @invariant()
    def IntensityBound(self) -> None:
        """While the supervisor runs, at most `intensity` restarts lie within the period."""
        if self.sup is None or self.model is None:
            return
        assert self.sup.running == self.model.running, (
            f"IntensityBound violated: supervisor running={self.sup.running}, "
            f"OTP running={self.model.running} (escalated={self.model.escalated})"
        )
        assert (self.escalation is not None) == self.model.escalated, (
            "IntensityBound violated: escalation differs from OTP"
        )
        if self.sup.running:
            now = self.model.now
            decisions = [
                t
                for t, e in self.events
                if isinstance(e, ChildRestarted)
                and e.child_id == e.cause_id
                and now - t <= self.model.period
            ]
            assert len(decisions) <= self.model.intensity, (
                f"IntensityBound violated: {len(decisions)} restarts within "
                f"{self.model.period}s > intensity {self.model.intensity}"
            )

    @invariant()
    def NoChildAfterSupervisorDown(self) -> None:
        if self.sup is not None and not self.sup.running and self.model is not None:
            if not self.model.running:
                assert not self.live, f"NoChildAfterSupervisorDown violated: {self.live} run"

    @invariant()
    def escalation_carries_the_child_and_causes(self) -> None:
        if self.escalation is not None:
            assert self.escalation.child_id in self.starts
            assert all(isinstance(c, Crash) for c in self.escalation.causes)

    def teardown(self) -> None:
        self.driver.close()
        assert not self.live, "a child outlived the trio run"


class _PerChildIntensitySupervisor(_SupervisorBase):
    """BROKEN on purpose: counts restart intensity per child (as the peer library does)."""

    def _intensity_key(self, child_id: str) -> str | None:
        return child_id


class PerChildIntensityMachine(SupervisorMachine):
    supervisor_class = _PerChildIntensitySupervisor


TestSupervisorAgainstOTP = SupervisorMachine.TestCase
TestSupervisorAgainstOTP.settings = settings(
    settings.default,
    stateful_step_count=60,
    suppress_health_check=[HealthCheck.too_slow],
)


class _BothSeen(Exception):
    """Raised to end the reachability search early."""


def test_reachability() -> None:
    """The interesting states happen: an escalation, and a multi-child strategy restart."""
    seen = {"escalation": False, "strategy": False}

    class Probe(SupervisorMachine):
        def teardown(self) -> None:
            seen["escalation"] |= self.seen_escalation
            seen["strategy"] |= self.seen_strategy_restart
            super().teardown()
            if all(seen.values()):
                raise _BothSeen

    with pytest.raises(_BothSeen):
        run_state_machine_as_test(
            Probe,
            settings=settings(
                max_examples=1000,
                stateful_step_count=30,
                deadline=None,
                phases=[Phase.generate],
                database=None,
            ),
        )


#: one search: up to this many machine runs of up to 30 steps (fresh seed, no database)
PER_CHILD_SEARCH_EXAMPLES = 2000


def search_per_child_intensity() -> tuple[str | None, int]:
    """One fresh search for the broken variant, exactly what CI runs.

    Returns the violation's message (``None`` if the search missed) and the number
    of machine runs it took. ``benchmarks/catch_rates_supervisor.py`` measures the
    catch rate over many such searches.
    """
    PerChildIntensityMachine.examples = 0
    try:
        run_state_machine_as_test(
            PerChildIntensityMachine,
            settings=settings(
                max_examples=PER_CHILD_SEARCH_EXAMPLES,
                stateful_step_count=30,
                deadline=None,
                phases=[Phase.generate],  # finding it is the point; shrinking only costs time
                report_multiple_bugs=False,
                database=None,
                derandomize=False,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    except AssertionError as exc:
        return str(exc), PerChildIntensityMachine.examples
    return None, PerChildIntensityMachine.examples


def test_per_child_intensity_is_caught() -> None:
    """The broken variant must fail an invariant in one fresh search."""
    found, runs = search_per_child_intensity()
    assert found is not None, f"a fresh search of {runs} machine runs missed the broken variant"
    assert "IntensityBound violated" in found, found
    print(f"broken variant caught after {runs} machine runs")
