"""The cancellation-injection harness (verify/cancellation.py) tested on toy APIs."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque

import pytest
import trio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import InMemoryExampleDatabase

from trio_foundation.verify import cancellation
from trio_foundation.verify.cancellation import (
    Injection,
    InjectionFailure,
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)


def counting_scenario(reached: list[int]):  # type: ignore[no-untyped-def]
    async def scenario(inj: Injector) -> None:
        with inj.scope("loop"):
            for i in range(100):
                reached.append(i)
                await trio.lowlevel.checkpoint()

    return scenario


@pytest.mark.parametrize("n", [1, 2, 7, 50])
def test_it_cancels_right_after_step_n(n: int) -> None:
    reached: list[int] = []
    result = run_injected(counting_scenario(reached), InjectionPlan((Injection(step=n),)))
    # step k runs iteration k-1 up to its checkpoint; the next checkpoint raises
    assert reached == list(range(n))
    assert [(a.label, a.injection.step) for a in result.applied] == [("loop", n)]
    assert result.steps > n  # then the steps that meet the cancellation


def test_without_injections_the_scenario_runs_to_the_end() -> None:
    reached: list[int] = []
    result = run_injected(counting_scenario(reached), InjectionPlan())
    assert reached == list(range(100))
    assert result.applied == ()
    assert result.steps == 101


def test_a_deadline_fires_delay_seconds_after_its_step() -> None:
    async def scenario(inj: Injector) -> None:
        with inj.scope("sleeper"):
            for _ in range(100):
                await trio.sleep(1)

    result = run_injected(
        scenario, InjectionPlan((Injection(step=4, action="deadline", delay=2.5),))
    )
    # step 4 ends at t=3 (the first step runs at t=0, then one per second)
    assert result.applied[0].time == 3
    assert result.time == 5.5


def test_targets_index_the_open_scopes_from_the_outermost() -> None:
    log: list[str] = []

    async def scenario(inj: Injector) -> None:
        with inj.scope("outer"):
            with inj.scope("inner"):
                await trio.sleep(1)
                await trio.sleep(1)
            log.append("after inner")
        log.append("after outer")

    run_injected(scenario, InjectionPlan((Injection(step=2, target=1),)))
    assert log == ["after inner", "after outer"]
    log.clear()
    run_injected(scenario, InjectionPlan((Injection(step=2, target=2),)))  # 2 % 2 == 0
    assert log == ["after outer"]


def test_an_injection_anchored_on_an_opening_counts_steps_from_there() -> None:
    progress: dict[int, int] = {}

    async def scenario(inj: Injector) -> None:
        for op in range(5):
            with inj.scope(f"op{op}"):
                for j in range(10):
                    progress[op] = j + 1
                    await trio.lowlevel.checkpoint()

    plan = InjectionPlan((Injection(step=3, target=2, anchor="opened"),))
    result = run_injected(scenario, plan)
    # op2 opened during a step; that step and two more ran its first 3 iterations
    assert progress == {0: 10, 1: 10, 2: 3, 3: 10, 4: 10}
    assert [a.label for a in result.applied] == ["op2"]
    # an opening that never happens, or a scope already closed: nothing applied
    for missed in (
        Injection(step=3, target=9, anchor="opened"),
        Injection(step=50, target=0, anchor="opened"),
    ):
        progress.clear()
        assert run_injected(scenario, InjectionPlan((missed,))).applied == ()
        assert progress == {op: 10 for op in range(5)}


def test_an_injection_with_no_open_scope_is_skipped() -> None:
    async def scenario(inj: Injector) -> None:
        await trio.sleep(1)
        with inj.scope("late"):
            await trio.sleep(1)

    result = run_injected(scenario, InjectionPlan((Injection(step=1),)))
    assert result.applied == ()
    assert result.time == 2


def test_an_undocumented_exception_is_reported() -> None:
    async def raises_plain(inj: Injector) -> None:
        await trio.sleep(1)
        raise ValueError("documented")

    async def raises_grouped(inj: Injector) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raises_plain, inj)

    result = run_injected(raises_plain, InjectionPlan(), allowed=(ValueError,))
    assert isinstance(result.error, ValueError)
    with pytest.raises(InjectionFailure, match="undocumented exception escaped") as info:
        run_injected(raises_grouped, InjectionPlan(), allowed=(ValueError,))
    assert isinstance(info.value.__cause__, BaseExceptionGroup)
    with pytest.raises(InjectionFailure, match="undocumented exception escaped"):
        run_injected(raises_plain, InjectionPlan())


def test_a_failing_check_names_its_step() -> None:
    reached: list[int] = []

    def check() -> None:
        assert len(reached) < 5, "too far"

    with pytest.raises(InjectionFailure, match=r"check failed.*too far") as info:
        run_injected(counting_scenario(reached), InjectionPlan(), check=check)
    assert info.value.step == 5
    assert len(reached) == 5  # the scenario was cancelled right after the failure


def test_a_task_that_outlives_the_scenario_is_reported() -> None:
    async def scenario(inj: Injector) -> None:
        trio.lowlevel.spawn_system_task(trio.sleep_forever, name="leaked")
        await trio.sleep(1)

    with pytest.raises(InjectionFailure, match=r"tasks outlived the scenario.*leaked"):
        run_injected(scenario, InjectionPlan())


def test_a_scenario_that_ignores_cancellation_is_abandoned() -> None:
    async def scenario(inj: Injector) -> None:
        with trio.CancelScope(shield=True):
            await trio.sleep_forever()

    with pytest.raises(InjectionFailure, match="still running after 10 virtual s"):
        run_injected(scenario, InjectionPlan(), time_limit=10, idle_grace=0.05)


def test_a_slow_scenario_is_cancelled_at_the_time_limit() -> None:
    async def scenario(inj: Injector) -> None:
        await trio.sleep(100)

    with pytest.raises(InjectionFailure, match="still running after 10 virtual s") as info:
        run_injected(scenario, InjectionPlan(), time_limit=10)
    assert info.value.time == 10


# --------------------------------------------------------------------------- a toy lock


class HandOffLock:
    """A FIFO lock that hands itself to the next waiter on release.

    ``leaky=True`` is the bug of issue 7's fault 1: a waiter cancelled after the
    hand-off but before it returns keeps the lock for nobody.
    """

    def __init__(self, *, leaky: bool) -> None:
        self.leaky = leaky
        self.owner: object = None
        self._waiters: deque[tuple[trio.Event, object]] = deque()

    async def acquire(self, who: object) -> None:
        if self.owner is None and not self._waiters:
            self.owner = who
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        event = trio.Event()
        self._waiters.append((event, who))
        try:
            await event.wait()
            await trio.lowlevel.checkpoint()  # "let others run": a second cancel point
        except trio.Cancelled:
            if (event, who) in self._waiters:
                self._waiters.remove((event, who))
            elif not self.leaky and self.owner is who:
                self.release()  # handed over meanwhile: pass it on
            raise

    def release(self) -> None:
        if self._waiters:
            event, who = self._waiters.popleft()
            self.owner = who
            event.set()
        else:
            self.owner = None


def lock_scenario(lock: HandOffLock, inside: set[object]):  # type: ignore[no-untyped-def]
    async def client(inj: Injector, name: str) -> None:
        for _ in range(3):
            with inj.scope(name):
                await lock.acquire(name)
                inside.add(name)
                try:
                    await trio.sleep(0.5)
                finally:
                    inside.discard(name)
                    lock.release()

    async def scenario(inj: Injector) -> None:
        async with trio.open_nursery() as nursery:
            for name in "abc":
                nursery.start_soon(client, inj, name)
        # the lock must be free again once every client has left
        with trio.fail_after(1):
            await lock.acquire("again")
        lock.release()

    return scenario


def make_search(*, leaky: bool, db: InMemoryExampleDatabase | None = None):  # type: ignore[no-untyped-def]
    @settings(
        max_examples=200,
        database=db,
        report_multiple_bugs=False,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=[Phase.reuse, Phase.generate, Phase.shrink],
    )
    @given(plan=injection_plans(max_injections=3, max_step=60))
    def search(plan: InjectionPlan) -> None:
        lock = HandOffLock(leaky=leaky)
        inside: set[object] = set()
        run_injected(lock_scenario(lock, inside), plan)

    return search


def leaky_lock_search() -> str | None:
    """One fresh search of the leaky lock: the failure's message, or ``None``."""
    try:
        make_search(leaky=True)()
    except InjectionFailure as exc:
        return str(exc)
    return None


def leaky_lock_caught(message: str | None) -> bool:
    # the lock stayed with a client that had left: the other clients wait
    # forever, or the final re-acquire times out
    return message is not None and (
        "still running after" in message or "escaped: TooSlowError" in message
    )


def test_the_leaky_lock_is_caught_by_a_fresh_random_search() -> None:
    message = leaky_lock_search()
    assert leaky_lock_caught(message), message


def test_the_correct_lock_passes_the_same_search() -> None:
    make_search(leaky=False)()


def test_a_shrunk_failure_replays_exactly_from_the_database() -> None:
    db = InMemoryExampleDatabase()
    with pytest.raises(InjectionFailure) as first:
        make_search(leaky=True, db=db)()
    with pytest.raises(InjectionFailure) as again:
        make_search(leaky=True, db=db)()
    # same plan, same scheduler seed, same step, time and applied injections
    assert str(again.value) == str(first.value)


@given(n=st.integers(1, 99))
@settings(max_examples=20, deadline=None)
def test_any_step_can_be_hit(n: int) -> None:
    reached: list[int] = []
    run_injected(counting_scenario(reached), InjectionPlan((Injection(step=n),)))
    assert len(reached) == n


def test_a_run_past_its_real_time_limit_is_cancelled_and_unwinds() -> None:
    """A run that is only slow (or stuck in a cancellable wait) is failed, then
    cancelled: its thread ends and nothing is abandoned for later tests."""
    unwound: list[str] = []

    async def scenario(inj: Injector) -> None:
        try:
            while True:  # virtual time never advances: only the real-time limit ends it
                await trio.lowlevel.checkpoint()
        finally:
            unwound.append("finally")

    def runs() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "run_injected"}

    abandoned, before = list(cancellation._abandoned), runs()
    with pytest.raises(InjectionFailure, match=r"did not finish within 0\.5 real s"):
        run_injected(scenario, InjectionPlan(), real_time_limit=0.5)
    assert unwound == ["finally"]
    assert cancellation._abandoned == abandoned
    assert runs() == before


def test_an_abandoned_busy_run_stops_spinning() -> None:
    async def scenario(inj: Injector) -> None:
        with trio.CancelScope(shield=True):
            while True:  # virtual time never advances: only the real-time limit ends it
                await trio.lowlevel.checkpoint()

    with pytest.raises(InjectionFailure, match=r"did not finish within 0\.5 real s"):
        run_injected(scenario, InjectionPlan(), real_time_limit=0.5)
    thread = cancellation._abandoned[-1]
    time.sleep(0.2)
    frame = sys._current_frames().get(thread.ident or 0)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    assert "after_task_step" in names or "before_io_wait" in names, names
    assert names[0] in {"wait", "acquire"}, names  # parked on a lock, not running
