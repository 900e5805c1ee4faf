"""Unit tests of the rate limiter: algorithms, fairness, cancellation, key bound, bad input."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_foundation.resilience import (
    GCRA,
    RateLimiter,
    Rejected,
    SlidingCounter,
    SlidingLog,
    TokenBucket,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ALGOS = [
    TokenBucket(rate=2.0, burst=4),
    GCRA(rate=2.0, burst=4),
    SlidingLog(limit=4, window=2.0),
    SlidingCounter(limit=4, window=2.0),
]


@pytest.mark.parametrize("algo", ALGOS, ids=lambda a: type(a).__name__)
def test_burst_then_refusal_then_refill(algo: object) -> None:
    clock = Clock()
    limiter = RateLimiter(algo, clock=clock)  # type: ignore[arg-type]
    assert [limiter.try_acquire("k") for _ in range(5)] == [True] * 4 + [False]
    assert limiter.try_acquire("other")  # keys are independent
    clock.now = 4.0  # two windows / plenty of refill later
    assert limiter.try_acquire("k")
    stats = limiter.statistics()
    assert (stats.granted, stats.denied, stats.keys) == (6, 1, 2)


def test_token_bucket_refills_at_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(TokenBucket(rate=2.0, burst=2), clock=clock)
    assert limiter.try_acquire(weight=2)
    assert not limiter.try_acquire()
    clock.now = 0.5  # one token back
    assert limiter.try_acquire()
    assert not limiter.try_acquire()


def test_sliding_log_forgets_exactly_after_window() -> None:
    clock = Clock()
    limiter = RateLimiter(SlidingLog(limit=2, window=1.0), clock=clock)
    assert limiter.try_acquire() and limiter.try_acquire()
    clock.now = 0.999
    assert not limiter.try_acquire()
    clock.now = 1.0
    assert limiter.try_acquire()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TokenBucket(rate=0, burst=1), "rate must be > 0"),
        (lambda: TokenBucket(rate=-1.0, burst=1), "rate must be > 0"),
        (lambda: TokenBucket(rate=float("inf"), burst=1), "rate must be > 0"),
        (lambda: GCRA(rate=1.0, burst=0), "burst must be >= 1"),
        (lambda: SlidingLog(limit=0, window=1.0), "limit must be >= 1"),
        (lambda: SlidingLog(limit=1, window=0), "window must be > 0"),
        (lambda: SlidingCounter(limit=1, window=-2.0), "window must be > 0"),
        (lambda: RateLimiter(TokenBucket(rate=1.0, burst=1), max_keys=0), "max_keys"),
    ],
)
def test_bad_parameters_are_refused(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_weight_above_capacity_is_refused() -> None:
    limiter = RateLimiter(TokenBucket(rate=1.0, burst=3), clock=Clock())
    with pytest.raises(ValueError, match="weight must be between 1 and the capacity 3, got 4"):
        limiter.try_acquire(weight=4)
    with pytest.raises(ValueError, match="got 0"):
        limiter.try_acquire(weight=0)
    with pytest.raises(TypeError, match="weight must be an int"):
        limiter.try_acquire(weight=1.5)  # type: ignore[arg-type]
    assert limiter.statistics().keys == 0  # misuse recorded nothing


def test_idle_keys_are_evicted_and_busy_keys_are_not() -> None:
    clock = Clock()
    limiter = RateLimiter(TokenBucket(rate=1.0, burst=1), max_keys=2, clock=clock)
    assert limiter.try_acquire("a") and limiter.try_acquire("b")
    # Both busy (empty buckets): a third key is refused, never let through.
    assert not limiter.try_acquire("c")
    assert limiter.statistics().refused_keys == 1
    clock.now = 1.0  # both refilled: idle
    assert limiter.try_acquire("c")
    assert limiter.statistics().keys <= 2
    clock.now = 5.0
    held = limiter.statistics().keys
    assert held >= 1
    assert limiter.evict_idle() == held
    assert limiter.statistics().keys == 0


def test_many_keys_stay_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(GCRA(rate=100.0, burst=1), max_keys=50, clock=clock)
    for i in range(10_000):
        clock.now = i * 0.001
        limiter.try_acquire(i)
        assert limiter.statistics().keys <= 50


async def test_acquire_waits_in_arrival_order(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(TokenBucket(rate=1.0, burst=1))
    order: list[tuple[str, float]] = []

    async def take(name: str, weight: int) -> None:
        await limiter.acquire("k", weight)
        order.append((name, trio.current_time()))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for name in "abcd":
            nursery.start_soon(take, name, 1)
            await trio.testing.wait_all_tasks_blocked()
    assert [n for n, _ in order] == list("abcd")
    assert [round(t - start, 6) for _, t in order] == [0.0, 1.0, 2.0, 3.0]


async def test_try_acquire_does_not_jump_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(TokenBucket(rate=1.0, burst=2))
    assert limiter.try_acquire(weight=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(limiter.acquire, None, 2)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(1.0)  # one token back, but the waiter wants two
        assert not limiter.try_acquire()


async def test_cancelled_waiter_takes_nothing_and_frees_its_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(TokenBucket(rate=1.0, burst=1))
    assert limiter.try_acquire()
    got: list[str] = []

    async def take(name: str) -> None:
        await limiter.acquire()
        got.append(name)

    scope = trio.CancelScope()

    async def cancelled_head() -> None:
        with scope:
            await limiter.acquire()
            got.append("head")

    async with trio.open_nursery() as nursery:
        # The head of the queue is cancelled: the one behind it gets its turn.
        nursery.start_soon(cancelled_head)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(take, "second")
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
    assert got == ["second"]
    assert limiter.statistics().waiting == 0
    assert limiter.try_acquire() is False  # `second` took the refilled token


async def test_acquire_is_a_checkpoint_and_max_waiters_is_enforced(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(TokenBucket(rate=1.0, burst=1), max_waiters=1)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await limiter.acquire()
    assert limiter.statistics().granted == 0
    assert limiter.try_acquire()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(limiter.acquire)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Rejected, match="1 tasks waiting"):
            await limiter.acquire()
