"""Stateful test of the real Cache against a reference model, with injected cancellations.

The cache runs opened (``open_cache``) inside a guest-mode trio run under
``MockClock(rate=0)``. Loaders are controlled by the test: each waits until a rule
makes it return or raise. Rules are named after ``specs/SingleFlight.tla`` where they
match (Call, Succeed, Fail, Leave, Expire as Tick) and add the synchronous operations.

Invariants (an observer's record: every loader run per key, every result a caller got):

* ``SizeBounded`` — ``len(cache) <= max_size`` after every step;
* ``MatchesModel`` — keys and recency order equal a plain LRU+TTL model's;
* ``OneLoaderAtATime`` — at most one loader runs per key;
* ``FailureNotCached`` — an error reaches a caller only from a load that ran while it
  waited;
* ``NoPoisonedWaiter`` — a caller ends with a value, such an error, or its own
  cancellation — nothing else;
* ``NoOrphanLoad`` — a loader runs only while a caller waits for it.

Broken variants: first-key eviction (insertion order, not recency); the size check
made before the loader's await and the insert after it; a loader's failure cached for
everyone; the loader run in the first caller's task (its cancellation poisons the rest).
"""

from __future__ import annotations

import collections
import os
from typing import Any, ClassVar

import pytest
import trio
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from trio_guest import GuestRun, Handle

from trio_foundation.resilience import Cache, open_cache
from trio_foundation.resilience._cache import _Entry, _Flight
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

KEYS = ("a", "b", "c")
MAX_SIZE = 2
TTL = 2.0


class LoadFailed(Exception):
    def __init__(self, load: int) -> None:
        super().__init__(f"load {load} failed")
        self.load = load


# ---------------------------------------------------------------------- broken variants


class FirstKeyEviction(Cache):  # type: ignore[misc]
    """The original flaw: a hit does not refresh recency, so the first key inserted goes."""

    def get(self, key: Any, default: Any = None) -> Any:
        entry = self._data.get(key)
        if entry is not None and self._clock() < entry.fresh_until:
            self._hits += 1
            return entry.value
        if entry is not None:
            self._expire_if_dead(key, entry)
        return default


class SizeCheckBeforeAwait(Cache):  # type: ignore[misc]
    """The original flaw: decide whether to evict, await the loader, then insert."""

    async def _run_flight(self, key: Any, loader: Any, flight: _Flight) -> None:
        room = len(self._data) < self.max_size or key in self._data  # checked too early
        try:
            with flight.scope:
                try:
                    value = await loader()
                except Exception as exc:
                    flight.error = exc
                else:
                    flight.value = value
                    now = self._clock()
                    entry = _Entry(value, now + self.ttl, now + self.ttl, None)
                    if room:
                        self._data[key] = entry  # no eviction: the check is stale
                        self._data.move_to_end(key)
                    else:
                        self._store(key, entry)
            if flight.scope.cancelled_caught:
                flight.cancelled = True
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()


class FailureCachedForEveryone(Cache):  # type: ignore[misc]
    """The original flaw: the loader's exception is stored as the key's entry."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["failure_ttl"] = TTL
        super().__init__(**kwargs)


class LeaderRunsLoader(Cache):  # type: ignore[misc]
    """Single flight done in the first caller's task: its cancellation ends the load."""

    async def get_or_compute(self, key: Any, loader: Any) -> Any:
        entry = self._data.get(key)
        if entry is not None and self._clock() < entry.fresh_until:
            self._data.move_to_end(key)
            await trio.lowlevel.checkpoint()
            return entry.value
        if entry is not None:
            self._expire_if_dead(key, entry)
        flight = self._flights.get(key)
        if flight is not None:
            flight.waiters += 1
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        flight = self._flights[key] = _Flight(False)
        flight.waiters += 1
        self._loads += 1
        try:
            flight.value = value = await loader()
            self.set(key, value)
            return value
        except Exception as exc:
            flight.error = exc
            raise
        except trio.Cancelled:
            flight.error = RuntimeError("the loader was cancelled")
            raise
        finally:
            del self._flights[key]
            flight.done.set()


# ------------------------------------------------------------------------- state machine


class CacheMachine(RuleBasedStateMachine):
    cache_class: ClassVar[type[Cache[Any, Any]]] = Cache

    def __init__(self) -> None:
        super().__init__()
        self.driver = GuestRun()
        self.cache: Cache[Any, Any] = None  # type: ignore[assignment]

        async def hold_open() -> None:
            cache_class = type(self).cache_class
            async with open_cache(max_size=MAX_SIZE, ttl=TTL) as opened:
                cache = cache_class(max_size=MAX_SIZE, ttl=TTL)
                cache._nursery = opened._nursery
                self.cache = cache
                await trio.sleep_forever()

        self.holder = self.driver.spawn("cache", hold_open)
        # model: key -> fresh_until, in recency order (least recent first)
        self.model: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.values: dict[str, Any] = {}
        self.gates: dict[int, tuple[str, trio.Event, list[bool]]] = {}  # load -> (key, gate, ok)
        self.running: dict[str, set[int]] = {k: set() for k in KEYS}
        self.finished: set[int] = set()
        self.next_load = 0
        self.callers: list[tuple[Handle, str, set[int], int]] = []

    def teardown(self) -> None:
        self.driver.close()

    # ---------------------------------------------------------------------------- model

    def _model_get(self, key: str) -> bool:
        now = self.driver.now()
        if key in self.model:
            if now < self.model[key]:
                self.model.move_to_end(key)
                return True
            del self.model[key]
        return False

    def _model_store(self, key: str, at: float) -> None:
        if key in self.model:
            self.model[key] = at + TTL
            self.model.move_to_end(key)
            return
        if len(self.model) >= MAX_SIZE:
            self.model.popitem(last=False)
        self.model[key] = at + TTL

    # ---------------------------------------------------------------------------- rules

    @rule(key=st.sampled_from(KEYS), value=st.integers(0, 9))
    def set_(self, key: str, value: int) -> None:
        self.driver.call(lambda: self.cache.set(key, (key, "set", value)))
        self._model_store(key, self.driver.now())

    @rule(key=st.sampled_from(KEYS))
    def get(self, key: str) -> None:
        got = self.driver.call(lambda: self.cache.get(key))
        hit = self._model_get(key)
        assert (got is not None) == hit, f"get({key!r}) -> {got!r}, model hit={hit}"
        if got is not None:
            assert got[0] == key

    def _loader(self, key: str) -> Any:
        async def load() -> Any:
            self.next_load += 1
            load_id = self.next_load
            gate = trio.Event()
            outcome: list[bool] = []
            self.gates[load_id] = (key, gate, outcome)
            self.running[key].add(load_id)
            try:
                await gate.wait()
            finally:
                self.running[key].discard(load_id)
                self.finished.add(load_id)
            if not outcome[0]:
                raise LoadFailed(load_id)
            # The cache stores the value right after this returns (no checkpoint).
            self._model_store(key, trio.current_time())
            return (key, "load", load_id)

        return load

    @rule(
        calls=st.lists(
            st.tuples(st.sampled_from(KEYS), st.none() | st.integers(1, 5)),
            min_size=1,
            max_size=3,
        )
    )
    def call(self, calls: list[tuple[str, int | None]]) -> None:
        """One to three callers of get_or_compute in the same step."""

        async def start_all() -> None:
            for key, cancel_after in calls:
                seen: set[int] = set()
                started_after = self.next_load

                async def run(key: str = key, seen: set[int] = seen) -> Any:
                    # get_or_compute looks the key up before its first yield.
                    seen.update(self.running[key])
                    self._model_get(key)
                    return await self.cache.get_or_compute(key, self._loader(key))

                handle = self.driver.spawn_soon(run, cancel_after)
                self.callers.append((handle, key, seen, started_after))

        self.driver.do(start_all)

    @rule(data=st.data(), ok=st.booleans())
    def finish_load(self, data: st.DataObject, ok: bool) -> None:
        """Succeed or Fail: a running loader returns or raises."""
        running = sorted(i for k in KEYS for i in self.running[k] if not self.gates[i][2])
        if not running:
            return
        load_id = data.draw(st.sampled_from(running))
        _, gate, outcome = self.gates[load_id]
        outcome.append(ok)

        async def go() -> None:
            gate.set()

        self.driver.do(go)

    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        live = [c for c in self.callers if not c[0].done]
        if live:
            self.driver.cancel(data.draw(st.sampled_from(live))[0])

    @rule(dt=st.sampled_from([0.5, 1.0, 2.0]))
    def tick(self, dt: float) -> None:
        self.driver.advance(dt)

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        self.driver.call(lambda: self.cache.delete(key))
        self.model.pop(key, None)

    # ----------------------------------------------------------------------- invariants

    @invariant()
    def size_bounded(self) -> None:
        if self.cache is not None:
            assert len(self.cache) <= MAX_SIZE, f"{len(self.cache)} entries, max {MAX_SIZE}"

    @invariant()
    def matches_model(self) -> None:
        if self.cache is not None:
            self.size_bounded()
            assert list(self.cache._data) == list(self.model), (
                f"cache order {list(self.cache._data)} != LRU model {list(self.model)}"
            )

    @invariant()
    def one_loader_at_a_time(self) -> None:
        for key in KEYS:
            assert len(self.running[key]) <= 1, f"{key}: loads {self.running[key]} at once"

    @invariant()
    def failure_not_cached_and_no_poisoned_waiter(self) -> None:
        for handle, key, seen, started_after in self.callers:
            if not handle.done:
                continue
            if handle.cancelled:
                assert handle.scope.cancel_called, "a caller saw a cancellation not its own"
                continue
            error = handle.error
            if error is None:
                assert handle.result[0] == key
            elif isinstance(error, LoadFailed):
                assert error.load in seen or error.load > started_after, (
                    f"{key}: load {error.load} failed before this caller came; "
                    "its failure was served from the cache"
                )
            else:
                raise AssertionError(f"a caller got {error!r}")

    @invariant()
    def no_orphan_load(self) -> None:
        waiting = {c[1] for c in self.callers if not c[0].done}
        for key in KEYS:
            for load_id in self.running[key]:
                released = bool(self.gates[load_id][2])
                assert released or key in waiting, f"{key}: load {load_id} runs for nobody"


SETTINGS = settings(
    max_examples=max(settings.default.max_examples // 2, 10),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if os.environ.get("RESILIENCE_NO_SHRINK")
    else list(Phase),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_cache_matches_model() -> None:
    run_state_machine_as_test(CacheMachine, settings=SETTINGS)


# name -> (variant, texts of the invariants that may catch it)
BROKEN = {
    "first_key_eviction": (FirstKeyEviction, ("LRU model",)),
    "size_check_before_await": (SizeCheckBeforeAwait, ("entries, max",)),
    # The stored failure is also an entry the model does not have; and the entry it
    # takes evicts (or stands for) one the model still holds, so a get the model
    # answers with a hit may find nothing (seen in a CI run: "get('c') -> None,
    # model hit=True").
    "failure_cached_for_everyone": (
        FailureCachedForEveryone,
        ("served from the cache", "LRU model", "model hit="),
    ),
    "leader_runs_loader": (LeaderRunsLoader, ("a caller got",)),
}


# fresh searches per variant in the slow catch-rate test (`CATCH_RUNS=200 pytest -m slow ...`)
CATCH_RUNS = int(os.environ.get("CATCH_RUNS", "20"))


def _caught(name: str) -> bool:
    """One fresh search (random seed, no database); True if it fails as expected."""
    cls, expected = BROKEN[name]
    machine = type(f"Cache_{name}", (CacheMachine,), {"cache_class": cls})
    # the size race needs two loads, a set and two completions in order
    examples = 600 if name == "size_check_before_await" else 300
    return caught_by_fresh_search(machine, SETTINGS, expected, name=name, max_examples=examples)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_is_caught(name: str) -> None:
    # size_check_before_await: 197 of 200 fresh searches (docs/resilience.md); a miss
    # gets a second fresh search (a new random seed, not a remembered one).
    assert _caught(name) or _caught(name), f"two fresh searches missed the {name} cache"


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_catch_rate(name: str) -> None:
    """20 fresh runs each (no database, random seeds): the catch rate is printed."""
    rate = measure_catch_rate(lambda: _caught(name), CATCH_RUNS)
    print(f"\n{name}: {rate}")
    assert rate.rate >= 0.95
