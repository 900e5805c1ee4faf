"""Unit tests of the circuit breaker, the bulkhead and the retry policy."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_foundation.resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    Rejected,
    ResilienceEvent,
    RetryBudget,
    RetryBudgetExhausted,
    RetryPolicy,
)


class Boom(Exception):
    pass


class NotMine(Exception):
    pass


async def _fail(breaker: CircuitBreaker, exc: BaseException | None = None) -> None:
    exc = exc if exc is not None else Boom()
    with pytest.raises(type(exc)):
        async with breaker:
            raise exc


async def test_count_mode_opens_half_opens_and_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[ResilienceEvent] = []
    breaker = CircuitBreaker(name="db", failure_threshold=3, reset_timeout=10)
    breaker.add_listener(events.append)
    for _ in range(2):
        await _fail(breaker)
    async with breaker:
        pass  # a success resets the count
    for _ in range(3):
        await _fail(breaker)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError, match=r"circuit 'db' is open; retry in 10\.000 s"):
        async with breaker:
            pass
    await trio.sleep(10)
    assert breaker.state == "half_open"
    async with breaker:
        pass
    assert breaker.state == "closed"
    assert [e.detail for e in events] == [
        "closed -> open",
        "open -> half_open",
        "half_open -> closed",
    ]
    stats = breaker.statistics()
    assert (stats.failures, stats.successes, stats.rejected, stats.opened) == (5, 2, 1, 1)


async def test_half_open_limits_trials_and_a_failed_trial_reopens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, half_open_max_calls=1)
    await _fail(breaker)
    await trio.sleep(5)
    gate = trio.Event()

    async def trial() -> None:
        async with breaker:
            await gate.wait()
            raise Boom

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_fail_quietly, trial)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CircuitOpenError):
            async with breaker:
                pass
        gate.set()
    assert breaker.state == "open"


async def _fail_quietly(fn: object) -> None:
    with pytest.raises(Boom):
        await fn()  # type: ignore[operator]


async def test_cancellation_is_neither_success_nor_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5)
    await _fail(breaker)
    await trio.sleep(5)
    with trio.move_on_after(1):
        async with breaker:  # the trial is cancelled: its slot is freed
            await trio.sleep_forever()
    assert breaker.state == "half_open"
    async with breaker:
        pass
    assert breaker.state == "closed"


async def test_exception_filters(autojump_clock: trio.testing.MockClock) -> None:
    breaker = CircuitBreaker(
        failure_threshold=1,
        exclude=(NotMine,),
        is_failure=lambda e: not isinstance(e, KeyError),
    )
    await _fail(breaker, NotMine())
    await _fail(breaker, KeyError("x"))
    assert breaker.state == "closed"
    await _fail(breaker)
    assert breaker.state == "open"


async def test_rate_mode_needs_minimum_calls(autojump_clock: trio.testing.MockClock) -> None:
    breaker = CircuitBreaker(failure_rate=0.5, window=10, minimum_calls=4)
    await _fail(breaker)
    await _fail(breaker)
    await _fail(breaker)
    assert breaker.state == "closed"  # 3 calls < minimum
    async with breaker:
        pass
    await _fail(breaker)  # 4 of 5 failed
    assert breaker.state == "open"


async def test_old_failures_leave_the_window(autojump_clock: trio.testing.MockClock) -> None:
    breaker = CircuitBreaker(failure_rate=0.5, window=10, minimum_calls=2)
    await _fail(breaker)
    await trio.sleep(11)
    for _ in range(3):
        async with breaker:
            pass
    await _fail(breaker)  # 1 of 4 in the window
    assert breaker.state == "closed"


async def test_breaker_as_decorator(autojump_clock: trio.testing.MockClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2)

    @breaker
    async def flaky(ok: bool) -> str:
        if not ok:
            raise Boom
        return "fine"

    assert await flaky(True) == "fine"
    for _ in range(2):
        with pytest.raises(Boom):
            await flaky(False)
    with pytest.raises(CircuitOpenError):
        await flaky(True)


def test_breaker_bad_parameters() -> None:
    with pytest.raises(ValueError, match="failure_threshold must be >= 1, got 0"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="reset_timeout must be > 0"):
        CircuitBreaker(reset_timeout=-1)
    with pytest.raises(ValueError, match="failure_rate must be in"):
        CircuitBreaker(failure_rate=1.5)


# ------------------------------------------------------------------------------ bulkhead


async def test_bulkhead_queues_then_rejects(autojump_clock: trio.testing.MockClock) -> None:
    bulkhead = Bulkhead(max_concurrent=2, max_queued=1, name="api")
    gate = trio.Event()
    inside: list[int] = []

    async def work(i: int) -> None:
        async with bulkhead:
            inside.append(i)
            await gate.wait()

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(work, i)
            await trio.testing.wait_all_tasks_blocked()
        stats = bulkhead.statistics()
        assert (stats.active, stats.queued) == (2, 1)
        with pytest.raises(Rejected, match="2 running and 1 queued"):
            async with bulkhead:
                pass
        gate.set()
    assert inside == [0, 1, 2]
    assert bulkhead.statistics().rejected == 1


async def test_bulkhead_cancelled_waiter_holds_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_queued=2)
    async with bulkhead:
        with trio.move_on_after(1):
            async with bulkhead:
                raise AssertionError("unreachable")
        assert bulkhead.statistics().queued == 0
    assert bulkhead.statistics().active == 0


def test_bulkhead_bad_parameters() -> None:
    with pytest.raises(ValueError, match="max_concurrent must be >= 1, got 0"):
        Bulkhead(max_concurrent=0)
    with pytest.raises(ValueError, match="max_queued must be >= 0, got -1"):
        Bulkhead(max_concurrent=1, max_queued=-1)


# --------------------------------------------------------------------------------- retry


async def test_retry_retries_then_succeeds(autojump_clock: trio.testing.MockClock) -> None:
    attempts = 0
    events: list[ResilienceEvent] = []

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise OSError("try again")
        return "ok"

    policy = RetryPolicy(on=OSError, attempts=5, wait_initial=1, wait_jitter=0)
    policy.add_listener(events.append)
    start = trio.current_time()
    assert await policy.call(flaky) == "ok"
    assert attempts == 3
    assert trio.current_time() - start == pytest.approx(1 + 2)  # exponential backoff
    assert [e.key for e in events] == [1, 2]


async def test_retry_does_not_retry_other_errors(autojump_clock: trio.testing.MockClock) -> None:
    attempts = 0

    @RetryPolicy(on=OSError, attempts=5)
    async def broken() -> None:
        nonlocal attempts
        attempts += 1
        raise KeyError("no")

    with pytest.raises(KeyError):
        await broken()
    assert attempts == 1


async def test_retry_deadline_covers_every_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow() -> None:
        await trio.sleep(2)
        raise OSError

    policy = RetryPolicy(on=OSError, attempts=100, deadline=5, wait_initial=1, wait_jitter=0)
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await policy.call(slow)
    assert trio.current_time() - start == pytest.approx(5)


async def test_retry_budget_is_shared(autojump_clock: trio.testing.MockClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, window=10)  # 2 retries per window
    policy = RetryPolicy(on=OSError, attempts=10, budget=budget, wait_initial=0.01)
    attempts = 0

    async def down() -> None:
        nonlocal attempts
        attempts += 1
        raise OSError("down")

    with pytest.raises(RetryBudgetExhausted) as info:
        await policy.call(down)
    assert isinstance(info.value.__cause__, OSError)
    assert attempts == 3  # the first attempt and the two retries the budget allowed
    with pytest.raises(RetryBudgetExhausted):
        await policy.call(down)  # a second caller gets no retry at all
    assert attempts == 4
    assert budget.statistics().retries == 2


def test_retry_bad_parameters() -> None:
    with pytest.raises(ValueError, match="attempts must be an int >= 1, got 0"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="deadline must be > 0"):
        RetryPolicy(deadline=0)
    with pytest.raises(ValueError, match="window must be > 0"):
        RetryBudget(window=0)
