"""Stateful test of the ResourcePool with racing borrowers and injected cancellations.

Observer's record: every resource made and closed, who holds what. Invariants:
``NoDoubleLend`` (a resource is held by one borrower at a time, never after it was
closed), ``SizeBounded`` (resources made and not closed <= max_size),
``NothingHeldForLeft`` (the pool counts as borrowed exactly the borrowers still inside:
a cancelled borrower gave its resource back), ``NoStarvation`` (nobody waits while a
slot is free).

Broken variants: a pool whose borrower keeps the slot when cancelled; a pool without a
limit (the original task pools).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from trio_guest import GuestRun, Handle

from trio_foundation.resilience import ResourcePool, open_pool
from trio_foundation.resilience._pool import _Acquire
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

MAX_SIZE = 2


class KeepsSlotOnCancel(_Acquire):  # type: ignore[misc]
    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if isinstance(exc, trio.Cancelled):
            return  # the flaw: the resource is not returned
        await super().__aexit__(exc_type, exc, tb)


def keeps_slot(pool: ResourcePool[Any]) -> None:
    pool.acquire = lambda timeout=None: KeepsSlotOnCancel(pool, timeout)  # type: ignore[method-assign]


def unbounded(pool: ResourcePool[Any]) -> None:
    pool._slots = trio.Semaphore(1_000)
    pool.max_size = 1_000  # type: ignore[misc]


class PoolMachine(RuleBasedStateMachine):
    patch: ClassVar[Any] = None

    def __init__(self) -> None:
        super().__init__()
        self.driver = GuestRun()
        self.made: list[int] = []
        self.closed: set[int] = set()
        self.holders: dict[int, int] = {}  # borrower -> resource
        self.gates: dict[int, trio.Event] = {}
        self.handles: dict[int, Handle] = {}
        self.errors: list[str] = []
        self.pool: ResourcePool[int] = None  # type: ignore[assignment]
        self.seq = 0

        async def make() -> int:
            await trio.lowlevel.checkpoint()  # a checkpoint: creation can be cancelled
            self.made.append(len(self.made) + 1)
            return self.made[-1]

        async def close(r: int) -> None:
            if r in self.closed:
                self.errors.append(f"resource {r} closed twice")
            self.closed.add(r)

        async def hold_open() -> None:
            async with open_pool(make, close=close, max_size=MAX_SIZE, max_lifetime=4) as pool:
                if type(self).patch is not None:
                    type(self).patch(pool)
                self.pool = pool
                await trio.sleep_forever()

        self.driver.spawn("pool", hold_open)

    def teardown(self) -> None:
        self.driver.close()

    def _borrower(self, seq: int) -> Any:
        async def run() -> None:
            gate = self.gates[seq] = trio.Event()
            async with self.pool.acquire() as r:
                if r in self.holders.values():
                    self.errors.append(f"resource {r} lent twice")
                if r in self.closed:
                    self.errors.append(f"resource {r} lent after close")
                self.holders[seq] = r
                try:
                    await gate.wait()
                finally:
                    del self.holders[seq]

        return run

    @rule(cancels=st.lists(st.none() | st.integers(1, 4), min_size=1, max_size=3))
    def borrow(self, cancels: list[int | None]) -> None:
        async def start_all() -> None:
            for cancel_after in cancels:
                self.seq += 1
                self.handles[self.seq] = self.driver.spawn_soon(
                    self._borrower(self.seq), cancel_after
                )

        self.driver.do(start_all)

    @rule(data=st.data())
    def give_back(self, data: st.DataObject) -> None:
        if self.holders:
            gate = self.gates[data.draw(st.sampled_from(sorted(self.holders)))]

            async def go() -> None:
                gate.set()

            self.driver.do(go)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        live = sorted(s for s, h in self.handles.items() if not h.done)
        if live:
            self.driver.cancel(self.handles[data.draw(st.sampled_from(live))])

    @rule(dt=st.sampled_from([1.0, 3.0]))
    def tick(self, dt: float) -> None:
        self.driver.advance(dt)

    @invariant()
    def no_double_lend(self) -> None:
        assert not self.errors, self.errors

    @invariant()
    def size_bounded(self) -> None:
        alive = len(self.made) - len(self.closed)
        assert alive <= MAX_SIZE, f"{alive} resources alive, max_size {MAX_SIZE}"

    @invariant()
    def nothing_held_for_left(self) -> None:
        if self.pool is not None:
            borrowed = self.pool.statistics().borrowed
            assert borrowed == len(self.holders), (
                f"pool lends {borrowed} but {len(self.holders)} borrowers are inside"
            )

    @invariant()
    def no_starvation(self) -> None:
        if self.pool is not None:
            stats = self.pool.statistics()
            assert not (stats.waiting and stats.borrowed < MAX_SIZE), stats


SETTINGS = settings(
    max_examples=max(settings.default.max_examples // 2, 10),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_pool_matches_model() -> None:
    run_state_machine_as_test(PoolMachine, settings=SETTINGS)


BROKEN = {
    "keeps_slot_on_cancel": (keeps_slot, "borrowers are inside"),
    "unbounded": (unbounded, "resources alive"),
}


# fresh searches per variant in the slow catch-rate test (`CATCH_RUNS=200 pytest -m slow ...`)
CATCH_RUNS = int(os.environ.get("CATCH_RUNS", "20"))


def _caught(name: str) -> bool:
    patch, expected = BROKEN[name]
    machine = type(f"Pool_{name}", (PoolMachine,), {"patch": staticmethod(patch)})
    return caught_by_fresh_search(machine, SETTINGS, (expected,), name=name, max_examples=200)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_pool_is_caught(name: str) -> None:
    assert _caught(name)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_pool_catch_rate(name: str) -> None:
    rate = measure_catch_rate(lambda: _caught(name), CATCH_RUNS)
    print(f"\n{name}: {rate}")
    assert rate.rate >= 0.95
