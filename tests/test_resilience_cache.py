"""Unit tests of the cache: LRU + TTL, single flight, cancellation, SWR, stats, memoize."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_foundation.resilience import Cache, Rejected, open_cache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lru_eviction_takes_the_least_recently_used() -> None:
    cache: Cache[str, int] = Cache(max_size=2, clock=Clock())
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.set("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert len(cache) == 2
    assert cache.statistics().evictions == 1


def test_ttl_expiry_and_stats() -> None:
    clock = Clock()
    cache: Cache[str, int] = Cache(max_size=4, ttl=10, clock=clock)
    cache.set("a", 1)
    cache.set("b", 2, ttl=1)
    clock.now = 1.0
    assert cache.get("b") is None
    assert cache.get("a") == 1
    clock.now = 10.0
    assert cache.get("a", "gone") == "gone"
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.expirations, stats.size) == (1, 2, 2, 0)


def test_size_is_never_exceeded() -> None:
    cache: Cache[int, int] = Cache(max_size=100, clock=Clock())
    for i in range(10_000):
        cache.set(i % 357, i)
        assert len(cache) <= 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_size": 0}, "max_size must be >= 1, got 0"),
        ({"max_size": -3}, "max_size must be >= 1"),
        ({"max_size": 1, "ttl": 0}, "ttl must be > 0, got 0"),
        ({"max_size": 1, "ttl": -1.0}, "ttl must be > 0"),
        ({"max_size": 1, "stale_ttl": -1}, "stale_ttl must be > 0"),
        ({"max_size": 1, "max_in_flight": 0}, "max_in_flight"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Cache(**kwargs)  # type: ignore[arg-type]


async def test_get_or_compute_needs_an_open_cache() -> None:
    cache: Cache[str, int] = Cache(max_size=1)

    async def load() -> int:
        return 1

    with pytest.raises(RuntimeError, match="not open"):
        await cache.get_or_compute("a", load)


async def test_concurrent_misses_share_one_load(autojump_clock: trio.testing.MockClock) -> None:
    runs = 0

    async def load() -> str:
        nonlocal runs
        runs += 1
        await trio.sleep(1)
        return "v"

    results: list[str] = []
    async with open_cache(max_size=4, ttl=60) as cache:

        async def call() -> None:
            results.append(await cache.get_or_compute("k", load))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(call)
        assert await cache.get_or_compute("k", load) == "v"
    assert results == ["v"] * 5 and runs == 1
    assert cache.statistics().loads == 1


async def test_a_cancelled_caller_leaves_the_load_to_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def load() -> str:
        await trio.sleep(1)
        return "v"

    async with open_cache(max_size=4) as cache:
        got: list[str] = []

        async def patient() -> None:
            got.append(await cache.get_or_compute("k", load))

        async with trio.open_nursery() as nursery:
            with trio.move_on_after(0.5):  # the first caller, who started the load, leaves
                nursery.start_soon(patient)
                await cache.get_or_compute("k", load)
        assert got == ["v"]
        assert cache.statistics().loads == 1


async def test_the_load_is_cancelled_when_every_caller_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished = False

    async def load() -> str:
        nonlocal finished
        await trio.sleep(10)
        finished = True
        return "v"

    async with open_cache(max_size=4) as cache:
        with trio.move_on_after(1):
            await cache.get_or_compute("k", load)
        await trio.sleep(20)
        assert not finished and cache.statistics().in_flight == 0 and "k" not in cache


async def test_failures_go_to_that_flight_only(autojump_clock: trio.testing.MockClock) -> None:
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        if calls == 1:
            raise OSError("down")
        return "up"

    async with open_cache(max_size=4) as cache:
        with pytest.raises(OSError, match="down"):
            await cache.get_or_compute("k", load)
        assert await cache.get_or_compute("k", load) == "up"  # not cached: loaded again
        assert cache.statistics().load_failures == 1


async def test_failure_ttl_caches_the_failure(autojump_clock: trio.testing.MockClock) -> None:
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        raise OSError("down")

    async with open_cache(max_size=4, failure_ttl=5) as cache:
        for _ in range(3):
            with pytest.raises(OSError):
                await cache.get_or_compute("k", load)
        assert calls == 1
        await trio.sleep(5)
        with pytest.raises(OSError):
            await cache.get_or_compute("k", load)
        assert calls == 2


async def test_stale_while_revalidate(autojump_clock: trio.testing.MockClock) -> None:
    version = 0

    async def load() -> int:
        nonlocal version
        await trio.sleep(1)
        version += 1
        return version

    async with open_cache(max_size=4, ttl=10, stale_ttl=30) as cache:
        assert await cache.get_or_compute("k", load) == 1
        await trio.sleep(15)  # stale, within the grace
        assert await cache.get_or_compute("k", load) == 1  # served at once
        assert cache.statistics().in_flight == 1
        await trio.sleep(2)
        assert await cache.get_or_compute("k", load) == 2  # refreshed in the background
        assert cache.statistics().stale_hits == 1


async def test_closing_the_cache_releases_waiters(autojump_clock: trio.testing.MockClock) -> None:
    async def load() -> str:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    errors: list[BaseException] = []

    async def call(cache: Cache[str, str]) -> None:
        try:
            await cache.get_or_compute("k", load)
        except RuntimeError as exc:
            errors.append(exc)

    async with trio.open_nursery() as outer:
        async with open_cache(max_size=2) as cache:
            outer.start_soon(call, cache)
            await trio.sleep(1)
    assert len(errors) == 1 and "not open" in str(errors[0])


async def test_max_in_flight(autojump_clock: trio.testing.MockClock) -> None:
    async def load() -> str:
        await trio.sleep(1)
        return "v"

    async with open_cache(max_size=4, max_in_flight=1) as cache, trio.open_nursery() as nursery:
        nursery.start_soon(cache.get_or_compute, "a", load)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Rejected, match="1 loads in flight"):
            await cache.get_or_compute("b", load)


async def test_memoize(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[tuple[int, int]] = []
    async with open_cache(max_size=8, ttl=60) as cache:

        @cache.memoize()
        async def add(x: int, y: int = 0) -> int:
            calls.append((x, y))
            await trio.sleep(1)
            return x + y

        assert await add(1, y=2) == 3
        assert await add(1, y=2) == 3
        assert await add(2) == 2
        assert calls == [(1, 2), (2, 0)]
        assert add.__name__ == "add"


async def test_a_miss_that_joins_a_failing_refresh_gets_the_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await trio.sleep(1)
        if calls > 1:
            raise OSError("refresh failed")
        return 1

    async with open_cache(max_size=4, ttl=10, stale_ttl=5) as cache:
        assert await cache.get_or_compute("k", load) == 1
        await trio.sleep(12)
        assert await cache.get_or_compute("k", load) == 1  # stale; a refresh starts
        cache.delete("k")  # the next caller misses and joins the refresh
        with pytest.raises(OSError, match="refresh failed"):
            await cache.get_or_compute("k", load)
        assert calls == 2
