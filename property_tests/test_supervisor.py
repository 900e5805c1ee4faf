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

        async def launch() -> None:
            assert self.driver.nursery is not None
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

    # ------------------------------------------------------------------------ invariants

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


def test_per_child_intensity_is_caught() -> None:
    """The broken variant must fail an invariant; if Hypothesis finds nothing, this fails."""
    PerChildIntensityMachine.examples = 0
    with pytest.raises(AssertionError, match="IntensityBound violated"):
        run_state_machine_as_test(
            PerChildIntensityMachine,
            settings=settings(
                max_examples=2000,  # typically caught within ~100; headroom against flakiness
                stateful_step_count=30,
                deadline=None,
                phases=[Phase.generate],  # finding it is the point; shrinking only costs time
                report_multiple_bugs=False,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    print(f"broken variant caught after {PerChildIntensityMachine.examples} machine runs")
