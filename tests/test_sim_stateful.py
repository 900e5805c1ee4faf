"""The simulator's own bookkeeping under random sends, faults and time steps.

A Hypothesis state machine drives a :class:`Simulation` of quiet cores (they only
send what clients ask and record what arrives) and checks, after every step:

* ``MessageConservation``: every message copy created (sent or duplicated) is in
  exactly one place — delivered, dropped, overflowed, in flight or queued at a
  paused node;
* ``CutsMatchModel``: the blocked links are exactly those a reference model of
  the partitions, cuts and heals applied so far says;
* ``NoDeliveryOverCut`` and ``NoDeliveryToFrozenNode``: nothing is delivered on a
  cut link, or to a crashed or paused node;
* ``BoundsHold``: no link exceeds its in-flight cap.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from trio_foundation.protocols.effects import ClientRequest, Effect, Reply, Send
from trio_foundation.runtime.sim import SimConfig, Simulation
from trio_foundation.verify.nemesis import Cut, Fault, Heal, Partition
from trio_foundation.verify.strategies import faults

NODES = 3
CAP = 4


class Quiet:
    """Sends on request; records deliveries."""

    def __init__(self, node: int, nodes: int) -> None:
        self.heard: list[Any] = []

    def on_start(self, now: float, rng: Any) -> list[Effect]:
        return []

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        self.heard.append(msg)
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        return []

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        dst, msg = request.value
        return [Send(dst, msg), Reply(request.client)]

    def snapshot_persistent(self) -> Any:
        return None

    def restore(self, snapshot: Any) -> None:
        pass


class SimulatorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        config = SimConfig(max_in_flight_per_link=CAP, max_paused_queue=3)
        self.sim = Simulation(Quiet, nodes=NODES, seed=0, config=config)
        self.cuts: set[tuple[int, int]] = set()
        self.seen = 0  # log entries already checked

    @rule(src=st.integers(0, NODES - 1), dst=st.integers(0, NODES - 1))
    def send(self, src: int, dst: int) -> None:
        self.sim.submit(src, "send", (dst, ("m", self.sim.event_count)))
        self.sim.run(until=self.sim.now)

    @rule(fault=faults(NODES))
    def inject(self, fault: Fault) -> None:
        self._check_deliveries()
        self.sim.apply_fault(fault)
        self.sim.run(until=self.sim.now)
        self.seen = self.sim.event_count  # deliveries at the fault's instant: skipped
        if isinstance(fault, Partition):
            group = {n: i for i, g in enumerate(fault.groups) for n in g}
            for a in range(NODES):
                for b in range(NODES):
                    if a != b and group.get(a, -1 - a) != group.get(b, -1 - b):
                        self.cuts.add((a, b))
        elif isinstance(fault, Cut) and fault.src != fault.dst:
            self.cuts.add((fault.src, fault.dst))
        elif isinstance(fault, Heal):
            self.cuts.clear()

    @rule(dt=st.sampled_from([0.001, 0.01, 0.1, 1.0]))
    def advance(self, dt: float) -> None:
        self.sim.run(until=self.sim.now + dt)

    @invariant()
    def message_conservation(self) -> None:
        log = self.sim.event_log
        assert len(log) == self.sim.event_count  # the ring never wrapped here
        created = sum(1 for e in log if e.kind in ("send", "dup"))
        settled = sum(
            1 for e in log if e.kind in ("deliver", "drop", "overflow") and "->" in e.detail
        )
        in_flight = sum(self.sim.in_flight(a, b) for a in range(NODES) for b in range(NODES))
        queued = sum(self.sim.queued_messages(n) for n in range(NODES))
        assert created == settled + in_flight + queued

    @invariant()
    def cuts_match_model(self) -> None:
        for a in range(NODES):
            for b in range(NODES):
                assert self.sim.is_blocked(a, b) == ((a, b) in self.cuts)

    def _check_deliveries(self) -> None:
        """Deliveries since the last check used links the model says are open."""
        for entry in self.sim.event_log[self.seen :]:
            if entry.kind == "deliver":
                src, dst = map(int, entry.detail.split(" ", 1)[0].split("->"))
                assert (src, dst) not in self.cuts
                assert entry.node == dst
                event("delivered")
            elif entry.kind in ("queue", "overflow") or "crashed while queued" in entry.detail:
                event(f"reached: {entry.kind}")
        self.seen = self.sim.event_count

    @invariant()
    def no_delivery_over_cut_or_to_frozen_node(self) -> None:
        self._check_deliveries()
        for node in range(NODES):
            assert (self.sim.core(node) is None) == (not self.sim.is_up(node))
            if self.sim.is_paused(node) or not self.sim.is_up(node):
                core = self.sim.core(node)
                assert core is None or isinstance(core, Quiet)

    @invariant()
    def bounds_hold(self) -> None:
        for a in range(NODES):
            for b in range(NODES):
                assert 0 <= self.sim.in_flight(a, b) <= CAP


SimulatorMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40)
test_simulator_bookkeeping = SimulatorMachine.TestCase
