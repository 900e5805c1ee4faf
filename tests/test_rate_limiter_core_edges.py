"""The rate-limiting algorithms' edges, one exact check each: every constructor
argument's error names that argument, and the sliding log's wait is the time until
enough of its oldest grants leave the window.

Written for the survivors of a mutation run (``benchmarks/mutation.py
rate_limiter``; docs/verification.md lists them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from trio_foundation.resilience import GCRA, SlidingCounter, SlidingLog, TokenBucket

BAD_ARGUMENTS: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: TokenBucket(rate=0, burst=1), ValueError, "rate must be > 0 and finite, got 0"),
    (lambda: TokenBucket(rate=1, burst=0), ValueError, "burst must be >= 1, got 0"),
    (lambda: TokenBucket(rate=1, burst=1.5), TypeError, "burst must be an int, got float"),
    (lambda: TokenBucket(rate="1", burst=1), TypeError, "rate must be a number, got str"),
    (lambda: GCRA(rate=True, burst=1), TypeError, "rate must be a number, got bool"),
    (lambda: GCRA(rate=-1, burst=1), ValueError, "rate must be > 0 and finite, got -1"),
    (lambda: GCRA(rate=1, burst=0), ValueError, "burst must be >= 1, got 0"),
    (lambda: SlidingLog(limit=0, window=1.0), ValueError, "limit must be >= 1, got 0"),
    (lambda: SlidingLog(limit=1, window=0), ValueError, "window must be > 0 and finite, got 0"),
    (lambda: SlidingCounter(limit=0, window=1.0), ValueError, "limit must be >= 1, got 0"),
    (lambda: SlidingCounter(limit=True, window=1.0), TypeError, "limit must be an int, got bool"),
    (
        lambda: SlidingCounter(limit=1, window=float("inf")),
        ValueError,
        "window must be > 0 and finite, got inf",
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), BAD_ARGUMENTS)
def test_a_bad_argument_is_refused_by_name(
    make: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as raised:
        make()
    assert str(raised.value) == message


def test_sliding_log_waits_until_enough_old_grants_leave_the_window() -> None:
    log = SlidingLog(limit=3, window=10.0)
    state = log.new_state(0.0)
    for at in (0.0, 1.0, 2.0):
        assert log.take(state, at, 1) == 0.0
    # a weight of 2 at t=5 needs the two oldest grants (t=0 and t=1) gone: at t=11
    assert log.take(state, 5.0, 2) == 6.0
    # a weight of 1 needs only the oldest gone: at t=10
    assert log.take(state, 5.0, 1) == 5.0
    # the refusals left the log as it was
    assert log.take(state, 11.0, 2) == 0.0


def test_sliding_log_try_take_forgets_exactly_the_expired_weight() -> None:
    log = SlidingLog(limit=3, window=10.0)
    state = log.new_state(0.0)
    assert log.try_take(state, 0.0, 1)
    assert log.try_take(state, 1.0, 2)
    # at 10.5 the grant of t=0 (weight 1) has left the window: 2 remain, 1 fits
    assert log.try_take(state, 10.5, 1)
    assert not log.try_take(state, 10.5, 1)


def test_sliding_counter_aligns_a_new_key_to_its_window() -> None:
    counter = SlidingCounter(limit=2, window=10.0)
    assert counter.new_state(25.0).start == 20.0
