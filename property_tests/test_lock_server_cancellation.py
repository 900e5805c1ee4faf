"""The lock service's public async calls under injected cancellations and deadlines
(trio_foundation.verify.cancellation): serve_lock_service, open_remote_lock_service /
connect and acquire. Whatever checkpoint a cancellation hits: no task outlives the
block, no socket or file stays open, only documented exceptions escape."""

from __future__ import annotations

import tempfile

from descriptors import left_open, open_descriptors
from hypothesis import given, settings

from trio_foundation import LeaseLostError
from trio_foundation.coordination.lock_server import serve_lock_service
from trio_foundation.coordination.tcp_lock import open_remote_lock_service
from trio_foundation.verify.cancellation import (
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)

# The harness's MockClock jumps to the next deadline whenever every task waits,
# including on real sockets: keep connection timeouts out of reach.
FAR = 1e5


def scenario_for(data_dir: str, held: list[int]):  # type: ignore[no-untyped-def]
    async def scenario(inj: Injector) -> None:
        import trio

        with inj.scope("server"):
            async with trio.open_nursery() as nursery:
                host, port = await nursery.start(
                    lambda task_status: serve_lock_service(
                        ("127.0.0.1", 0), data_dir, max_ttl=30, task_status=task_status
                    )
                )
                url = f"tcp://{host}:{port}"
                with inj.scope("connect"):
                    async with (
                        open_remote_lock_service(url, timeout=FAR, seed=1) as a,
                        open_remote_lock_service(url, timeout=FAR, seed=2) as b,
                    ):
                        with inj.scope("acquire-a"):
                            async with a.acquire(ttl=20) as lease:
                                held.append(lease.token)
                                await trio.sleep(1)
                        with inj.scope("acquire-b"):
                            async with b.acquire(ttl=20) as lease:
                                held.append(lease.token)
                nursery.cancel_scope.cancel()

    return scenario


@settings(deadline=None)
@given(injection_plans(max_step=120, max_target=4, max_delay=2))
def test_lock_service_calls_under_injected_cancellation(plan: InjectionPlan) -> None:
    baseline = open_descriptors()
    held: list[int] = []
    with tempfile.TemporaryDirectory() as data_dir:
        result = run_injected(
            scenario_for(data_dir, held),
            plan,
            allowed=(LeaseLostError,),
            real_time_limit=30,
        )
    assert not (leaked := left_open(baseline)), f"outlived the service: {leaked}"
    assert held == sorted(held)
    if not result.applied:
        assert len(held) == 2


# A caller that leaves ``acquire`` while its request is in flight must not keep
# the lock for nobody: the grant that arrives later is handed back at once (the
# client core remembers abandoned requests), so the next client waits about one
# round trip, not the abandoned lease's ttl.
ABANDONED_TTL = 20.0


def abandoned_scenario_for(data_dir: str, waited: list[float]):  # type: ignore[no-untyped-def]
    async def scenario(inj: Injector) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(
                lambda task_status: serve_lock_service(
                    ("127.0.0.1", 0), data_dir, max_ttl=30, task_status=task_status
                )
            )
            url = f"tcp://{host}:{port}"
            async with (
                open_remote_lock_service(url, timeout=FAR, seed=1) as a,
                open_remote_lock_service(url, timeout=FAR, seed=2) as b,
            ):
                with inj.scope("acquire-a"):
                    async with a.acquire(ttl=ABANDONED_TTL):
                        await trio.sleep(1)
                left = trio.current_time()
                with trio.fail_after(3 * ABANDONED_TTL):
                    async with b.acquire(ttl=ABANDONED_TTL):
                        waited.append(trio.current_time() - left)
            nursery.cancel_scope.cancel()

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
    with tempfile.TemporaryDirectory() as data_dir:
        result = run_injected(abandoned_scenario_for(data_dir, waited), plan, real_time_limit=30)
    assert len(waited) == 1, result
    # without the release of the abandoned grant, b would wait out most of the ttl
    assert waited[0] < ABANDONED_TTL / 4, (
        f"the next client waited {waited[0]:g} virtual s after the caller left"
        f" (ttl {ABANDONED_TTL:g}); applied: {result.applied}"
    )
