"""Every public async API of the resilience services under the project's injection harness.

``trio_foundation.verify.cancellation`` cancels (or moves the deadline of) the callers'
scopes at steps Hypothesis chooses, under a seeded scheduler and ``MockClock``. After
every step the check asserts nothing is held for a caller that left; at the end, that
the service is back at rest, and only the documented exceptions escaped.
"""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import HealthCheck, given, settings

from trio_foundation.resilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    RateLimiter,
    Rejected,
    RetryPolicy,
    TokenBucket,
    open_cache,
    open_pool,
)
from trio_foundation.verify.cancellation import (
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)

CALLERS = 4
SETTINGS = settings(
    max_examples=max(settings.default.max_examples // 4, 10),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PLANS = injection_plans(max_injections=3, max_step=60, max_target=CALLERS)


@SETTINGS
@given(plan=PLANS)
def test_rate_limiter_acquire(plan: InjectionPlan) -> None:
    limiter = RateLimiter(TokenBucket(rate=1.0, burst=2))
    grants: list[tuple[float, int]] = []
    inside: set[int] = set()

    async def caller(inj: Injector, i: int) -> None:
        with inj.scope(f"caller {i}"):
            inside.add(i)
            try:
                await limiter.acquire("k", 1 + i % 2)
                grants.append((trio.current_time(), 1 + i % 2))
            finally:
                inside.discard(i)

    async def scenario(inj: Injector) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(CALLERS):
                nursery.start_soon(caller, inj, i)

    def check() -> None:
        assert limiter.statistics().waiting <= len(inside)
        for t1, _ in grants:
            for t2, _ in grants:
                if t1 <= t2:
                    got = sum(w for t, w in grants if t1 <= t <= t2)
                    assert got <= 2 + 1.0 * (t2 - t1) + 1e-9

    run_injected(scenario, plan, check=check)
    assert limiter.statistics().waiting == 0


@SETTINGS
@given(plan=PLANS)
def test_cache_get_or_compute(plan: InjectionPlan) -> None:
    state: dict[str, Any] = {"loads": 0, "cache": None}
    got: list[str] = []

    async def load() -> str:
        state["loads"] += 1
        await trio.sleep(1)
        return "v"

    async def caller(inj: Injector, cache: Any, i: int) -> None:
        with inj.scope(f"caller {i}"):
            await trio.sleep(i * 0.5)
            got.append(await cache.get_or_compute("k", load))

    async def scenario(inj: Injector) -> None:
        async with open_cache(max_size=2) as cache:
            state["cache"] = cache
            async with trio.open_nursery() as nursery:
                for i in range(CALLERS):
                    nursery.start_soon(caller, inj, cache, i)

    def check() -> None:
        cache = state["cache"]
        if cache is not None:
            assert cache.statistics().in_flight <= 1
            assert len(cache) <= 2

    run_injected(scenario, plan, check=check)
    assert set(got) <= {"v"}
    assert state["cache"].statistics().in_flight == 0


@SETTINGS
@given(plan=PLANS)
def test_pool_acquire(plan: InjectionPlan) -> None:
    state: dict[str, Any] = {"pool": None, "made": 0}
    inside: set[int] = set()

    async def make() -> int:
        await trio.sleep(0.5)
        state["made"] += 1
        return int(state["made"])

    async def caller(inj: Injector, pool: Any, i: int) -> None:
        with inj.scope(f"borrower {i}"):
            async with pool.acquire() as r:
                assert r not in {state.get(j) for j in inside}
                inside.add(i)
                state[i] = r
                try:
                    await trio.sleep(1)
                finally:
                    inside.discard(i)

    async def scenario(inj: Injector) -> None:
        async with open_pool(make, max_size=2) as pool:
            state["pool"] = pool
            async with trio.open_nursery() as nursery:
                for i in range(CALLERS):
                    nursery.start_soon(caller, inj, pool, i)

    def check() -> None:
        pool = state["pool"]
        if pool is not None:
            stats = pool.statistics()
            assert stats.size <= 2
            assert stats.borrowed == len(inside)

    run_injected(scenario, plan, check=check)
    assert state["pool"].statistics().borrowed == 0


@SETTINGS
@given(plan=PLANS)
def test_bulkhead(plan: InjectionPlan) -> None:
    bulkhead = Bulkhead(max_concurrent=2, max_queued=1)
    inside: set[int] = set()

    async def caller(inj: Injector, i: int) -> None:
        with inj.scope(f"caller {i}"):
            try:
                async with bulkhead:
                    inside.add(i)
                    try:
                        await trio.sleep(1)
                    finally:
                        inside.discard(i)
            except Rejected:
                pass

    async def scenario(inj: Injector) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(CALLERS):
                nursery.start_soon(caller, inj, i)

    def check() -> None:
        stats = bulkhead.statistics()
        assert stats.active <= 2 and stats.queued <= 1
        assert len(inside) <= stats.active

    run_injected(scenario, plan, check=check)
    assert bulkhead.statistics() == type(bulkhead.statistics())(
        0, 0, bulkhead.statistics().rejected
    )


@SETTINGS
@given(plan=PLANS)
def test_breaker_and_retry(plan: InjectionPlan) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=1, half_open_max_calls=1)
    policy = RetryPolicy(on=OSError, attempts=3, deadline=20, wait_initial=0.5, wait_jitter=0)

    async def flaky(i: int) -> None:
        async with breaker:
            await trio.sleep(0.5)
            if i % 2:
                raise OSError("down")

    async def caller(inj: Injector, i: int) -> None:
        with inj.scope(f"caller {i}"):
            try:
                await policy.call(flaky, i)
            except (OSError, CircuitOpenError, trio.TooSlowError):
                pass

    async def scenario(inj: Injector) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(CALLERS):
                nursery.start_soon(caller, inj, i)

    def check() -> None:
        assert breaker._trials <= 1  # statistics() reads the clock: not from a check

    run_injected(scenario, plan, check=check)
    assert not breaker._in_call, "a call left the breaker without being recorded"
    assert breaker._trials == 0
