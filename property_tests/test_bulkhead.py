"""Stateful test of the Bulkhead with racing callers and injected cancellations.

Observer's record: who is inside, who waits (arrived, not inside, not finished), every
rejection with what the observer saw at that moment. Invariants: ``ConcurrencyBounded``,
``QueueBounded``, ``RejectOnlyWhenFull``, ``FifoEntry``, ``NothingHeldForLeft``
(the bulkhead's statistics match the callers still there).

Broken variant: the count is checked, an await follows, then incremented.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from trio_guest import GuestRun, Handle

from trio_foundation.resilience import Bulkhead, Rejected
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

MAX_CONCURRENT = 2
MAX_QUEUED = 2


class CheckThenEnter:
    """The flaw: read the count, await, then take the slot (no queue)."""

    def __init__(self, *, max_concurrent: int, max_queued: int) -> None:
        self.max_concurrent = max_concurrent
        self.active = 0

    async def __aenter__(self) -> None:
        if self.active >= self.max_concurrent:
            await trio.lowlevel.checkpoint()
            raise Rejected("bulkhead", "full")
        await trio.lowlevel.checkpoint()  # e.g. a log call or a metrics flush
        self.active += 1

    async def __aexit__(self, *exc: object) -> None:
        self.active -= 1

    def statistics(self) -> Any:
        return None


class BulkheadMachine(RuleBasedStateMachine):
    bulkhead_class: ClassVar[Any] = Bulkhead

    def __init__(self) -> None:
        super().__init__()
        self.driver = GuestRun()
        self.bulkhead = type(self).bulkhead_class(
            max_concurrent=MAX_CONCURRENT, max_queued=MAX_QUEUED
        )
        self.inside: set[int] = set()
        self.arrived: list[int] = []
        self.finished: set[int] = set()
        self.entered: list[int] = []
        self.gates: dict[int, trio.Event] = {}
        self.handles: dict[int, Handle] = {}
        self.bad_rejections: list[str] = []
        self.seq = 0

    def teardown(self) -> None:
        self.driver.close()

    def waiting(self) -> list[int]:
        return [s for s in self.arrived if s not in self.inside and s not in self.finished]

    def _caller(self, seq: int) -> Any:
        async def run() -> None:
            self.arrived.append(seq)
            gate = self.gates[seq] = trio.Event()
            try:
                async with self.bulkhead:
                    self.inside.add(seq)
                    self.entered.append(seq)
                    try:
                        await gate.wait()
                    finally:
                        self.inside.discard(seq)
            except Rejected:
                others = [s for s in self.waiting() if s != seq]
                if len(self.inside) < MAX_CONCURRENT or len(others) < MAX_QUEUED:
                    self.bad_rejections.append(
                        f"{seq} rejected with {len(self.inside)} inside, {len(others)} queued"
                    )
            finally:
                self.finished.add(seq)

        return run

    @rule(cancels=st.lists(st.none() | st.integers(1, 4), min_size=1, max_size=3))
    def enter(self, cancels: list[int | None]) -> None:
        async def start_all() -> None:
            for cancel_after in cancels:
                self.seq += 1
                self.handles[self.seq] = self.driver.spawn_soon(
                    self._caller(self.seq), cancel_after
                )

        self.driver.do(start_all)

    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        if self.inside:
            seq = data.draw(st.sampled_from(sorted(self.inside)))
            gate = self.gates[seq]

            async def go() -> None:
                gate.set()

            self.driver.do(go)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        live = sorted(s for s, h in self.handles.items() if not h.done)
        if live:
            self.driver.cancel(self.handles[data.draw(st.sampled_from(live))])

    @invariant()
    def concurrency_bounded(self) -> None:
        assert len(self.inside) <= MAX_CONCURRENT, f"{len(self.inside)} inside at once"

    @invariant()
    def queue_bounded(self) -> None:
        assert len(self.waiting()) <= MAX_QUEUED

    @invariant()
    def reject_only_when_full(self) -> None:
        assert not self.bad_rejections, self.bad_rejections

    @invariant()
    def fifo_entry(self) -> None:
        order = {s: i for i, s in enumerate(self.arrived)}
        waiting = self.waiting()
        for s in self.entered:
            if s in self.inside:
                assert all(order[w] > order[s] for w in waiting), f"{s} entered ahead of {waiting}"

    @invariant()
    def nothing_held_for_left(self) -> None:
        stats = self.bulkhead.statistics()
        if stats is not None:
            assert (stats.active, stats.queued) == (len(self.inside), len(self.waiting()))


SETTINGS = settings(
    max_examples=max(settings.default.max_examples // 2, 10),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_bulkhead_matches_model() -> None:
    run_state_machine_as_test(BulkheadMachine, settings=SETTINGS)


# fresh searches per variant in the slow catch-rate test (`CATCH_RUNS=200 pytest -m slow ...`)
CATCH_RUNS = int(os.environ.get("CATCH_RUNS", "20"))


def _caught() -> bool:
    machine = type("BrokenBulkhead", (BulkheadMachine,), {"bulkhead_class": CheckThenEnter})
    # It has no queue either, so RejectOnlyWhenFull may see it first.
    expected = ("inside at once", "rejected with")
    return caught_by_fresh_search(machine, SETTINGS, expected, max_examples=200)


def test_check_then_enter_is_caught() -> None:
    assert _caught()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_check_then_enter_catch_rate() -> None:
    rate = measure_catch_rate(_caught, CATCH_RUNS)
    print(f"\ncheck_then_enter: {rate}")
    assert rate.rate >= 0.95
