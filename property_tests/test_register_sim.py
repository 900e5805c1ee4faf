"""The ABD register under Hypothesis-chosen seeds, fault schedules and steps.

Safety: every recorded history is linearizable (``register`` model), and the
state machine at the bottom checks the replica invariants step by step.
Reachability: the searched runs do suffer faults and do complete operations, so
the properties are not vacuous. Mutation: the ``split-brain`` variant fails the
same property, and Hypothesis shrinks the failing schedule to a handful of faults.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from trio_foundation.cli.chaos import run_chaos
from trio_foundation.protocols.register import (
    INITIAL_TAG,
    AbdRegister,
    RegisterVariant,
    register_factory,
)
from trio_foundation.runtime.sim import ClientOutcome, SimConfig, Simulation
from trio_foundation.verify.history import HistoryRecorder
from trio_foundation.verify.lincheck import check_history
from trio_foundation.verify.nemesis import (
    Fault,
    FaultEvent,
    FaultSchedule,
    UniformDelay,
    schedule_to_json,
)
from trio_foundation.verify.strategies import fault_schedules, faults

OPS = 30
NODES = 3


def verdict(scenario: str, seed: int, schedule: FaultSchedule) -> str:
    run = run_chaos(scenario, seed=seed, ops=OPS, nodes=NODES, schedule=schedule)
    result = check_history(run.history, "register", timeout=10)
    return result.verdict


clusters = st.sampled_from([3, 5]).flatmap(
    lambda n: st.tuples(st.just(n), fault_schedules(n, max_faults=8, horizon=0.8))
)


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cluster=clusters)
def test_abd_register_is_linearizable(seed: int, cluster: tuple[int, FaultSchedule]) -> None:
    nodes, schedule = cluster
    run = run_chaos("register", seed=seed, ops=2 * OPS, nodes=nodes, schedule=schedule)
    result = check_history(run.history, "register", timeout=10)
    applied = sum(run.fault_counts.values())
    event(f"faults applied: {applied if applied < 3 else '3 or more'}")
    event(f"ok operations > 0: {run.statuses['ok'] > 0}")
    assert result.verdict == "linearizable", (
        f"save as SCHEDULE.json: {schedule_to_json(schedule)}\nreplay: {run.replay}"
    )


def test_faulty_runs_are_reached() -> None:
    """The searched space includes runs with crashes, partitions and completed operations."""
    crash_run = run_chaos("register", seed=1, ops=4 * OPS, faults=["crash", "partition"])
    assert crash_run.fault_counts.get("crash", 0) > 0
    assert crash_run.statuses["ok"] > 0
    assert check_history(crash_run.history, "register").verdict == "linearizable"


SPLIT_BRAIN_SEED = 0


def split_brain_fails(schedule: FaultSchedule) -> bool:
    return verdict("register-split-brain", SPLIT_BRAIN_SEED, schedule) == "not-linearizable"


def search_split_brain(*, shrink: bool = True) -> FaultSchedule | None:
    """One fresh search (random Hypothesis seed, no database) of up to 300 fault
    schedules for one that makes the split-brain register non-linearizable; the
    schedule found (shrunk if ``shrink``), or ``None``. Its catch rate is measured by
    ``python benchmarks/catch_rates_audit.py register-split-brain`` (which passes
    ``shrink=False``: shrinking starts only once a schedule was found, so it does not
    change the rate)."""
    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]
    try:
        return find(
            fault_schedules(
                NODES, max_faults=8, horizon=0.6, kinds=["partition", "crash", "pause"]
            ),
            split_brain_fails,
            settings=settings(
                max_examples=300,
                database=None,
                derandomize=False,
                deadline=None,
                phases=phases,
                suppress_health_check=list(HealthCheck),
            ),
        )
    except NoSuchExample:
        return None


def test_split_brain_is_caught_and_shrinks_to_a_short_schedule() -> None:
    assert verdict("register-split-brain", SPLIT_BRAIN_SEED, ()) == "linearizable"  # needs a fault
    # A fresh search found a failing schedule in 60 of 60 searches (2026-11-30; mean
    # 4.3 s, max 23 s, at load ~5); the 200-search figure is in docs/verification.md.
    shrunk = search_split_brain()
    assert shrunk is not None, "a fresh search of 300 schedules missed the split-brain register"
    assert 1 <= len(shrunk) <= 3, shrunk
    assert all(isinstance(ev, FaultEvent) for ev in shrunk)
    # The correct register survives the very schedule that breaks the mutant.
    assert verdict("register", SPLIT_BRAIN_SEED, shrunk) == "linearizable"


# ---------------------------------------------------------------- state machine


class RegisterCluster(RuleBasedStateMachine):
    """Hypothesis chooses each client call, fault and time step of a 3-node ABD cluster.

    Invariants checked after every step: ``TagsAreUnique`` (no tag ever carries
    two values, on any replica or in any node's storage), ``StoredTagsGrow`` (a
    node's persisted tag never decreases, across crashes too) and
    ``PersistedIsSnapshot`` (what the runtime stored is what the core says it
    persisted). At teardown the recorded history must be linearizable.
    """

    variant: RegisterVariant = "correct"

    def __init__(self) -> None:
        super().__init__()
        config = SimConfig(delay=UniformDelay(0.001, 0.05))
        self.sim = Simulation(register_factory(self.variant), nodes=NODES, seed=0, config=config)
        self.recorder = HistoryRecorder(max_events=10_000)
        # process -> (request, f, invoked at)
        self.outstanding: dict[int, tuple[int, str, float]] = {}
        self.free: list[int] = []
        self.next_process = 0
        self.next_value = 0
        self.tags: dict[Any, Any] = {}
        self.stored_tags: dict[int, Any] = {}

    def _complete(self, process: int, f: str, value: Any, outcome: ClientOutcome) -> None:
        del self.outstanding[process]
        status = outcome.status
        if status == "info" and f == "read":
            status = "fail"  # a read has no effect: unknown means "no effect"
        recorded = outcome.value if f == "read" and status == "ok" else value
        self.recorder.complete(process, status, recorded)
        event(f"{f} {status}")
        if status != "info":
            self.free.append(process)

    @precondition(lambda self: len(self.outstanding) < 4)
    @rule(node=st.integers(0, NODES - 1), write=st.booleans())
    def invoke(self, node: int, write: bool) -> None:
        if self.free:
            process = self.free.pop()
        else:
            process, self.next_process = self.next_process, self.next_process + 1
        f = "write" if write else "read"
        value = None
        if write:
            self.next_value += 1
            value = self.next_value
        self.recorder.invoke(process, f, value)

        def on_done(outcome: ClientOutcome) -> None:
            self._complete(process, f, value, outcome)

        request = self.sim.submit(node, f, value, on_done=on_done)
        self.outstanding[process] = (request, f, self.sim.now)

    @precondition(
        lambda self: any(self.sim.now - t >= 1.0 for _, _, t in self.outstanding.values())
    )
    @rule()
    def time_out(self) -> None:
        """The oldest client gives up after a second of silence: its outcome is unknown."""
        process = min(self.outstanding, key=lambda p: self.outstanding[p][2])
        request, f, _ = self.outstanding[process]
        if self.sim.abandon(request):
            self._complete(process, f, None, ClientOutcome(request, "info"))

    @rule(fault=faults(NODES, kinds=["partition", "crash", "pause", "drop", "dup", "reorder"]))
    def inject(self, fault: Fault) -> None:
        self.sim.apply_fault(fault)
        self.sim.run(until=self.sim.now)

    @rule(dt=st.sampled_from([0.01, 0.05, 0.2, 1.0]))
    def advance(self, dt: float) -> None:
        self.sim.run(until=self.sim.now + dt)

    @invariant()
    def tags_are_unique(self) -> None:
        for node in range(NODES):
            states = [self.sim.persisted(node)[1]]
            core = self.sim.core(node)
            if isinstance(core, AbdRegister):
                states.append(core.state)
            for state in states:
                if state is None:
                    continue
                seen = self.tags.setdefault(state.tag, state.value)
                assert seen == state.value, (state.tag, seen, state.value)

    @invariant()
    def stored_tags_grow(self) -> None:
        for node in range(NODES):
            has, state = self.sim.persisted(node)
            if has:
                assert state.tag >= self.stored_tags.get(node, INITIAL_TAG)
                self.stored_tags[node] = state.tag

    @invariant()
    def persisted_is_snapshot(self) -> None:
        for node in range(NODES):
            core = self.sim.core(node)
            if core is not None:
                assert self.sim.persisted(node)[1] == core.snapshot_persistent()

    def teardown(self) -> None:
        for process in sorted(self.outstanding):
            request, f, _ = self.outstanding[process]
            self.sim.abandon(request)
            self._complete(process, f, None, ClientOutcome(request, "info"))
        result = check_history(self.recorder.events, "register", timeout=10)
        assert result.verdict == "linearizable", [op.describe() for op in result.unplaceable]


RegisterCluster.TestCase.settings = settings(stateful_step_count=40, deadline=None)
test_register_cluster = RegisterCluster.TestCase


class StaleReadCluster(RegisterCluster):
    variant = "stale-read"


@pytest.mark.slow
def test_state_machine_catches_the_stale_read_mutant() -> None:
    """Fresh searches (a random seed each, no database): one search of 300 examples
    caught the stale-read register in 196 of 200 searches (98 %, Wilson 95 % 95.0-99.2 %,
    measured 2026-11-30 at load ~5, outside pytest). Slow, not in CI: in a full CI run
    (ci profile) two fresh searches in a row missed, which 98 % per search makes a
    1-in-2,500 event, so the rate inside the suite is not what was measured outside it;
    until that is understood it is a measurement, not a CI gate."""
    for _ in range(2):
        try:
            run_state_machine_as_test(
                StaleReadCluster,
                settings=settings(
                    max_examples=300,
                    stateful_step_count=40,
                    database=None,
                    derandomize=False,
                    phases=[Phase.generate],
                    deadline=None,
                ),
            )
        except AssertionError as exc:
            assert "read()" in str(exc), exc
            return
    pytest.fail("two fresh searches of 300 examples missed the stale-read register")
