"""Hypothesis over runtime.raft_log: random save scripts crashed at random calls on the
simulated disk (torn, reordered and lost unsynced writes), broken variants caught by
fresh searches, and cancellations injected into concurrent saves."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import pytest
import trio
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from raft_log_model import DIR, check_recovery, model_states, random_script, run_writer

from trio_foundation.runtime.raft_log import RaftLog
from trio_foundation.runtime.simdisk import SimDisk
from trio_foundation.verify.cancellation import (
    Injection,
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)
from trio_foundation.verify.catch_rate import measure_catch_rate

# ----------------------------------------------------------------- broken variants


class _Broken:
    """A disk wrapper that breaks one duty of the log (a mutant of RaftLog's I/O)."""

    def __init__(self, disk: SimDisk, mutant: str) -> None:
        self.disk = disk
        self.mutant = mutant

    def __getattr__(self, name: str) -> Any:
        return getattr(self.disk, name)

    def sync(self, handle: int) -> None:
        if self.mutant == "ack-before-fsync":  # the save returns, nothing was synced
            self.disk.calls += 1
            return
        self.disk.sync(handle)

    def truncate(self, handle: int, size: int) -> None:
        if self.mutant == "keep-torn-tail":  # the torn tail is found but not cut
            self.disk.calls += 1
            return
        self.disk.truncate(handle, size)


MUTANTS = ["ack-before-fsync", "keep-torn-tail"]


def crash_property(mutant: str | None, max_examples: int | None = None) -> Callable[[], None]:
    """The property: after a crash at any call, recovery keeps every acknowledged save,
    applies nothing by half, and the log works on. ``mutant`` breaks the log's I/O."""

    def wrap(disk: SimDisk) -> Any:
        return disk if mutant is None else _Broken(disk, mutant)

    extra: dict[str, Any] = {}
    if max_examples is not None:  # a search for a mutant: find, do not shrink
        extra = {"max_examples": max_examples, "phases": [Phase.generate]}

    @given(
        script_seed=st.integers(0, 2**32),
        length=st.integers(1, 40),
        concurrency=st.sampled_from([1, 1, 4]),
        crash_at=st.integers(0, 200),
        disk_seed=st.integers(0, 2**32),
    )
    @settings(database=None, report_multiple_bugs=False, **extra)
    def prop(
        script_seed: int, length: int, concurrency: int, crash_at: int, disk_seed: int
    ) -> None:
        saves = random_script(random.Random(script_seed), length)
        disk = SimDisk(random.Random(disk_seed), crash_at=crash_at)
        acked = run_writer(wrap(disk), saves, concurrency=concurrency, seed=disk_seed)
        problem = check_recovery(wrap(disk), saves, acked)
        assert problem is None, problem

    return prop


def test_recovery_after_a_crash_at_a_random_call_keeps_every_acknowledged_save() -> None:
    crash_property(None)()


@pytest.mark.parametrize("mutant", MUTANTS)
def test_a_fresh_search_catches_the_broken_variant(mutant: str) -> None:
    with pytest.raises(AssertionError):
        crash_property(mutant, max_examples=200)()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mutant", MUTANTS)
def test_catch_rate_of_the_broken_variants(mutant: str) -> None:
    """``CATCH_RUNS`` (default 20) fresh searches of 100 examples each; the figure goes to
    docs/consensus.md."""

    def search() -> bool:
        try:
            crash_property(mutant, max_examples=100)()
        except AssertionError:
            return True
        return False

    rate = measure_catch_rate(search, int(os.environ.get("CATCH_RUNS", "20")))
    print(f"\n{mutant}: {rate}")
    assert rate.rate >= 0.95


# ----------------------------------------------------------------- cancellation


SCRIPT = random_script(random.Random(7), 24, max_data=50)
STATES = model_states(SCRIPT)


def cancel_run(plan: InjectionPlan, *, closing: str = "close") -> tuple[int, int, int]:
    """Concurrent saves, each in its own attackable scope: whatever is cancelled, a
    reopened log holds a prefix of the queued saves that includes every one that
    returned, and no flush is left running for a caller that left.

    Returns (saves queued, saves acknowledged, saves found durable)."""
    disk = SimDisk(random.Random(0))
    queued: list[int] = []
    acked: set[int] = set()
    logs: list[RaftLog] = []
    closed_cleanly: list[bool] = []

    async def scenario(inj: Injector) -> None:
        log = RaftLog(DIR, ops=disk, segment_bytes=4096, salts=random.Random(1), io="inline")
        logs.append(log)
        log.load()
        script = iter(enumerate(SCRIPT))

        async def worker() -> None:
            for pos, save in script:
                queued.append(pos)
                with inj.scope(f"save {pos}"):
                    await log.save(**save.kwargs())
                    acked.add(pos)

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(worker)
        if closing == "aclose":
            with inj.scope("aclose"):
                await log.aclose()  # writes the queued saves, unless it is cancelled
                closed_cleanly.append(True)
            if not log._closed:
                log.close()
        else:
            log.close()  # stop as a crash would: queued saves of cancelled callers stay unwritten

    run_injected(scenario, plan)
    assert logs and not logs[0]._flushing
    got = RaftLog(DIR, ops=disk).load()
    floor = max(acked) + 1 if acked else 0
    durable = [j for j in range(floor, len(queued) + 1) if STATES[j] == got]
    assert durable, f"recovered a state that is no prefix of the queued saves above {floor}"
    if closed_cleanly:
        assert durable[-1] == len(queued), "aclose returned with queued saves unwritten"
    return len(queued), len(acked), durable[-1]


@given(
    plan=injection_plans(max_injections=4, max_step=120, max_target=6),
    closing=st.sampled_from(["close", "aclose"]),
)
@settings(max_examples=60, database=None)
def test_cancelled_saves_leave_a_consistent_log(plan: InjectionPlan, closing: str) -> None:
    cancel_run(plan, closing=closing)


def test_a_cancelled_save_may_or_may_not_be_durable() -> None:
    """Both outcomes of the documented cancellation semantics happen (reachability).

    Which one a plan gives depends on trio's scheduling order, which Hypothesis's trio
    plugin seeds from a random state the earlier tests of the process have advanced:
    one sweep of the 156 plans saw only "durable" once in CI, so the sweep is repeated
    (each run schedules afresh) until both have happened, at most five times."""
    outcomes = set()
    for _ in range(5):
        for step in range(1, 40):
            for target in range(4):
                queued, acked, durable = cancel_run(InjectionPlan((Injection(step, target),)))
                if acked < queued:
                    outcomes.add("durable" if durable > acked else "not durable")
        if outcomes == {"durable", "not durable"}:
            break
    assert outcomes == {"durable", "not durable"}
