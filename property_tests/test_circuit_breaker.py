"""Stateful test of the CircuitBreaker with concurrent calls and injected cancellations.

The observer records the breaker's state changes (through its listener, with times)
and every call: when it entered, its outcome, whether it was refused. Invariants:

* ``OpenOnlyAfterThreshold`` — each ``closed -> open`` follows ``failure_threshold``
  consecutive failures of calls that entered after the circuit last closed;
* ``RejectOnlyWhenOpen`` — a call is refused only while the circuit is open and its
  reset timeout has not passed, or half-open with every trial slot taken by a call
  still running;
* ``TrialsBounded`` — calls admitted while half-open and still running never exceed
  ``half_open_max_calls``.

Broken variant: a cancelled trial call keeps its trial slot (the breaker stays
half-open and refuses everything forever).
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

from trio_foundation.resilience import CircuitBreaker, CircuitOpenError, ResilienceEvent
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

THRESHOLD = 1
RESET = 2.0
TRIALS = 1


class Boom(Exception):
    pass


class TrialLeaks(CircuitBreaker):  # type: ignore[misc]
    def _exit(self, gen: int, trial: bool, exc: BaseException | None) -> None:
        if isinstance(exc, trio.Cancelled):
            return  # the flaw: the trial slot is never given back
        super()._exit(gen, trial, exc)


class BreakerMachine(RuleBasedStateMachine):
    breaker_class: ClassVar[type[CircuitBreaker]] = CircuitBreaker

    def __init__(self) -> None:
        super().__init__()
        self.driver = GuestRun()
        self.breaker = type(self).breaker_class(
            failure_threshold=THRESHOLD, reset_timeout=RESET, half_open_max_calls=TRIALS
        )
        self.events: list[ResilienceEvent] = []
        self.marks: list[int] = []  # outcomes recorded when each event happened
        self.breaker.add_listener(self._on_event)
        self.outcomes: list[tuple[int, str]] = []  # (transitions seen at entry, outcome)
        self.running: dict[int, int] = {}  # call -> transitions seen at entry
        self.gates: dict[int, tuple[trio.Event, list[bool]]] = {}
        self.handles: dict[int, Handle] = {}
        self.errors: list[str] = []
        self.seq = 0

    def teardown(self) -> None:
        self.driver.close()

    def _on_event(self, event: ResilienceEvent) -> None:
        self.events.append(event)
        self.marks.append(len(self.outcomes))

    def _state(self) -> tuple[str, float]:
        if not self.events:
            return "closed", 0.0
        last = self.events[-1]
        return last.detail.split(" -> ")[1], last.time

    def _call(self, seq: int) -> Any:
        async def run() -> None:
            gate = trio.Event()
            ok: list[bool] = []
            self.gates[seq] = (gate, ok)
            seen = len(self.events)
            state, since = self._state()
            try:
                async with self.breaker:
                    self.running[seq] = len(self.events)
                    try:
                        await gate.wait()
                    finally:
                        del self.running[seq]
                    if not ok[0]:
                        raise Boom
            except CircuitOpenError:
                now = trio.current_time()
                trials = sum(1 for g in self.running.values() if g == seen)
                if not (
                    (state == "open" and now < since + RESET)
                    or (state == "half_open" and trials >= TRIALS)
                ):
                    self.errors.append(f"call {seq} refused in {state} with {trials} trials")
            except Boom:
                self.outcomes.append((seen, "failure"))
            except trio.Cancelled:
                raise
            else:
                self.outcomes.append((seen, "success"))

        return run

    @rule(cancels=st.lists(st.none() | st.integers(1, 3), min_size=1, max_size=3))
    def call(self, cancels: list[int | None]) -> None:
        async def start_all() -> None:
            for cancel_after in cancels:
                self.seq += 1
                self.handles[self.seq] = self.driver.spawn_soon(self._call(self.seq), cancel_after)

        self.driver.do(start_all)

    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data: st.DataObject, ok: bool) -> None:
        if self.running:
            gate, outcome = self.gates[data.draw(st.sampled_from(sorted(self.running)))]
            outcome.append(ok)

            async def go() -> None:
                gate.set()

            self.driver.do(go)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        live = sorted(s for s, h in self.handles.items() if not h.done)
        if live:
            self.driver.cancel(self.handles[data.draw(st.sampled_from(live))])

    @rule(dt=st.sampled_from([1.0, 2.0]))
    def tick(self, dt: float) -> None:
        self.driver.advance(dt)

    @invariant()
    def reject_only_when_open(self) -> None:
        assert not self.errors, self.errors

    @invariant()
    def open_only_after_threshold(self) -> None:
        for i, event in enumerate(self.events):
            if event.detail == "closed -> open":
                # The failure that opened it is recorded right after the event.
                run = [o for seen, o in self.outcomes[: self.marks[i] + 1] if seen == i]
                tail = run[-THRESHOLD:]
                assert len(tail) == THRESHOLD and set(tail) == {"failure"}, f"opened after {run}"

    @invariant()
    def trials_bounded(self) -> None:
        state, _ = self._state()
        if state == "half_open":
            trials = sum(1 for g in self.running.values() if g == len(self.events))
            assert trials <= TRIALS


SETTINGS = settings(
    max_examples=max(settings.default.max_examples // 2, 10),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_breaker_matches_model() -> None:
    run_state_machine_as_test(BreakerMachine, settings=SETTINGS)


# fresh searches per variant in the slow catch-rate test (`CATCH_RUNS=200 pytest -m slow ...`)
CATCH_RUNS = int(os.environ.get("CATCH_RUNS", "20"))


def _caught() -> bool:
    machine = type("BrokenBreaker", (BreakerMachine,), {"breaker_class": TrialLeaks})
    return caught_by_fresh_search(machine, SETTINGS, ("refused in half_open",), max_examples=300)


def test_trial_leak_is_caught() -> None:
    assert _caught()


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_trial_leak_catch_rate() -> None:
    rate = measure_catch_rate(_caught, CATCH_RUNS)
    print(f"\ntrial_leak: {rate}")
    assert rate.rate >= 0.95
