"""Stateful test of the real RateLimiter against a reference model of each algorithm.

The limiter runs in a guest-mode trio run under ``MockClock(rate=0)`` (see
``tests/trio_guest.py``); Hypothesis picks the operations, the keys, the
weights, when time moves (dyadic steps, so float arithmetic is exact), and the
checkpoint at which an acquiring task is cancelled. Trio's scheduler is seeded by
Hypothesis, so interleavings are explored too.

The model is the *history* an observer records: every grant with its key, time and
weight. Rules are named after the actions of ``specs/RateLimiter.tla`` (TryAcquire,
Acquire, Cancel, Tick) and the invariants after its invariants:

* ``Bound`` — the algorithm's stated bound holds over the recorded grants;
* ``RefusalJustified`` (checked in TryAcquire) — a refusal of a key with no waiters
  happens only when the grant would break the bound (the limiter is exact, not merely
  safe; a cancelled waiter that took tokens silently would show up here);
* ``HeadNotStarved`` — after the run settles, the first waiter of a key is not one the
  model would grant;
* ``FifoGrants`` — no waiter is granted while an earlier arrival for its key waits;
* ``WaitersAccounted`` and ``KeyTableBounded`` — nothing is held for a task that left;
  the table never exceeds ``max_keys``.

Broken variants (the original flaws): a limiter that checks, awaits, then writes back
(check-then-increment across an await); one that never evicts (unbounded buckets); one
that evicts busy keys. Each is caught by fresh random runs.
"""

from __future__ import annotations

import copy
import math
import os
from fractions import Fraction
from typing import Any, ClassVar

import pytest
import trio
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from trio_guest import GuestRun, Handle

from trio_foundation.resilience import (
    GCRA,
    RateLimiter,
    Rejected,
    SlidingCounter,
    SlidingLog,
    TokenBucket,
)
from trio_foundation.resilience._rate_limiter import _Key
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

KEYS = ("a", "b", "c", "d")
MAX_KEYS = 3
MAX_WAITERS = 6

# ------------------------------------------------------------------------ reference model


class Model:
    """Decides from the recorded history alone, in exact rational arithmetic."""

    def __init__(self, algorithm: Any) -> None:
        self.algorithm = algorithm
        self.grants: dict[str, list[tuple[Fraction, int]]] = {k: [] for k in KEYS}

    def record(self, key: str, at: float, weight: int) -> None:
        self.grants[key].append((Fraction(at), weight))

    def _between(self, key: str, lo: Fraction, hi: Fraction, *, hi_open: bool) -> int:
        return sum(w for t, w in self.grants[key] if lo <= t and (t < hi if hi_open else t <= hi))

    def grantable(self, key: str, at: float, weight: int) -> bool:
        a = self.algorithm
        t = Fraction(at)
        if isinstance(a, TokenBucket | GCRA):
            b, r = a.burst, Fraction(a.rate)
            return weight <= b and all(
                self._between(key, g, t, hi_open=False) + weight <= b + r * (t - g)
                for g, _ in self.grants[key]
            )
        window = Fraction(a.window)
        if isinstance(a, SlidingLog):
            recent = sum(w for g, w in self.grants[key] if t - window < g <= t)
            return recent + weight <= a.limit
        start = math.floor(t / window) * window
        cur = self._between(key, start, t, hi_open=False)
        prev = self._between(key, start - window, start, hi_open=True)
        return prev * (1 - (t - start) / window) + cur + weight <= a.limit

    def idle(self, key: str, at: float) -> bool:
        a = self.algorithm
        t = Fraction(at)
        if isinstance(a, TokenBucket | GCRA):
            r = Fraction(a.rate)
            return all(
                self._between(key, g, t, hi_open=False) <= r * (t - g) for g, _ in self.grants[key]
            )
        window = Fraction(a.window)
        if isinstance(a, SlidingLog):
            return not any(t - window < g <= t for g, _ in self.grants[key])
        start = math.floor(t / window) * window
        return not any(start - window <= g <= t for g, _ in self.grants[key])

    def bound_violation(self) -> str | None:
        a = self.algorithm
        for key, grants in self.grants.items():
            times = sorted({g for g, _ in grants})
            for i, g1 in enumerate(times):
                if isinstance(a, TokenBucket | GCRA):
                    for g2 in times[i:]:
                        got = self._between(key, g1, g2, hi_open=False)
                        allowed = a.burst + Fraction(a.rate) * (g2 - g1)
                        if got > allowed:
                            return f"{key}: {got} granted in [{g1}, {g2}] > {allowed}"
                    continue
                window = Fraction(a.window)
                got = self._between(key, g1, g1 + window, hi_open=True)
                if isinstance(a, SlidingLog):
                    allowed = Fraction(a.limit)
                else:
                    k_start = math.floor(g1 / window) * window
                    aligned = self._between(key, k_start, k_start + window, hi_open=True)
                    if aligned > a.limit:
                        return f"{key}: {aligned} granted in aligned window at {k_start}"
                    allowed = a.limit + aligned * (g1 - k_start) / window
                if got > allowed:
                    return f"{key}: {got} granted in [{g1}, {g1 + window}) > {allowed}"
        return None


# ---------------------------------------------------------------------- broken variants


class CheckThenIncrement(RateLimiter):  # type: ignore[misc]
    """The original flaw: read the state, await (a store round trip), write it back."""

    async def acquire(self, key: Any = None, weight: int = 1) -> None:
        self._check_weight(weight)
        self._waiting += 1
        try:
            while True:
                now = self._clock()
                entry = self._entry(key, now)
                if entry is None:
                    raise Rejected("rate limiter", "keys are busy")
                seen = copy.deepcopy(entry.state)  # GET
                wait = self._take(seen, now, weight)
                if not wait:
                    await trio.lowlevel.checkpoint()  # the await between check and write
                    entry.state = seen  # SET: a concurrent grant is overwritten
                    self._granted += 1
                    return
                await trio.sleep(wait)
        finally:
            self._waiting -= 1


class NeverEvicts(RateLimiter):  # type: ignore[misc]
    """Unbounded buckets: a new key always gets a fresh entry; cleanup does nothing."""

    def _entry(self, key: Any, now: float) -> Any:
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _Key(self.algorithm.new_state(now))
        return entry


class EvictsBusyKeys(RateLimiter):  # type: ignore[misc]
    """Bounded, but by dropping the least recently used key whether idle or not."""

    def _evict_one(self, now: float) -> bool:
        for k, e in self._keys.items():
            if not e.waiters:
                del self._keys[k]
                return True
        return False


# ------------------------------------------------------------------------- state machine


class RateLimiterMachine(RuleBasedStateMachine):
    algorithm: ClassVar[Any] = TokenBucket(rate=2.0, burst=3)
    limiter_class: ClassVar[type[RateLimiter]] = RateLimiter

    def __init__(self) -> None:
        super().__init__()
        self.driver = GuestRun()
        self.limiter = type(self).limiter_class(
            type(self).algorithm, max_keys=MAX_KEYS, max_waiters=MAX_WAITERS
        )
        self.model = Model(type(self).algorithm)
        self.capacity = type(self).algorithm.capacity
        self.pending: list[tuple[Handle, str, int, int]] = []
        self.arrivals: dict[str, list[int]] = {k: [] for k in KEYS}
        self.granted_seq: dict[str, list[int]] = {k: [] for k in KEYS}
        self.seq = 0

    def teardown(self) -> None:
        self.driver.close()

    def _live(self, key: str | None = None) -> list[tuple[Handle, str, int, int]]:
        return [p for p in self.pending if not p[0].done and (key is None or p[1] == key)]

    # ---------------------------------------------------------------------------- rules

    @rule(key=st.sampled_from(KEYS), weight=st.integers(1, 3))
    def try_acquire(self, key: str, weight: int) -> None:
        weight = min(weight, self.capacity)
        refused_before = self.limiter.statistics().refused_keys
        now = self.driver.now()
        if self.driver.call(lambda: self.limiter.try_acquire(key, weight)):
            self.model.record(key, now, weight)
            return
        table_full = self.limiter.statistics().refused_keys > refused_before
        if table_full:
            busy = [k for k in KEYS if k != key and not self.model.idle(k, now)]
            assert len(busy) >= MAX_KEYS, f"new key {key!r} refused with only {busy} busy"
        elif not self._live(key):
            # RefusalJustified
            assert not self.model.grantable(key, now, weight), (
                f"try_acquire({key!r}, {weight}) refused at {now} but the bound allows it"
            )

    ACQUIRE = st.tuples(st.sampled_from(KEYS), st.integers(1, 3), st.none() | st.integers(1, 6))

    @rule(calls=st.lists(ACQUIRE, min_size=1, max_size=3))
    def acquire(self, calls: list[tuple[str, int, int | None]]) -> None:
        """One to three tasks call acquire in the same step (they race)."""
        live_before = len(self._live())
        started: list[tuple[Handle, str, int, int]] = []

        async def start_all() -> None:
            for key, weight, cancel_after in calls:
                weight = min(weight, self.capacity)
                self.seq += 1
                seq = self.seq
                started.append(
                    (
                        self.driver.spawn_soon(self._acquirer(key, weight, seq), cancel_after),
                        key,
                        weight,
                        seq,
                    )
                )

        self.driver.do(start_all)
        for handle, key, weight, seq in started:
            if isinstance(handle.error, Rejected):
                full = live_before + len(calls) > MAX_WAITERS or "keys are busy" in str(
                    handle.error
                )
                assert full, f"acquire rejected without cause: {handle.error}"
                continue
            assert handle.error is None, handle.error
            self.pending.append((handle, key, weight, seq))

    def _acquirer(self, key: str, weight: int, seq: int) -> Any:
        async def run() -> None:
            # acquire() queues the caller before its first yield: this is its arrival.
            self.arrivals[key].append(seq)
            await self.limiter.acquire(key, weight)
            self.model.record(key, trio.current_time(), weight)
            self.granted_seq[key].append(seq)

        return run

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        live = self._live()
        if live:
            handle = data.draw(st.sampled_from(live))[0]
            self.driver.cancel(handle)

    @rule(dt=st.sampled_from([0.125, 0.25, 0.5, 1.0, 2.0]))
    def tick(self, dt: float) -> None:
        self.driver.advance(dt)

    # ----------------------------------------------------------------------- invariants

    @invariant()
    def bound(self) -> None:
        violation = self.model.bound_violation()
        assert violation is None, violation

    @invariant()
    def fifo_grants(self) -> None:
        """No waiter is granted while one that arrived earlier for its key still waits."""
        live = {p[3] for p in self._live()}
        for key in KEYS:
            granted = set(self.granted_seq[key])
            waiting_before = False
            for seq in self.arrivals[key]:
                if seq in live:
                    waiting_before = True
                elif seq in granted:
                    assert not waiting_before, f"{key}: {seq} granted ahead of an earlier waiter"

    @invariant()
    def head_not_starved(self) -> None:
        now = self.driver.now()
        for key in KEYS:
            live = {p[3]: p for p in self._live(key)}
            queue = [s for s in self.arrivals[key] if s in live]
            if queue:
                _, _, weight, seq = live[queue[0]]
                assert not self.model.grantable(key, now, weight), (
                    f"{key}: waiter {seq} (weight {weight}) still waits at {now}"
                )

    @invariant()
    def waiters_accounted(self) -> None:
        stats = self.limiter.statistics()
        assert stats.waiting == len(self._live())
        for handle, *_ in self.pending:
            if handle.done:
                assert handle.error is None, handle.error

    @invariant()
    def key_table_bounded(self) -> None:
        keys = self.limiter.statistics().keys
        assert keys <= MAX_KEYS, f"{keys} keys held, max_keys {MAX_KEYS}"


ALGORITHMS = {
    "token_bucket": TokenBucket(rate=2.0, burst=3),
    "gcra": GCRA(rate=0.5, burst=2),
    "sliding_log": SlidingLog(limit=3, window=2.0),
    "sliding_counter": SlidingCounter(limit=3, window=2.0),
}


def machine(name: str, limiter_class: type[RateLimiter] = RateLimiter) -> type:
    return type(
        f"RateLimiter_{name}_{limiter_class.__name__}",
        (RateLimiterMachine,),
        {"algorithm": ALGORITHMS[name], "limiter_class": limiter_class},
    )


SETTINGS = settings(
    max_examples=max(settings.default.max_examples // 2, 10),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if os.environ.get("RESILIENCE_NO_SHRINK")
    else list(Phase),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_rate_limiter_matches_model(name: str) -> None:
    run_state_machine_as_test(machine(name), settings=SETTINGS)


# ------------------------------------------------------------------------ broken variants

# name -> (algorithm, variant, texts of the invariants that may catch it)
BROKEN = {
    # It ignores the queue as well, so FifoGrants may see it first.
    "check_then_increment": (
        "token_bucket",
        CheckThenIncrement,
        ("granted in", "granted ahead"),
    ),
    "never_evicts": ("sliding_log", NeverEvicts, ("keys held, max_keys",)),
    "evicts_busy_keys": ("gcra", EvictsBusyKeys, ("granted in",)),
}


# fresh searches per variant in the slow catch-rate test (`CATCH_RUNS=200 pytest -m slow ...`)
CATCH_RUNS = int(os.environ.get("CATCH_RUNS", "20"))


def _caught(name: str) -> bool:
    """One fresh search (random seed, no example database); True if it fails as expected."""
    algo, cls, expected = BROKEN[name]
    return caught_by_fresh_search(
        machine(algo, cls), SETTINGS, expected, name=name, max_examples=200
    )


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_is_caught(name: str) -> None:
    assert _caught(name), f"the {name} limiter was not caught"


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_catch_rate(name: str) -> None:
    """20 fresh runs each (no database, random seeds): the catch rate is printed."""
    rate = measure_catch_rate(lambda: _caught(name), CATCH_RUNS)
    print(f"\n{name}: {rate}")
    assert rate.rate >= 0.95
