"""The resilience services emit through ``trio_foundation.telemetry`` (issue 14, item 3)."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.coordination.kv import Bytesish, CasResult, KeyValue, MemoryKV
from trio_foundation.resilience import (
    EVENTS,
    Bulkhead,
    Cache,
    CircuitBreaker,
    CircuitOpenError,
    PoolTimeoutError,
    RateLimiter,
    Rejected,
    RetryPolicy,
    SharedRateLimiter,
    TokenBucket,
    open_cache,
    open_pool,
    resilience_metrics,
)
from trio_foundation.telemetry import Event, MetricRegistry, Telemetry, default_telemetry


class Boom(Exception):
    pass


def documented_fields() -> dict[str, tuple[set[str], set[str]]]:
    """docs/resilience.md's event table: event -> (measurements, extra metadata)."""
    text = (Path(__file__).parent.parent / "docs" / "resilience.md").read_text()
    table = text.split("## Telemetry and metrics", 1)[1].split("\n\n", 3)[2]
    fields: dict[str, tuple[set[str], set[str]]] = {}
    for row in table.splitlines()[2:]:
        names, when, measured = row.strip("|").split("|")
        extra = set(re.findall(r"metadata `(\w+)`", when))
        for name in re.findall(r"`([\w.]+)`", names):
            fields[f"resilience.{name}"] = (set(re.findall(r"`(\w+)`", measured)), extra)
    return fields


DOCUMENTED = documented_fields()
BASE_METADATA = {"service", "name", "key", "detail"}


UNDOCUMENTED: list[tuple[str, dict[str, float], dict[str, object]]] = []


def check_documented(event: Event) -> None:
    """Record an event whose fields differ from the docs (telemetry isolates handlers,
    so the check cannot raise through the service; ``undocumented_fields`` fails the test)."""
    measured, extra = DOCUMENTED[event.name]
    if set(event.measurements) != measured or set(event.metadata) != BASE_METADATA | extra:
        UNDOCUMENTED.append((event.name, dict(event.measurements), dict(event.metadata)))


@pytest.fixture(autouse=True)
def undocumented_fields() -> Iterator[None]:
    UNDOCUMENTED.clear()
    yield
    assert not UNDOCUMENTED, f"events whose fields differ from docs/resilience.md: {UNDOCUMENTED}"


def recorder() -> tuple[Telemetry, list[Event]]:
    """A telemetry recording every resilience event, each checked against the docs."""
    telemetry = Telemetry(slow_handler=None)
    events: list[Event] = []

    def record(event: Event) -> None:
        check_documented(event)
        events.append(event)

    telemetry.attach("recorder", EVENTS, record)
    return telemetry, events


def test_every_event_has_a_row_in_the_docs_table() -> None:
    assert set(EVENTS) == set(DOCUMENTED)


def kinds(events: list[Event]) -> list[str]:
    return [e.name.removeprefix("resilience.") for e in events]


async def fail() -> None:
    raise Boom


async def test_breaker_state_changes_and_rejections(autojump_clock: trio.abc.Clock) -> None:
    telemetry, events = recorder()
    breaker = CircuitBreaker(name="db", failure_threshold=2, reset_timeout=10, telemetry=telemetry)
    legacy: list[str] = []
    breaker.add_listener(lambda e: legacy.append(e.detail))
    guarded = breaker(fail)
    for _ in range(2):
        with pytest.raises(Boom):
            await guarded()
    with pytest.raises(CircuitOpenError):
        await guarded()
    await trio.sleep(10)
    async with breaker:  # the trial succeeds
        pass
    assert kinds(events) == [
        "circuit_breaker.state",
        "circuit_breaker.rejected",
        "circuit_breaker.state",
        "circuit_breaker.state",
    ]
    assert [e.measurements["state"] for e in events if e.name.endswith("state")] == [2, 1, 0]
    assert (
        [e.metadata["detail"] for e in events if e.name.endswith("state")]
        == legacy
        == [
            "closed -> open",
            "open -> half_open",
            "half_open -> closed",
        ]
    )
    assert events[1].measurements["retry_after"] == pytest.approx(10)
    assert all(e.metadata["name"] == "db" for e in events)


async def test_metrics_keep_the_breaker_state_gauge(autojump_clock: trio.abc.Clock) -> None:
    telemetry = Telemetry()
    metrics = MetricRegistry(max_series=50)
    breaker = CircuitBreaker(name="api", failure_threshold=1, reset_timeout=5, telemetry=telemetry)
    with resilience_metrics(metrics, telemetry) as handler:
        handler.watch(breaker)
        gauge = metrics.gauge("circuit_breaker_state", labels=["name"]).labels("api")
        assert gauge.value == 0
        with pytest.raises(Boom):
            await breaker(fail)()
        assert gauge.value == 2
        for _ in range(3):
            with pytest.raises(CircuitOpenError):
                await breaker(fail)()
        await trio.sleep(5)
        assert breaker.state == "half_open"
        assert gauge.value == 1
    events = metrics.counter("resilience_events_total", labels=["service", "name", "event"])
    assert events.labels("circuit_breaker", "api", "rejected").value == 3
    assert events.labels("circuit_breaker", "api", "state").value == 2
    assert not telemetry.listening("resilience.circuit_breaker.state")  # detached


async def test_metrics_are_bounded_by_the_registry() -> None:
    telemetry = Telemetry()
    metrics = MetricRegistry(max_series=6)
    limiter = RateLimiter(TokenBucket(rate=1, burst=1), telemetry=telemetry)
    with resilience_metrics(metrics, telemetry) as handler:
        for i in range(100):
            limiter.try_acquire(f"k{i % 20}")
            limiter.try_acquire(f"k{i % 20}")
    assert metrics.series_count <= 6
    assert handler.refused == 0  # one series: every rejection has the same labels
    with resilience_metrics(metrics, telemetry) as handler:
        for i in range(10):
            RateLimiter(TokenBucket(rate=1, burst=1), name=f"l{i}", telemetry=telemetry)
            other = RateLimiter(TokenBucket(rate=1, burst=1), name=f"l{i}", telemetry=telemetry)
            other.try_acquire()
            other.try_acquire()
    assert metrics.series_count == 6
    assert handler.refused > 0


async def test_limiter_rejections_and_waits(autojump_clock: trio.abc.Clock) -> None:
    telemetry, events = recorder()
    limiter = RateLimiter(
        TokenBucket(rate=2, burst=2), max_waiters=1, name="api", telemetry=telemetry
    )
    assert limiter.try_acquire("u", 2)
    assert not limiter.try_acquire("u")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(limiter.acquire, "u", 2)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Rejected):
            await limiter.acquire("u")
    assert kinds(events) == ["rate_limiter.rejected", "rate_limiter.rejected", "rate_limiter.wait"]
    assert events[0].metadata["detail"] == "over the limit"
    assert events[1].metadata["detail"] == "too many waiters"
    assert events[2].measurements == {"duration": pytest.approx(1.0), "weight": 2}


async def test_cache_hits_misses_evictions_expirations_loads(
    autojump_clock: trio.abc.Clock,
) -> None:
    telemetry, events = recorder()
    async with open_cache(max_size=2, ttl=10, name="c", telemetry=telemetry) as cache:
        cache.set("a", 1)
        assert cache.get("a") == 1
        assert cache.get("b") is None

        async def load() -> int:
            await trio.sleep(3)
            return 2

        assert await cache.get_or_compute("b", load) == 2
        cache.set("c", 3)  # evicts "a"
        await trio.sleep(20)
        assert cache.get("b") is None  # expired

        async def broken() -> int:
            raise Boom

        with pytest.raises(Boom):
            await cache.get_or_compute("d", broken)
    assert kinds(events) == [
        "cache.hit",
        "cache.miss",
        "cache.miss",
        "cache.load",
        "cache.evicted",
        "cache.expired",
        "cache.miss",
        "cache.miss",
        "cache.load_failed",
        "cache.load",
    ]
    load = events[3]
    assert load.metadata["detail"] == "ok" and load.measurements["duration"] == pytest.approx(3)
    assert events[4].metadata["key"] == "a"
    assert events[-1].metadata["detail"] == "error"


async def test_pool_checkouts_timeouts_and_leaks(autojump_clock: trio.abc.Clock) -> None:
    telemetry, events = recorder()

    async def make() -> object:
        return object()

    async with open_pool(
        make, max_size=1, acquire_timeout=2, name="p", telemetry=telemetry
    ) as pool:
        async with pool.acquire():
            pass
        lease = await pool.checkout()
        with pytest.raises(PoolTimeoutError):
            await pool.checkout()
        del lease
        gc.collect()
        await trio.testing.wait_all_tasks_blocked()
        async with pool.acquire():
            pass
    names = kinds(events)
    assert names == [
        "pool.checkout",
        "pool.checkout",
        "pool.timeout",
        "pool.leak",
        "pool.closed",  # the leaked resource
        "pool.checkout",
        "pool.closed",  # the idle one, when the pool closes
    ]
    assert events[2].measurements == {"wait": 2, "in_use": 1}


async def test_retry_attempts_and_bulkhead_rejections(autojump_clock: trio.abc.Clock) -> None:
    telemetry, events = recorder()
    policy = RetryPolicy(on=Boom, attempts=3, wait_jitter=0, name="r", telemetry=telemetry)
    with pytest.raises(Boom):
        await policy.call(fail)
    bulkhead = Bulkhead(max_concurrent=1, name="b", telemetry=telemetry)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep_forever)

        async def hold() -> None:
            async with bulkhead:
                await trio.sleep_forever()

        nursery.start_soon(hold)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Rejected):
            async with bulkhead:
                pass
        nursery.cancel_scope.cancel()
    assert kinds(events) == ["retry.retry", "retry.retry", "bulkhead.rejected"]
    assert [e.measurements["attempt"] for e in events[:2]] == [1, 2]
    assert all(e.measurements["sleep"] > 0 for e in events[:2])
    assert events[2].measurements == {"running": 1, "queued": 0}


async def test_services_use_the_default_telemetry_and_build_nothing_unheard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_emit(*args: object) -> None:
        raise AssertionError("an event was emitted with nobody listening")

    limiter = RateLimiter(TokenBucket(rate=1, burst=1))
    with monkeypatch.context() as patch:
        patch.setattr(default_telemetry(), "emit", must_not_emit)
        limiter.try_acquire()
        limiter.try_acquire()  # rejected; nobody listens: nothing emitted
    seen: list[Event] = []
    with default_telemetry().attached("test-default", EVENTS, seen.append):
        limiter.try_acquire()
    assert kinds(seen) == ["rate_limiter.rejected"]


def test_bad_telemetry_is_refused() -> None:
    with pytest.raises(TypeError, match="telemetry must be a Telemetry"):
        CircuitBreaker(telemetry=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metrics must be a MetricRegistry"):
        with resilience_metrics({}):  # type: ignore[arg-type]
            pass


async def test_a_handler_calling_back_into_the_cache_cannot_break_its_bound() -> None:
    """A sync handler on the eviction event that sets another key (re-entering the cache
    in the middle of an insert) must not make it exceed max_size."""
    telemetry = Telemetry(slow_handler=None)
    cache: Cache[str, int] = Cache(max_size=3, telemetry=telemetry)
    sizes: list[int] = []

    def meddle(event: Event) -> None:
        sizes.append(len(cache))
        if len(sizes) < 50:
            cache.set(f"from-handler-{len(sizes)}", 0)  # evicts again: a nested event
        sizes.append(len(cache))

    telemetry.attach("meddle", "resilience.cache.evicted", meddle)
    for i in range(20):
        cache.set(f"k{i}", i)
        cache.get(f"k{i}")
        assert len(cache) <= 3
    assert sizes and max(sizes) <= 3
    assert len(cache) == 3
    assert cache.statistics().evictions >= 17


class RacedKV:
    """A MemoryKV where another writer commits just before each of the first ``races``
    compare-and-swaps, and every call fails while ``down``."""

    def __init__(self, races: int) -> None:
        self.inner = MemoryKV()
        self.races = races
        self.down = False

    async def get(self, key: Bytesish) -> KeyValue | None:
        if self.down:
            raise OSError("connection refused")
        return await self.inner.get(key)

    async def cas_revision(self, key: Bytesish, mod_revision: int, new: Bytesish) -> CasResult:
        if self.races:
            self.races -= 1
            await self.inner.put(key, new)  # the other writer wins
        return await self.inner.cas_revision(key, mod_revision, new)

    def __getattr__(self, name: str) -> Any:  # the rest of the KVStore interface
        return getattr(self.inner, name)


async def test_shared_limiter_conflicts_and_outages_report_the_callers_key() -> None:
    telemetry, events = recorder()
    store = RacedKV(races=1)
    limiter = SharedRateLimiter(
        store,  # type: ignore[arg-type]
        TokenBucket(rate=1, burst=5),
        on_outage="open",
        telemetry=telemetry,
    )
    assert await limiter.try_acquire("user-7")
    store.down = True
    assert await limiter.try_acquire("user-7")
    assert kinds(events) == ["rate_limiter.conflict", "rate_limiter.outage"]
    conflict, outage = events
    assert conflict.metadata["key"] == "user-7"  # as the caller passed it, not bytes
    assert outage.metadata["key"] == "user-7" and outage.metadata["operation"] == "get"
    assert "connection refused" in outage.metadata["detail"]
