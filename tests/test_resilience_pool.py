"""Unit tests of the resource pool."""

from __future__ import annotations

import gc
import itertools

import pytest
import trio
import trio.lowlevel
import trio.testing

from trio_foundation.resilience import (
    PoolClosedError,
    PoolTimeoutError,
    ResilienceEvent,
    open_pool,
)


class Conn:
    ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self.ids)
        self.closed = False
        self.healthy = True


class Factory:
    def __init__(self, delay: float = 0.0) -> None:
        self.made: list[Conn] = []
        self.delay = delay

    async def make(self) -> Conn:
        await trio.sleep(self.delay)
        conn = Conn()
        self.made.append(conn)
        return conn

    async def close(self, conn: Conn) -> None:
        assert not conn.closed, "closed twice"
        conn.closed = True


async def test_reuse_and_max_size(autojump_clock: trio.testing.MockClock) -> None:
    f = Factory()
    async with open_pool(f.make, close=f.close, max_size=2) as pool:
        async with pool.acquire() as a:
            pass
        async with pool.acquire() as b:
            assert b is a  # reused
        held: list[Conn] = []

        async def hold() -> None:
            async with pool.acquire() as c:
                held.append(c)
                await trio.sleep(5)

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(hold)
            await trio.sleep(1)
            assert pool.statistics().size <= 2 and pool.statistics().waiting == 2
        assert len(f.made) == 2
    assert all(c.closed for c in f.made)


async def test_acquire_timeout(autojump_clock: trio.testing.MockClock) -> None:
    f = Factory()
    async with open_pool(f.make, max_size=1, acquire_timeout=3, name="db") as pool:
        async with pool.acquire():
            start = trio.current_time()
            with pytest.raises(PoolTimeoutError, match="pool 'db': no resource available within 3"):
                async with pool.acquire():
                    pass
            assert trio.current_time() - start == 3
        assert pool.statistics().timeouts == 1


async def test_returned_when_the_borrower_is_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    f = Factory()
    async with open_pool(f.make, max_size=1) as pool:
        with trio.move_on_after(1):
            async with pool.acquire():
                await trio.sleep_forever()
        assert pool.statistics().borrowed == 0
        with trio.fail_after(1):
            async with pool.acquire() as conn:
                assert conn is f.made[0]


async def test_health_check_and_lifetime(autojump_clock: trio.testing.MockClock) -> None:
    f = Factory()

    async def healthy(conn: Conn) -> bool:
        return conn.healthy

    async with open_pool(
        f.make, close=f.close, max_size=2, health_check=healthy, max_lifetime=100
    ) as pool:
        async with pool.acquire() as first:
            first.healthy = False
        async with pool.acquire() as second:
            assert second is not first
        await trio.lowlevel.checkpoint()
        assert first.closed
        await trio.sleep(100)
        async with pool.acquire() as third:
            assert third is not second  # second outlived max_lifetime
        assert pool.statistics().unhealthy == 2


async def test_idle_timeout_keeps_min_size(autojump_clock: trio.testing.MockClock) -> None:
    f = Factory()
    async with open_pool(f.make, close=f.close, min_size=1, max_size=3, idle_timeout=10) as pool:
        await trio.sleep(1)
        assert pool.statistics().idle == 1  # topped up to min_size
        async with pool.acquire(), pool.acquire(), pool.acquire():
            pass
        assert pool.statistics().idle == 3
        await trio.sleep(20)
        assert pool.statistics().idle == 1
        assert sum(c.closed for c in f.made) == 2


async def test_a_slow_factory_does_not_block_other_borrowers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow = Factory(delay=100)
    async with open_pool(slow.make, max_size=3) as pool:
        first = await pool.checkout()  # made in 100 s
        done_at: list[float] = []

        async def quick() -> None:
            async with pool.acquire():
                done_at.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.checkout)  # a second borrower: a slow creation
            await trio.testing.wait_all_tasks_blocked()
            first.release()
            start = trio.current_time()
            nursery.start_soon(quick)  # gets the returned one at once
            await trio.testing.wait_all_tasks_blocked()
            assert done_at == [start]
            nursery.cancel_scope.cancel()


async def test_a_dropped_lease_is_reclaimed_and_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    f = Factory()
    events: list[ResilienceEvent] = []
    async with open_pool(f.make, close=f.close, max_size=1) as pool:
        pool.add_listener(events.append)

        async def leak() -> None:
            await pool.checkout()  # never released

        await leak()
        gc.collect()
        with trio.fail_after(1):
            async with pool.acquire() as conn:
                assert conn is not f.made[0]
        assert pool.statistics().leaks == 1
        assert f.made[0].closed
    assert [e.kind for e in events if e.kind == "leak"] == ["leak"]


async def test_leak_timeout_reports_a_lease_held_too_long(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[ResilienceEvent] = []
    async with open_pool(Factory().make, max_size=1, leak_timeout=5) as pool:
        pool.add_listener(events.append)
        lease = await pool.checkout()
        await trio.sleep(10)
        lease.release()
        with pytest.raises(RuntimeError, match="already released"):
            lease.release()
    assert [e.kind for e in events].count("leak_suspected") == 1


async def test_closed_pool_refuses(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pool(Factory().make, max_size=1, name="db") as pool:
        pass
    with pytest.raises(PoolClosedError, match="pool 'db' is closed"):
        async with pool.acquire():
            pass


async def test_closing_wakes_waiters(autojump_clock: trio.testing.MockClock) -> None:
    errors: list[BaseException] = []

    async def wait_for(pool: object) -> None:
        try:
            async with pool.acquire():  # type: ignore[attr-defined]
                pass
        except PoolClosedError as exc:
            errors.append(exc)

    async with trio.open_nursery() as outer:
        async with open_pool(Factory().make, max_size=1) as pool:
            lease = await pool.checkout()
            outer.start_soon(wait_for, pool)
            await trio.sleep(1)
        lease.release()
    assert len(errors) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_size": 0}, "max_size must be >= 1, got 0"),
        ({"min_size": -1}, "min_size must be >= 0"),
        ({"min_size": 3, "max_size": 2}, "min_size 3 must be <= max_size 2"),
        ({"acquire_timeout": 0}, "acquire_timeout must be > 0"),
        ({"idle_timeout": -5}, "idle_timeout must be > 0"),
    ],
)
async def test_bad_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async with open_pool(Factory().make, **kwargs):  # type: ignore[arg-type]
            pass
