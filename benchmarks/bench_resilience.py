"""Benchmarks: the resilience services against their peers, in one run, one process.

    python benchmarks/bench_resilience.py [--quick]

Each figure is the best of 5 timed loops (the garbage collector disabled during each),
in microseconds per operation; the peers run in the same process on the same machine:

* cache: ``Cache.get`` (hit) and ``Cache.set`` (overwrite, and insert with eviction at
  the maximum size) vs cachetools ``LRUCache`` and ``TTLCache`` (``[]`` lookups and
  ``[] =`` stores). Goal: get >= 1.3x TTLCache's speed.
* rate limiter: one check of one key with a limit of 100 per second, hammered (so
  nearly every check is refused after the first 100) — ``RateLimiter.try_acquire``
  with ``SlidingLog`` and ``TokenBucket`` vs limits' ``MovingWindowRateLimiter.hit``
  (in-memory storage) and pyrate-limiter's ``Limiter.try_acquire(blocking=False)``
  (in-memory bucket, sliding log). Goal: >= 5x limits' moving window.
* circuit breaker: ``async with breaker: pass`` in a trio run, total and overhead beyond
  an empty async context manager (``async with null: pass``), the two loops alternating
  in one trio run (best of 10 each); pybreaker's overhead is
  ``breaker.call(f)`` minus ``f()`` (sync); purgatory's is ``async with breaker`` minus
  the empty context manager, under asyncio. Goals: overhead <= 1 us and <= 0.5x
  pybreaker's.
* pool: ``async with pool.acquire(): pass`` vs ``async with trio.CapacityLimiter``
  (uncontended). Goal: <= 2x.

A peer that does not import is reported as missing and its ratios are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from trio_foundation.resilience import (
    Cache,
    CircuitBreaker,
    RateLimiter,
    SlidingLog,
    TokenBucket,
    open_pool,
)

REPEATS = 5


def best(fn: Callable[[int], float], n: int) -> float:
    """Best of REPEATS runs of fn(n) (which returns seconds), in us per operation."""
    times = []
    for _ in range(REPEATS):
        gc.collect()
        gc.disable()
        try:
            times.append(fn(n))
        finally:
            gc.enable()
    return min(times) / n * 1e6


def loop_sync(op: Callable[[], object]) -> Callable[[int], float]:
    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            op()
        return time.perf_counter() - start

    return run


def in_trio(body: Callable[[int], Awaitable[float]]) -> Callable[[int], float]:
    def run(n: int) -> float:
        return trio.run(body, n)

    return run


class Null:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


# ---------------------------------------------------------------------------------- cache


def bench_cache(n: int, out: dict[str, float]) -> None:
    import cachetools

    size = 10_000
    ours: Cache[int, int] = Cache(max_size=size, ttl=3600, clock=time.monotonic)
    lru: Any = cachetools.LRUCache(maxsize=size)
    ttl: Any = cachetools.TTLCache(maxsize=size, ttl=3600)
    for i in range(size):
        ours.set(i, i)
        lru[i] = i
        ttl[i] = i
    get = ours.get
    out["cache get: trio-foundation"] = best(loop_sync(lambda: get(42)), n)
    out["cache get: cachetools LRUCache"] = best(loop_sync(lambda: lru[42]), n)
    out["cache get: cachetools TTLCache"] = best(loop_sync(lambda: ttl[42]), n)
    cset = ours.set
    out["cache set: trio-foundation"] = best(loop_sync(lambda: cset(42, 1)), n)
    out["cache set: cachetools LRUCache"] = best(loop_sync(lambda: lru.__setitem__(42, 1)), n)
    out["cache set: cachetools TTLCache"] = best(loop_sync(lambda: ttl.__setitem__(42, 1)), n)
    counter = iter(range(size, 10**12))
    out["cache insert+evict: trio-foundation"] = best(loop_sync(lambda: cset(next(counter), 1)), n)
    out["cache insert+evict: cachetools TTLCache"] = best(
        loop_sync(lambda: ttl.__setitem__(next(counter), 1)), n
    )


# ---------------------------------------------------------------------------- rate limiter


def bench_limiter(n: int, out: dict[str, float]) -> None:
    log = RateLimiter(SlidingLog(limit=100, window=1.0), clock=time.monotonic)
    bucket = RateLimiter(TokenBucket(rate=100.0, burst=100), clock=time.monotonic)
    out["limiter check: trio-foundation SlidingLog"] = best(
        loop_sync(lambda: log.try_acquire("k")), n
    )
    out["limiter check: trio-foundation TokenBucket"] = best(
        loop_sync(lambda: bucket.try_acquire("k")), n
    )
    try:
        import limits
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        moving = MovingWindowRateLimiter(MemoryStorage())
        item = limits.parse("100/second")
        out["limiter check: limits moving window"] = best(
            loop_sync(lambda: moving.hit(item, "k")), n
        )
    except ImportError:
        print("limits is not installed: skipped")
    try:
        from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

        pyrate = Limiter(InMemoryBucket([Rate(100, Duration.SECOND)]))
        out["limiter check: pyrate-limiter"] = best(
            loop_sync(lambda: pyrate.try_acquire("k", blocking=False)), n
        )
    except ImportError:
        print("pyrate-limiter is not installed: skipped")


# ---------------------------------------------------------------------------------- breaker


def bench_breaker(n: int, out: dict[str, float]) -> None:
    breaker = CircuitBreaker(failure_threshold=5)
    null = Null()

    async def with_breaker(k: int) -> float:
        start = time.perf_counter()
        for _ in range(k):
            async with breaker:
                pass
        return time.perf_counter() - start

    async def with_null(k: int) -> float:
        start = time.perf_counter()
        for _ in range(k):
            async with null:
                pass
        return time.perf_counter() - start

    async def alternating(k: int) -> tuple[float, float]:
        # Both loops in one trio run, alternating, 2 * REPEATS times each: load on the
        # shared machine hits both alike, and the overhead is a difference of minima
        # taken minutes apart no more.
        totals, empties = [], []
        for _ in range(2 * REPEATS):
            gc.collect()
            gc.disable()
            try:
                totals.append(await with_breaker(k))
                empties.append(await with_null(k))
            finally:
                gc.enable()
        return min(totals) / k * 1e6, min(empties) / k * 1e6

    total, empty = trio.run(alternating, n)
    out["breaker async with: trio-foundation (total)"] = total
    out["breaker async with: empty context manager"] = empty
    out["breaker overhead: trio-foundation"] = total - empty
    try:
        import pybreaker

        pb = pybreaker.CircuitBreaker(fail_max=5)

        def f() -> None:
            return None

        out["breaker overhead: pybreaker"] = best(loop_sync(lambda: pb.call(f)), n) - best(
            loop_sync(f), n
        )
    except ImportError:
        print("pybreaker is not installed: skipped")
    try:
        import purgatory

        def purgatory_run(k: int) -> float:
            async def main() -> float:
                factory = purgatory.AsyncCircuitBreakerFactory()
                cb = await factory.get_breaker("x")
                start = time.perf_counter()
                for _ in range(k):
                    async with cb:
                        pass
                return time.perf_counter() - start

            return asyncio.run(main())

        def asyncio_null(k: int) -> float:
            async def main() -> float:
                start = time.perf_counter()
                for _ in range(k):
                    async with null:
                        pass
                return time.perf_counter() - start

            return asyncio.run(main())

        out["breaker overhead: purgatory"] = best(purgatory_run, n) - best(asyncio_null, n)
    except ImportError:
        print("purgatory is not installed: skipped")


# ------------------------------------------------------------------------------------ pool


def bench_pool(n: int, out: dict[str, float]) -> None:
    async def make() -> object:
        return object()

    async def pool_loop(k: int) -> float:
        async with open_pool(make, max_size=10) as pool:
            async with pool.acquire():
                pass
            start = time.perf_counter()
            for _ in range(k):
                async with pool.acquire():
                    pass
            took = time.perf_counter() - start
        return took

    async def limiter_loop(k: int) -> float:
        limiter = trio.CapacityLimiter(10)
        start = time.perf_counter()
        for _ in range(k):
            async with limiter:
                pass
        return time.perf_counter() - start

    out["pool acquire+release: trio-foundation"] = best(in_trio(pool_loop), n)
    out["pool acquire+release: trio.CapacityLimiter"] = best(in_trio(limiter_loop), n)


RATIOS = [
    (
        "cache get, TTLCache / ours (goal >= 1.3)",
        "cache get: cachetools TTLCache",
        "cache get: trio-foundation",
    ),
    ("cache get, LRUCache / ours", "cache get: cachetools LRUCache", "cache get: trio-foundation"),
    ("cache set, TTLCache / ours", "cache set: cachetools TTLCache", "cache set: trio-foundation"),
    (
        "limiter, limits moving window / ours SlidingLog (goal >= 5)",
        "limiter check: limits moving window",
        "limiter check: trio-foundation SlidingLog",
    ),
    (
        "limiter, pyrate-limiter / ours SlidingLog",
        "limiter check: pyrate-limiter",
        "limiter check: trio-foundation SlidingLog",
    ),
    (
        "breaker overhead, ours / pybreaker (goal <= 0.5)",
        "breaker overhead: trio-foundation",
        "breaker overhead: pybreaker",
    ),
    (
        "breaker overhead, ours / purgatory",
        "breaker overhead: trio-foundation",
        "breaker overhead: purgatory",
    ),
    (
        "pool, ours / CapacityLimiter (goal <= 2)",
        "pool acquire+release: trio-foundation",
        "pool acquire+release: trio.CapacityLimiter",
    ),
]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer operations")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 200_000
    out: dict[str, float] = {}
    for bench in (bench_cache, bench_limiter, bench_breaker, bench_pool):
        try:
            bench(n, out)
        except ImportError as exc:
            print(f"{bench.__name__}: a peer is missing ({exc}); skipped")
    width = max(len(k) for k in out)
    for name, us in out.items():
        print(f"{name:<{width}}  {us:8.3f} us")
    print()
    for label, num, den in RATIOS:
        if num in out and den in out and out[den] > 0:
            print(f"{label:<{width}}  {out[num] / out[den]:8.2f}")
    return out


if __name__ == "__main__":
    main()
