"""A cancelled acquire on the in-process service leaves the lock free within a round
trip (the client core answers the grant nobody waits for with a release), under
cancellations and deadlines injected at arbitrary steps by
:mod:`trio_foundation.verify.cancellation`. The TCP server's twin is in
``property_tests/test_lock_server_cancellation.py``."""

from __future__ import annotations

import trio
from hypothesis import given, settings

from trio_foundation.coordination.lease_lock import open_lock_service
from trio_foundation.verify.cancellation import (
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)

TTL = 20.0


def scenario_for(waited: list[float]):  # type: ignore[no-untyped-def]
    async def scenario(inj: Injector) -> None:
        async with open_lock_service(max_ttl=30) as service:
            async with service.connect(seed=1) as a, service.connect(seed=2) as b:
                with inj.scope("acquire-a"):
                    async with a.acquire(ttl=TTL):
                        await trio.sleep(1)
                left = trio.current_time()
                with trio.fail_after(3 * TTL):
                    async with b.acquire(ttl=TTL):
                        waited.append(trio.current_time() - left)

    return scenario


@settings(deadline=None)
@given(
    injection_plans(
        min_injections=1, max_injections=1, max_step=60, max_opened=1, max_after_open=40
    )
)
def test_a_cancelled_acquire_leaves_the_lock_free_within_a_round_trip(
    plan: InjectionPlan,
) -> None:
    waited: list[float] = []
    result = run_injected(scenario_for(waited), plan, real_time_limit=30)
    assert len(waited) == 1, result
    # the in-process network delivers at once: the next client waits for its own
    # backoff only (without the release it would wait out most of the 20 s ttl)
    assert waited[0] < TTL / 10, (
        f"the next client waited {waited[0]:g} virtual s after the caller left"
        f" (ttl {TTL:g}); applied: {result.applied}"
    )
