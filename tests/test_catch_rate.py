"""trio_foundation.verify.catch_rate: the Wilson interval and one fresh search."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from trio_foundation.verify.catch_rate import (
    CatchRate,
    caught_by_fresh_search,
    measure_catch_rate,
    wilson_interval,
)


def test_wilson_interval_known_values() -> None:
    # 200 of 200: the lower end is n / (n + z^2) = 0.981154
    low, high = wilson_interval(200, 200)
    assert low == pytest.approx(0.981154, abs=1e-6)
    assert high == 1.0
    # 0 of 10 mirrors 10 of 10
    assert wilson_interval(0, 10) == pytest.approx(
        tuple(1 - x for x in wilson_interval(10, 10))[::-1]
    )
    # 50 of 100: symmetric around 0.5, 0.403830 to 0.596170 (by hand)
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.403830, 0.596170), abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(("caught", "runs"), [(-1, 3), (4, 3), (0, -1)])
def test_wilson_interval_refuses_impossible_counts(caught: int, runs: int) -> None:
    with pytest.raises(ValueError, match="0 <= caught <= runs"):
        wilson_interval(caught, runs)


class Counter(RuleBasedStateMachine):
    """A counter whose invariant breaks at 3 (when ``BROKEN``) or whose rule raises."""

    limit = 3
    other_failure = False

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    @rule(k=st.integers(1, 2))
    def add(self, k: int) -> None:
        if self.other_failure:
            raise AssertionError("SomethingElse: not the invariant")
        self.n += k

    @invariant()
    def BelowLimit(self) -> None:
        assert self.n < self.limit, f"BelowLimit: {self.n}"


class Correct(Counter):
    limit = 10**9


class Other(Counter):
    other_failure = True


BASE = settings(max_examples=50, stateful_step_count=10, deadline=None)


def test_a_fresh_search_catches_the_broken_machine() -> None:
    assert caught_by_fresh_search(Counter, BASE, ("BelowLimit",)) is True


def test_a_fresh_search_of_a_correct_machine_finds_nothing() -> None:
    assert caught_by_fresh_search(Correct, BASE, ("BelowLimit",), max_examples=5) is False


def test_a_failure_for_another_reason_is_not_a_catch() -> None:
    with pytest.raises(AssertionError, match=r"oddly failed for another reason: .*SomethingElse"):
        caught_by_fresh_search(Other, BASE, ("BelowLimit",), name="oddly")


def test_measure_catch_rate_counts_and_refuses_zero_runs() -> None:
    answers = iter([True, False, True, True])
    rate = measure_catch_rate(lambda: next(answers), 4)
    assert (rate.caught, rate.runs, rate.rate) == (3, 4, 0.75)
    assert str(rate).startswith("caught in 3/4 fresh runs, Wilson 95 % [0.301, 0.954]")
    assert CatchRate(0, 0, 0.0).rate == 0.0
    with pytest.raises(ValueError, match="runs must be >= 1, got 0"):
        measure_catch_rate(lambda: True, 0)
