"""A TTL + LRU cache with a strict maximum size and single-flight loading.

Theory of operation
-------------------
Entries live in one ``OrderedDict`` kept in least-recently-used order: a hit moves the
key to the end, an insert into a full table first pops the first key (the least recently
used, O(1)). Every mutation is synchronous, so the size check and the insert are one
step: ``len(cache) <= max_size`` holds after every statement, whatever the interleaving
(the flaw replaced here checked the size, awaited, then inserted).

Single flight: a miss in :meth:`Cache.get_or_compute` starts at most one *flight* per
key — the loader runs in a task of the cache's own nursery, not in the caller's — and
every caller for that key waits on it. So a caller that is cancelled only stops waiting;
the loader runs on for the others, and is cancelled only when no caller is left (nothing
runs for callers that have gone). A flight cancelled from outside (the cache closing)
never hands ``Cancelled`` to a waiter: waiters see the cache closed. A loader's exception
goes to the callers of that flight only; it is cached for later callers only if
``failure_ttl`` asks for it.

Stale-while-revalidate: an entry older than ``ttl`` but younger than ``ttl + stale_ttl``
is served by ``get_or_compute`` at once while one background flight refreshes it.
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager
from typing import Any, Final, Generic, ParamSpec, TypeVar, final

import attrs
import trio

from ..telemetry import Telemetry
from ._errors import Rejected
from ._events import (
    CACHE_EVICTED,
    CACHE_EXPIRED,
    CACHE_HIT,
    CACHE_LOAD,
    CACHE_LOAD_FAILED,
    CACHE_MISS,
    Listener,
    _Listeners,
)

__all__ = ["Cache", "CacheStatistics", "open_cache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
P = ParamSpec("P")
_MISSING: Final[Any] = object()


@final
@attrs.frozen
class CacheStatistics:
    """A snapshot of a :class:`Cache`'s counters.

    Attributes:
        size: entries held now (<= ``max_size``).
        hits: fresh entries served.
        stale_hits: stale entries served while a refresh ran.
        misses: lookups that found nothing fresh.
        evictions: live entries dropped to make room (least recently used first).
        expirations: entries dropped because their time ran out.
        loads: loader runs started (one per flight).
        load_failures: loader runs that raised.
        in_flight: loads running now.
    """

    size: int
    hits: int
    stale_hits: int
    misses: int
    evictions: int
    expirations: int
    loads: int
    load_failures: int
    in_flight: int


class _Entry:
    __slots__ = ("error", "fresh_until", "stale_until", "value")

    def __init__(
        self, value: Any, fresh_until: float, stale_until: float, error: BaseException | None
    ) -> None:
        self.value = value
        self.error = error  # a cached failure (only with failure_ttl)
        self.fresh_until = fresh_until
        self.stale_until = stale_until  # Invariant: stale_until >= fresh_until


class _Flight:
    __slots__ = ("background", "cancelled", "done", "error", "scope", "value", "waiters")

    def __init__(self, background: bool) -> None:
        self.done = trio.Event()
        self.scope = trio.CancelScope()
        self.value: Any = None
        self.error: Exception | None = None
        self.cancelled = False
        self.waiters = 0
        self.background = background


def _check_ttl(name: str, value: float | None, *, zero_ok: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number or None, got {type(value).__name__}")
    if math.isnan(value) or value < 0 or (value == 0 and not zero_ok):
        raise ValueError(f"{name} must be > 0, got {value}")


@final
class Cache(Generic[K, V]):
    """TTL + LRU cache with a strict maximum size, O(1) get/set/evict.

    Plain ``get``/``set``/``delete`` work anywhere; :meth:`get_or_compute` and
    :meth:`memoize` need the cache opened with :func:`open_cache` (the loaders run in
    its nursery).

    Args:
        max_size: the most entries held (int >= 1); never exceeded.
        ttl: seconds an entry stays fresh (> 0), or None for no expiry.
        stale_ttl: seconds after ``ttl`` during which a stale entry is still served by
            ``get_or_compute`` while it is refreshed (>= 0; 0 disables).
        failure_ttl: if set, a loader's exception is cached for this many seconds and
            re-raised to later callers; by default failures are not cached.
        max_in_flight: the most loads running at once (int >= 1); beyond it
            ``get_or_compute`` raises :class:`Rejected`.
        name: a name for events and errors.
        clock: seconds, monotonic; defaults to :func:`trio.current_time`.
        telemetry: where the cache's events go (``resilience.cache.hit`` / ``.miss`` /
            ``.evicted`` / ``.expired`` / ``.load`` with measurement ``duration`` /
            ``.load_failed``); ``None``:
            :func:`~trio_foundation.telemetry.default_telemetry`.

    Raises:
        ValueError: a size below 1, a non-positive ttl, a negative stale_ttl.
        TypeError: ``telemetry`` is not a :class:`~trio_foundation.telemetry.Telemetry`.
    """

    def __init__(
        self,
        *,
        max_size: int,
        ttl: float | None = None,
        stale_ttl: float = 0.0,
        failure_ttl: float | None = None,
        max_in_flight: int = 1024,
        name: str = "cache",
        clock: Callable[[], float] = trio.current_time,
        telemetry: Telemetry | None = None,
    ) -> None:
        for label, n in (("max_size", max_size), ("max_in_flight", max_in_flight)):
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"{label} must be an int, got {type(n).__name__}")
            if n < 1:
                raise ValueError(f"{label} must be >= 1, got {n}")
        _check_ttl("ttl", ttl)
        _check_ttl("stale_ttl", stale_ttl, zero_ok=True)
        _check_ttl("failure_ttl", failure_ttl)
        self.max_size: Final = max_size
        self.ttl: Final = math.inf if ttl is None else float(ttl)
        self.stale_ttl: Final = float(stale_ttl)
        self.failure_ttl: Final = failure_ttl
        self.max_in_flight: Final = max_in_flight
        self.name: Final = name
        self._clock = clock
        # Invariant: len(_data) <= max_size; order is least recently used first.
        self._data: collections.OrderedDict[K, _Entry] = collections.OrderedDict()
        self._flights: dict[K, _Flight] = {}  # Invariant: len <= max_in_flight
        self._nursery: trio.Nursery | None = None
        self._closed = False
        self._listeners = _Listeners("cache", name, telemetry)
        self._telemetry = self._listeners.telemetry
        self._listened = self._telemetry.listened  # live view: `name in` is the cheap check
        self._hits = 0
        self._stale_hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._loads = 0
        self._load_failures = 0

    # ------------------------------------------------------------------ synchronous API

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        entry = self._data.get(key)  # type: ignore[arg-type]
        return entry is not None and entry.error is None and self._clock() < entry.fresh_until

    def get(self, key: K, default: Any = None) -> Any:
        """The fresh value for ``key``, or ``default``. Not a checkpoint.

        A hit makes ``key`` the most recently used; an expired entry is dropped.
        """
        data = self._data
        entry = data.get(key)
        if entry is not None:
            if self._clock() < entry.fresh_until and entry.error is None:
                data.move_to_end(key)
                self._hits += 1
                if CACHE_HIT in self._listened:
                    self._listeners.tell(CACHE_HIT, key, "fresh")
                return entry.value
            self._expire_if_dead(key, entry)
        self._misses += 1
        if CACHE_MISS in self._listened:
            self._listeners.tell(CACHE_MISS, key, "get")
        return default

    def set(self, key: K, value: V, ttl: float | None = None) -> None:
        """Store ``value`` for ``key`` (fresh for ``ttl`` or the cache's ttl).

        If the cache is full, the least recently used entry is dropped first, in the
        same step. Not a checkpoint.

        Raises:
            ValueError: a non-positive ``ttl``.
        """
        if ttl is not None:
            _check_ttl("ttl", ttl)
        life = self.ttl if ttl is None else float(ttl)
        now = self._clock()
        self._store(key, _Entry(value, now + life, now + life + self.stale_ttl, None))

    def _store(self, key: K, entry: _Entry) -> None:
        data = self._data
        if key in data:
            data[key] = entry
            data.move_to_end(key)
            return
        if len(data) < self.max_size:
            data[key] = entry
            return
        old_key, old = data.popitem(last=False)
        data[key] = entry
        # Events only once the table is whole again: a handler may call back into the
        # cache (a set from inside the eviction event must not find a free slot that the
        # insert above has not taken yet, or the cache would exceed max_size).
        if self._clock() >= old.stale_until:
            self._expirations += 1
            if CACHE_EXPIRED in self._listened:
                self._listeners.tell(CACHE_EXPIRED, old_key, "dropped to make room")
        else:
            self._evictions += 1
            if self._listeners.wants(CACHE_EVICTED):
                self._emit(CACHE_EVICTED, old_key, "least recently used")

    def _expire_if_dead(self, key: K, entry: _Entry) -> None:
        if self._clock() >= entry.stale_until:
            del self._data[key]
            self._expirations += 1
            if self._telemetry.listening(CACHE_EXPIRED):
                self._listeners.tell(CACHE_EXPIRED, key, "read after expiry")

    def delete(self, key: K) -> bool:
        """Drop ``key``; return whether it was present. A load in flight is not stopped."""
        return self._data.pop(key, None) is not None

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        self._data.clear()

    def statistics(self) -> CacheStatistics:
        """A frozen snapshot of the counters."""
        return CacheStatistics(
            size=len(self._data),
            hits=self._hits,
            stale_hits=self._stale_hits,
            misses=self._misses,
            evictions=self._evictions,
            expirations=self._expirations,
            loads=self._loads,
            load_failures=self._load_failures,
            in_flight=len(self._flights),
        )

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` on evictions and load failures; returns a remover."""
        return self._listeners.add(callback)

    def _emit(self, event: str, key: Hashable, detail: str) -> None:
        self._listeners.emit(event, key, detail, self._clock())

    def _tell_hit(self, key: K, detail: str) -> None:
        if CACHE_HIT in self._listened:
            self._listeners.tell(CACHE_HIT, key, detail)

    # ----------------------------------------------------------------------- async API

    async def get_or_compute(self, key: K, loader: Callable[[], Awaitable[V]]) -> V:
        """The value for ``key``; on a miss, run ``loader()`` once for all callers.

        Always a checkpoint. Concurrent misses for one key share one run of ``loader``
        (it runs in the cache's nursery). If this caller is cancelled it stops waiting
        and nothing is held for it; the loader goes on for the other callers and is
        cancelled when the last caller has left. A stale entry (within ``stale_ttl``) is
        returned at once while one background run refreshes it.

        Raises:
            Exception: whatever ``loader`` raised, to the callers of that run (and to
                later callers while a cached failure lasts, with ``failure_ttl``).
            Rejected: ``max_in_flight`` loads are running already.
            RuntimeError: the cache is not open (see :func:`open_cache`) or closed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._nursery is None or self._closed:
                raise RuntimeError(
                    f"cache {self.name!r} is not open: use `async with open_cache(...)`"
                )
            data = self._data
            entry = data.get(key)
            if entry is not None:
                now = self._clock()
                if now < entry.fresh_until:
                    data.move_to_end(key)
                    if entry.error is not None:
                        self._hits += 1
                        self._tell_hit(key, "cached failure")
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        raise entry.error
                    self._hits += 1
                    self._tell_hit(key, "fresh")
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return entry.value  # type: ignore[no-any-return]
                if now < entry.stale_until and entry.error is None:
                    data.move_to_end(key)
                    self._stale_hits += 1
                    self._tell_hit(key, "stale")
                    if key not in self._flights and len(self._flights) < self.max_in_flight:
                        self._start_flight(key, loader, background=True)
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return entry.value  # type: ignore[no-any-return]
                self._expire_if_dead(key, entry)
            self._misses += 1
            if CACHE_MISS in self._listened:
                self._listeners.tell(CACHE_MISS, key, "get_or_compute")
            flight = self._flights.get(key)
            if flight is None:
                if len(self._flights) >= self.max_in_flight:
                    raise Rejected("cache", f"{len(self._flights)} loads in flight (the maximum)")
                flight = self._start_flight(key, loader, background=False)
            flight.waiters += 1
            try:
                await flight.done.wait()
            finally:
                flight.waiters -= 1
                if not flight.waiters and not flight.background and not flight.done.is_set():
                    flight.scope.cancel()  # nobody is left to want the value
            if flight.error is not None:
                raise flight.error
            if not flight.cancelled:
                return flight.value  # type: ignore[no-any-return]
            # The loader was cancelled from outside: start again (or find the cache closed).

    def _start_flight(
        self, key: K, loader: Callable[[], Awaitable[V]], *, background: bool
    ) -> _Flight:
        assert self._nursery is not None
        flight = self._flights[key] = _Flight(background)
        self._loads += 1
        self._nursery.start_soon(self._run_flight, key, loader, flight)
        return flight

    async def _run_flight(
        self, key: K, loader: Callable[[], Awaitable[V]], flight: _Flight
    ) -> None:
        began = self._clock()
        outcome = "cancelled"
        try:
            with flight.scope:
                try:
                    value = await loader()
                except trio.Cancelled:
                    flight.cancelled = True
                    raise
                except Exception as exc:
                    outcome = "error"
                    self._load_failures += 1
                    if self._listeners.wants(CACHE_LOAD_FAILED):
                        self._emit(CACHE_LOAD_FAILED, key, repr(exc))
                    flight.error = exc  # to the callers waiting on this flight
                    if self.failure_ttl is not None and (flight.waiters or not flight.background):
                        now = self._clock()
                        until = now + self.failure_ttl
                        self._store(key, _Entry(None, until, until, exc))
                else:
                    outcome = "ok"
                    flight.value = value
                    now = self._clock()
                    self._store(
                        key, _Entry(value, now + self.ttl, now + self.ttl + self.stale_ttl, None)
                    )
            if flight.scope.cancelled_caught:
                flight.cancelled = True
            if self._telemetry.listening(CACHE_LOAD):
                self._listeners.tell(
                    CACHE_LOAD,
                    key,
                    outcome,
                    {"duration": self._clock() - began, "background": float(flight.background)},
                )
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]
            flight.done.set()

    def memoize(
        self, key: Callable[..., K] | None = None
    ) -> Callable[[Callable[P, Awaitable[V]]], Callable[P, Awaitable[V]]]:
        """Decorate an async function so its results are cached in this cache.

        Args:
            key: maps the call's arguments to the cache key; by default
                ``(args, tuple(sorted(kwargs.items())))`` (arguments must be hashable).

        The decorated function has :meth:`get_or_compute`'s semantics (single flight,
        cancellation, failures not cached unless ``failure_ttl``).
        """

        def decorate(fn: Callable[P, Awaitable[V]]) -> Callable[P, Awaitable[V]]:
            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> V:
                k: Any = (
                    key(*args, **kwargs)
                    if key is not None
                    else (args, tuple(sorted(kwargs.items())))
                )
                return await self.get_or_compute(k, lambda: fn(*args, **kwargs))

            return wrapper

        return decorate


@asynccontextmanager
async def open_cache(
    *,
    max_size: int,
    ttl: float | None = None,
    stale_ttl: float = 0.0,
    failure_ttl: float | None = None,
    max_in_flight: int = 1024,
    name: str = "cache",
    clock: Callable[[], float] = trio.current_time,
    telemetry: Telemetry | None = None,
) -> AsyncIterator[Cache[Any, Any]]:
    """Open a :class:`Cache` whose loaders run in a nursery owned by this block.

    Arguments are :class:`Cache`'s. On exit, loads still running are cancelled and their
    waiters get ``RuntimeError`` (cache closed); the entries stay readable.
    """
    cache: Cache[Any, Any] = Cache(
        max_size=max_size,
        ttl=ttl,
        stale_ttl=stale_ttl,
        failure_ttl=failure_ttl,
        max_in_flight=max_in_flight,
        name=name,
        clock=clock,
        telemetry=telemetry,
    )
    async with trio.open_nursery() as nursery:
        cache._nursery = nursery
        try:
            yield cache
        finally:
            cache._closed = True
            nursery.cancel_scope.cancel()
