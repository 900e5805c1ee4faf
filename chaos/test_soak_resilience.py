"""Soak: many operations over rotating keys; memory measured with tracemalloc stays flat.

CI runs 30,000 operations per component (5,000 for the async mix); the full soak
(1,000,000 each) is marked ``slow``:

    pytest chaos/test_soak_resilience.py -m slow -s

Each soak records the traced memory after a warm-up (a tenth of the operations, at
least 2,500: the bounded tables are full by then) and at
the end (after ``gc.collect()``), and fails if it grew by more than 64 KiB. The keys
rotate through far more distinct values than any bound (50,000 keys; ``max_keys`` and
``max_size`` 1,000), and the clock advances so that keys go idle and expire: the flaw
replaced here kept one bucket per key forever.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import trio
import trio.testing

from trio_foundation.resilience import (
    Bulkhead,
    Cache,
    CircuitBreaker,
    CircuitOpenError,
    RateLimiter,
    SlidingLog,
    TokenBucket,
    open_cache,
    open_pool,
)

KEYS = 50_000
BOUND = 1_000
GROWTH_LIMIT = 64 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    tracemalloc.start()
    try:
        yield lambda: (gc.collect(), tracemalloc.get_traced_memory()[0])[1]
    finally:
        tracemalloc.stop()


def soak_sync(ops: int) -> dict[str, tuple[int, int]]:
    clock = Clock()
    log = RateLimiter(SlidingLog(limit=5, window=1.0), max_keys=BOUND, clock=clock)
    bucket = RateLimiter(TokenBucket(rate=5.0, burst=5), max_keys=BOUND, clock=clock)
    cache: Cache[int, int] = Cache(max_size=BOUND, ttl=5.0, clock=clock)
    figures: dict[str, tuple[int, int]] = {}
    for name, op in (
        ("rate limiter, sliding log", lambda i: log.try_acquire(i % KEYS)),
        ("rate limiter, token bucket", lambda i: bucket.try_acquire(i % KEYS, 1 + i % 3)),
        ("cache", lambda i: cache.get(i % KEYS) is None and cache.set(i % KEYS, i)),
    ):
        with traced() as memory:
            warm = 0
            for i in range(ops):
                clock.now += 0.001
                op(i)
                if i == ops // 10:
                    warm = memory()
            figures[name] = (warm, memory())
    assert log.statistics().keys <= BOUND and bucket.statistics().keys <= BOUND
    assert len(cache) <= BOUND
    assert log.statistics().evicted > 0 and cache.statistics().evictions > 0
    return figures


def soak_async(ops: int) -> dict[str, tuple[int, int]]:
    figures: dict[str, tuple[int, int]] = {}

    async def main() -> None:
        breaker = CircuitBreaker(failure_threshold=3, reset_timeout=1)
        bulkhead = Bulkhead(max_concurrent=4, max_queued=4)

        async def make() -> object:
            return object()

        async with (
            open_cache(max_size=BOUND, ttl=2.0) as cache,
            open_pool(make, max_size=4) as pool,
        ):

            async def load() -> int:
                await trio.sleep(0.001)
                return 1

            failures = [0]

            async def one(i: int) -> None:
                async with bulkhead, pool.acquire():
                    try:
                        async with breaker:
                            await cache.get_or_compute(i % KEYS, load)
                            if i % 97 == 0:
                                raise OSError("a failure now and then")
                    except (OSError, CircuitOpenError):
                        failures[0] += 1

            with traced() as memory:
                warm = 0
                for i in range(ops):
                    if i % 4 == 0:
                        async with trio.open_nursery() as nursery:
                            for j in range(i, min(i + 4, ops)):
                                nursery.start_soon(one, j)
                    if i == max(ops // 10, 2_500):
                        warm = memory()
                figures["cache get_or_compute + pool + bulkhead + breaker"] = (warm, memory())
            assert len(cache) <= BOUND and pool.statistics().size <= 4
            assert failures[0] > 0 and breaker.statistics().opened == 0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return figures


def _check(figures: dict[str, tuple[int, int]]) -> None:
    for name, (warm, end) in figures.items():
        print(f"{name}: {warm / 1024:.1f} KiB after warm-up, {end / 1024:.1f} KiB at the end")
        assert end - warm < GROWTH_LIMIT, f"{name}: memory grew {end - warm} bytes"


def test_short_soak_memory_is_flat() -> None:
    _check(soak_sync(30_000))
    _check(soak_async(5_000))


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_full_soak_memory_is_flat() -> None:
    _check(soak_sync(1_000_000))
    _check(soak_async(1_000_000))
