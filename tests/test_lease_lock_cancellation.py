"""Regression tests for issue 7's lease-lock faults: cancellation, teardown, refusals.

The first two faults depend on the order in which trio's scheduler runs two
tasks woken in the same batch, so each test runs its scenario over many
scheduler seeds (``random_module()`` seeds trio's scheduler under Hypothesis).
"""

from __future__ import annotations

import inspect
import signal
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_foundation import FoundationError, LeaseLostError, LeaseRefusedError
from trio_foundation.coordination.lease_lock import (
    RETRYABLE_REFUSALS,
    LockService,
    open_lock_service,
)
from trio_foundation.protocols import lease_lock as lease_lock_core
from trio_foundation.protocols.lease_lock import Granted
from trio_foundation.verify.cancellation import Injection, InjectionPlan, Injector, run_injected

SEEDS = settings(max_examples=40, deadline=None, database=None)


def run(main: Callable[[], Any]) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def on_grant_to(service: LockService, node: int, action: Callable[[], None]) -> None:
    """Call ``action`` as the server sends a grant to ``node`` (test instrumentation)."""
    send = service.network.send

    def spy(src: int, dst: int, msg: Any) -> bool:
        queued = send(src, dst, msg)
        if dst == node and isinstance(msg, Granted):
            action()
        return queued

    service.network.send = spy  # type: ignore[method-assign]


# --------------------------------------------------------------------------- fault 1


async def cancel_as_the_grant_arrives() -> None:
    """Fault 1: the waiter is cancelled in the batch in which its node takes the grant."""
    async with open_lock_service() as service:
        async with service.connect(seed=1) as a, service.connect(seed=2) as b:
            waiting = trio.CancelScope()
            on_grant_to(service, b.node_id, waiting.cancel)
            async with trio.open_nursery() as nursery:

                async def hold_a() -> None:
                    async with a.acquire(ttl=2):
                        await trio.sleep(1)

                nursery.start_soon(hold_a)
                await trio.sleep(0.5)
                with waiting:
                    async with b.acquire(ttl=2):
                        pytest.fail("the body ran although its acquire was cancelled")
                assert waiting.cancelled_caught
            # beyond the ttl, the server holds no lease for b (nor for a)
            await trio.sleep(2.5)
            now = trio.current_time()
            assert not service.server.holds(b.node_id, now), "b's lease outlived its caller"
            # and b can acquire again
            with trio.fail_after(5):
                async with b.acquire(ttl=2) as lease:
                    assert service.server.holder == b.node_id
                    assert lease.token > 1


@SEEDS
@given(st.random_module())
def test_an_acquire_cancelled_as_the_grant_arrives_leaves_no_lease(_: object) -> None:
    run(cancel_as_the_grant_arrives)


# --------------------------------------------------------------------------- fault 2


async def cancel_a_connection_holding_a_lease() -> None:
    """Fault 2: ``move_on_after`` around connect + acquire + body raised RuntimeError."""
    async with open_lock_service() as service:
        with trio.move_on_after(1) as outer:
            async with service.connect() as lock, lock.acquire(ttl=10):
                await trio.sleep(5)
        assert outer.cancelled_caught
        # the release was sent although the connection was torn down with it
        await trio.sleep(0.01)
        assert service.server.holder is None
        async with service.connect() as other, other.acquire(ttl=10) as lease:
            assert lease.token == 2


@SEEDS
@given(st.random_module())
def test_a_connection_cancelled_while_its_lease_is_held_closes_cleanly(_: object) -> None:
    run(cancel_a_connection_holding_a_lease)


async def cancel_a_service_with_everything_inside() -> None:
    with trio.move_on_after(1) as outer:
        async with open_lock_service() as service, service.connect() as lock:
            async with lock.acquire(ttl=10):
                await trio.sleep(5)
    assert outer.cancelled_caught


@SEEDS
@given(st.random_module())
def test_a_service_cancelled_with_everything_inside_closes_cleanly(_: object) -> None:
    run(cancel_a_service_with_everything_inside)


def test_acquire_on_a_closed_connection_is_refused_clearly() -> None:
    async def main() -> None:
        async with open_lock_service() as service:
            async with service.connect() as lock:
                pass
            with pytest.raises(RuntimeError, match="the connection of client 1 is closed"):
                async with lock.acquire(ttl=1):
                    pass

    run(main)


# --------------------------------------------------------------------------- fault 3


def test_a_ttl_above_max_ttl_is_refused_at_once() -> None:
    """Fault 3: the server's "exceeds max_ttl" denial was retried forever."""

    async def main() -> None:
        async with open_lock_service(max_ttl=30) as service, service.connect() as lock:
            start = trio.current_time()
            with trio.fail_after(5), pytest.raises(LeaseRefusedError) as info:
                async with lock.acquire(ttl=60):
                    pytest.fail("granted a ttl above max_ttl")
            assert trio.current_time() - start < 0.1
            assert isinstance(info.value, FoundationError)
            assert "exceeds max_ttl" in info.value.reason
            assert info.value.client == lock.node_id
            # the refusal left the client usable
            async with lock.acquire(ttl=30) as lease:
                assert lease.token == 1

    run(main)


def test_a_held_lock_is_still_retried_until_it_is_free() -> None:
    async def main() -> None:
        async with open_lock_service() as service:
            async with service.connect(seed=1) as a, service.connect(seed=2) as b:
                async with trio.open_nursery() as nursery:

                    async def hold_a() -> None:
                        async with a.acquire(ttl=2):
                            await trio.sleep(3)

                    nursery.start_soon(hold_a)
                    await trio.sleep(0.1)
                    async with b.acquire(ttl=2):
                        assert trio.current_time() >= 3

    run(main)


# --------------------------------------------------------------------------- exceptions


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt(), SystemExit(3), ValueError("from the body")], ids=repr
)
def test_an_exception_from_the_body_propagates_unwrapped(error: BaseException) -> None:
    """Before the fix, each arrived wrapped in two nested ExceptionGroups."""
    released: list[bool] = []

    async def main() -> None:
        async with open_lock_service() as service:
            try:
                async with service.connect() as lock, lock.acquire(ttl=5):
                    raise error
            finally:
                await trio.sleep(0.01)
                released.append(service.server.holder is None)

    with pytest.raises(type(error)) as info:
        run(main)
    assert info.value is error
    assert released == [True]


def test_a_lost_lease_propagates_unwrapped_through_connect_and_service() -> None:
    async def main() -> None:
        async with open_lock_service() as service, service.connect() as lock:
            async with lock.acquire(ttl=1):
                service.network.cut(lock.node_id, 0)
                await trio.sleep_forever()

    with pytest.raises(LeaseLostError):
        run(main)


def test_the_retryable_refusals_are_worded_as_the_cores_word_them() -> None:
    source = inspect.getsource(lease_lock_core)
    for reason in RETRYABLE_REFUSALS:
        assert f'"{reason}"' in source, reason


# ------------------------------------------- found by the cancellation-injection property test


async def connect_and_hold(inj: Injector) -> None:
    with inj.scope("service"):
        async with open_lock_service() as service, service.connect() as lock:
            async with lock.acquire(ttl=1):
                await trio.sleep(0.5)


@settings(max_examples=60, deadline=None, database=None)
@given(step=st.integers(1, 12), _=st.random_module())
def test_a_cancellation_racing_connect_is_a_cancellation(step: int, _: object) -> None:
    """The connection's task can stop before the caller reaches a checkpoint:
    the caller's next acquire must then be cancelled, not refused as misuse."""
    run_injected(connect_and_hold, InjectionPlan((Injection(step=step),)))


def test_ctrl_c_in_the_body_arrives_as_a_plain_keyboard_interrupt() -> None:
    """A real SIGINT, delivered by trio's handler at the body's checkpoint."""
    released: list[bool] = []

    async def main() -> None:
        async with open_lock_service() as service:
            try:
                async with service.connect() as lock, lock.acquire(ttl=5):
                    signal.raise_signal(signal.SIGINT)
                    await trio.sleep(1)
            finally:
                released.append(service.server.holder is None)

    # Trio delivers Ctrl-C as KeyboardInterrupt only if SIGINT has Python's default
    # handler when the run starts. In one full-suite run this test saw no
    # KeyboardInterrupt (not reproduced alone or with the files before it); make the
    # precondition explicit, so a handler left behind by another test cannot decide it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run(main)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert released == [True]


def test_an_error_in_the_callers_own_nursery_is_wrapped_by_that_nursery_only() -> None:
    async def main() -> None:
        async with open_lock_service() as service, service.connect() as lock:

            async def worker() -> None:
                async with lock.acquire(ttl=5):
                    raise ValueError("in a worker")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker)

    with pytest.raises(ExceptionGroup) as info:
        run(main)
    assert [repr(e) for e in info.value.exceptions] == ["ValueError('in a worker')"]
