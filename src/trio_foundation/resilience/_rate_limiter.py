"""Rate limiting: four algorithms (sans-IO) and a per-key, trio-native limiter.

Theory of operation
-------------------
Each algorithm is a frozen value (its parameters) whose methods act on a small mutable
per-key state and take the time as an argument: no clock, no trio, no await inside. The
one decision, :meth:`take`, checks *and* records a grant in one synchronous step, so no
other task can run between the check and the increment — the flaw this module replaces
("check, await, increment") cannot occur, whatever the interleaving.

Stated bounds (``W`` the window, ``r`` the rate, ``b`` the burst, weights summed):

* :class:`TokenBucket` and :class:`GCRA`: at most ``b + r * t`` in any interval of
  length ``t`` (closed interval; GCRA is the virtual-scheduling form of the same bucket,
  ITU-T I.371, kept for its one-float state).
* :class:`SlidingLog`: at most ``limit`` in any half-open interval of length ``W``.
* :class:`SlidingCounter` (Cloudflare's estimate ``prev * (1 - f) + cur``): at most
  ``limit`` in any aligned window ``[kW, (k+1)W)``; a sliding interval starting ``g``
  into window ``k`` sees at most ``limit + prev_k * g / W`` (< ``2 * limit``): it trades
  exactness for two integers of state.

Floating point: times and rates are floats; the bounds hold up to the rounding of
``r * elapsed`` (exact when both are dyadic, as in the tests).

The limiter keeps one state per key in a table bounded by ``max_keys``. A key is *idle*
when a fresh state would decide exactly as its state does (a full bucket; an empty
log), so evicting it loses nothing; busy keys are never evicted, which keeps every bound
exact: when the table is full of busy keys a new key is refused rather than let through.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Hashable
from typing import Any, Final, Protocol, final

import attrs
import trio

from ..telemetry import Telemetry
from ._errors import Rejected
from ._events import LIMITER_REJECTED, LIMITER_WAIT, _Listeners

__all__ = [
    "GCRA",
    "RateLimiter",
    "RateLimiterStatistics",
    "SlidingCounter",
    "SlidingLog",
    "TokenBucket",
]


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be > 0 and finite, got {value}")


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


class Algorithm(Protocol):
    """What :class:`RateLimiter` needs from an algorithm (all four satisfy it)."""

    @property
    def capacity(self) -> int:
        """The largest weight one acquisition may ask for."""
        ...

    def new_state(self, now: float) -> Any:
        """A fresh state for a key first seen at ``now``."""
        ...

    def take(self, state: Any, now: float, weight: int) -> float:
        """Grant ``weight`` at ``now`` and return 0.0, or return the seconds to wait.

        A refusal leaves ``state`` unchanged; the returned wait is > 0 and is a lower
        bound: a retry at ``now + wait`` may be refused again (other grants came first).
        """
        ...

    def try_take(self, state: Any, now: float, weight: int) -> bool:
        """:meth:`take` without computing the wait: True if granted (and recorded)."""
        ...

    def idle(self, state: Any, now: float) -> bool:
        """Whether ``state`` decides exactly as a fresh state would from ``now`` on."""
        ...


# --------------------------------------------------------------------------- token bucket


class _Bucket:
    __slots__ = ("last", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens  # Invariant: 0 <= tokens <= burst, as of time `last`.
        self.last = last


@final
@attrs.frozen
class TokenBucket:
    """Token bucket: ``burst`` tokens, refilled at ``rate`` tokens per second.

    Bound: at most ``burst + rate * t`` weight granted in any interval of length ``t``.

    Args:
        rate: tokens added per second (> 0).
        burst: bucket capacity in tokens (int >= 1); also the largest weight.

    Raises:
        ValueError: a non-positive or non-finite rate, a burst below 1.
    """

    rate: float
    burst: int

    def __attrs_post_init__(self) -> None:
        _positive("rate", self.rate)
        _positive_int("burst", self.burst)

    @property
    def capacity(self) -> int:
        return self.burst

    def new_state(self, now: float) -> _Bucket:
        return _Bucket(float(self.burst), now)

    def take(self, state: _Bucket, now: float, weight: int) -> float:
        tokens = state.tokens + (now - state.last) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= weight:
            state.tokens = tokens - weight
            state.last = now
            return 0.0
        return max((weight - tokens) / self.rate, 1e-9)

    def try_take(self, state: _Bucket, now: float, weight: int) -> bool:
        tokens = state.tokens + (now - state.last) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= weight:
            state.tokens = tokens - weight
            state.last = now
            return True
        return False

    def idle(self, state: _Bucket, now: float) -> bool:
        return state.tokens + (now - state.last) * self.rate >= self.burst


# ----------------------------------------------------------------------------------- GCRA


class _Tat:
    __slots__ = ("tat",)

    def __init__(self, tat: float) -> None:
        self.tat = tat  # theoretical arrival time: the bucket is full again at `tat`


@final
@attrs.frozen
class GCRA:
    """Generic cell rate algorithm: the token bucket kept as one timestamp.

    Bound: at most ``burst + rate * t`` weight granted in any interval of length ``t``.

    Args:
        rate: sustained rate in weight per second (> 0).
        burst: largest burst (int >= 1); also the largest weight.

    Raises:
        ValueError: a non-positive or non-finite rate, a burst below 1.
    """

    rate: float
    burst: int

    def __attrs_post_init__(self) -> None:
        _positive("rate", self.rate)
        _positive_int("burst", self.burst)

    @property
    def capacity(self) -> int:
        return self.burst

    def new_state(self, now: float) -> _Tat:
        return _Tat(now)

    def take(self, state: _Tat, now: float, weight: int) -> float:
        tat = state.tat if state.tat > now else now
        # Granted iff the debt after the grant fits the burst: (tat - now) * rate + w <= b.
        excess = (tat - now) * self.rate + weight - self.burst
        if excess <= 0:
            state.tat = tat + weight / self.rate
            return 0.0
        return max(excess / self.rate, 1e-9)

    def try_take(self, state: _Tat, now: float, weight: int) -> bool:
        return not self.take(state, now, weight)

    def idle(self, state: _Tat, now: float) -> bool:
        return state.tat <= now


# ----------------------------------------------------------------------------- sliding log


class _Log:
    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        # Invariant: total == sum of weights in entries; at most `limit` entries.
        self.entries: collections.deque[tuple[float, int]] = collections.deque()
        self.total = 0


@final
@attrs.frozen
class SlidingLog:
    """Sliding log: every grant in the last ``window`` seconds is remembered.

    Bound: at most ``limit`` weight granted in any half-open interval of length
    ``window``. Memory: at most ``limit`` entries per key.

    Args:
        limit: weight allowed per window (int >= 1); also the largest weight.
        window: window length in seconds (> 0).

    Raises:
        ValueError: a limit below 1, a non-positive or non-finite window.
    """

    limit: int
    window: float

    def __attrs_post_init__(self) -> None:
        _positive_int("limit", self.limit)
        _positive("window", self.window)

    @property
    def capacity(self) -> int:
        return self.limit

    def new_state(self, now: float) -> _Log:
        return _Log()

    def _expire(self, state: _Log, now: float) -> None:
        entries = state.entries
        horizon = now - self.window
        while entries and entries[0][0] <= horizon:
            state.total -= entries.popleft()[1]

    def take(self, state: _Log, now: float, weight: int) -> float:
        self._expire(state, now)
        if state.total + weight <= self.limit:
            state.entries.append((now, weight))
            state.total += weight
            return 0.0
        need = state.total + weight - self.limit
        freed = 0
        for at, w in state.entries:
            freed += w
            if freed >= need:
                return max(at + self.window - now, 1e-9)
        raise AssertionError("unreachable: weight <= limit")  # pragma: no cover

    def try_take(self, state: _Log, now: float, weight: int) -> bool:
        entries = state.entries
        horizon = now - self.window
        while entries and entries[0][0] <= horizon:
            state.total -= entries.popleft()[1]
        if state.total + weight <= self.limit:
            entries.append((now, weight))
            state.total += weight
            return True
        return False

    def idle(self, state: _Log, now: float) -> bool:
        self._expire(state, now)
        return not state.entries


# ------------------------------------------------------------------------- sliding counter


class _Counter:
    __slots__ = ("cur", "prev", "start")

    def __init__(self, start: float) -> None:
        self.start = start  # start of the current aligned window
        self.cur = 0
        self.prev = 0


@final
@attrs.frozen
class SlidingCounter:
    """Sliding window counter (two aligned windows, the previous one weighted).

    Bound: at most ``limit`` in any aligned window ``[kW, (k+1)W)``, and at most
    ``limit + prev * g / W`` in a sliding interval starting ``g`` seconds into a window
    whose count is ``prev`` (always < ``2 * limit``). Memory: three numbers per key.

    Args:
        limit: weight allowed per window (int >= 1); also the largest weight.
        window: window length in seconds (> 0).

    Raises:
        ValueError: a limit below 1, a non-positive or non-finite window.
    """

    limit: int
    window: float

    def __attrs_post_init__(self) -> None:
        _positive_int("limit", self.limit)
        _positive("window", self.window)

    @property
    def capacity(self) -> int:
        return self.limit

    def new_state(self, now: float) -> _Counter:
        return _Counter(math.floor(now / self.window) * self.window)

    def _roll(self, state: _Counter, now: float) -> None:
        start = math.floor(now / self.window) * self.window
        if start != state.start:
            state.prev = state.cur if start == state.start + self.window else 0
            state.cur = 0
            state.start = start

    def take(self, state: _Counter, now: float, weight: int) -> float:
        self._roll(state, now)
        elapsed = (now - state.start) / self.window
        room = self.limit - state.cur - weight
        if state.prev * (1.0 - elapsed) <= room:
            state.cur += weight
            return 0.0
        if room >= 0 and state.prev > 0:
            # prev * (1 - f) <= room once f >= 1 - room / prev.
            at = state.start + (1.0 - room / state.prev) * self.window
        else:
            at = state.start + self.window
        return max(at - now - 1e-9 * self.window, 1e-9)

    def try_take(self, state: _Counter, now: float, weight: int) -> bool:
        return not self.take(state, now, weight)

    def idle(self, state: _Counter, now: float) -> bool:
        self._roll(state, now)
        return state.cur == 0 and state.prev == 0


# ------------------------------------------------------------------------------- limiter


@final
@attrs.frozen
class RateLimiterStatistics:
    """A snapshot of a :class:`RateLimiter`.

    Attributes:
        keys: keys in the table now (<= ``max_keys``).
        waiting: tasks blocked in :meth:`RateLimiter.acquire`.
        granted: acquisitions granted so far (``try_acquire`` and ``acquire``).
        denied: ``try_acquire`` calls refused.
        evicted: idle keys evicted from the table.
        refused_keys: new keys refused because every key in a full table was busy.
    """

    keys: int
    waiting: int
    granted: int
    denied: int
    evicted: int
    refused_keys: int


class _Key:
    __slots__ = ("state", "waiters")

    def __init__(self, state: Any) -> None:
        self.state = state
        # FIFO of waiting acquisitions; the head is the only one that may take.
        self.waiters: collections.deque[_Waiter] = collections.deque()


class _Waiter:
    __slots__ = ("event", "weight")

    def __init__(self, weight: int) -> None:
        self.weight = weight
        self.event = trio.Event()  # set when this waiter becomes the head


_SWEEP: Final = 2  # idle keys checked at the LRU end per new key (amortised O(1))


@final
class RateLimiter:
    """A per-key rate limiter with weighted, fair, cancellable acquisitions.

    Args:
        algorithm: :class:`TokenBucket`, :class:`SlidingLog`, :class:`SlidingCounter` or
            :class:`GCRA` (each states its bound).
        max_keys: the most keys kept at once (int >= 1). Idle keys are evicted in
            least-recently-used order; a new key that finds the table full of busy keys
            is refused (``try_acquire`` returns False, ``acquire`` raises
            :class:`Rejected`), so the bound never costs exactness.
        max_waiters: the most tasks blocked in :meth:`acquire` at once, over all keys.
        clock: seconds, monotonic; defaults to :func:`trio.current_time` (so a
            ``MockClock`` drives it).
        name: used in events.
        telemetry: where ``resilience.rate_limiter.rejected`` (measurement ``weight``)
            and ``resilience.rate_limiter.wait`` (an ``acquire`` that had to wait;
            measurements ``duration``, ``weight``) go; ``None``:
            :func:`~trio_foundation.telemetry.default_telemetry`.

    Raises:
        ValueError: ``max_keys`` or ``max_waiters`` below 1.
        TypeError: ``telemetry`` is not a :class:`~trio_foundation.telemetry.Telemetry`.
    """

    def __init__(
        self,
        algorithm: TokenBucket | GCRA | SlidingLog | SlidingCounter,
        *,
        max_keys: int = 10_000,
        max_waiters: int = 10_000,
        clock: Callable[[], float] = trio.current_time,
        name: str = "rate_limiter",
        telemetry: Telemetry | None = None,
    ) -> None:
        _positive_int("max_keys", max_keys)
        _positive_int("max_waiters", max_waiters)
        self.algorithm: Final = algorithm
        self.max_keys: Final = max_keys
        self.max_waiters: Final = max_waiters
        self._clock = clock
        self._take: Callable[[Any, float, int], float] = algorithm.take
        self._try_take: Callable[[Any, float, int], bool] = algorithm.try_take
        self._capacity = algorithm.capacity
        # Invariant: len(_keys) <= max_keys; order is least recently used first.
        self._keys: collections.OrderedDict[Hashable, _Key] = collections.OrderedDict()
        self._waiting = 0
        self._granted = 0
        self._denied = 0
        self._evicted = 0
        self._refused_keys = 0
        self.name: Final = name
        self._listeners = _Listeners("rate_limiter", name, telemetry)
        self._telemetry = self._listeners.telemetry
        self._listened = self._telemetry.listened  # live view: `name in` is the cheap check

    def _check_weight(self, weight: int) -> None:
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise TypeError(f"weight must be an int, got {type(weight).__name__}")
        if not 1 <= weight <= self._capacity:
            raise ValueError(
                f"weight must be between 1 and the capacity {self._capacity}, got {weight}"
            )

    def _entry(self, key: Hashable, now: float) -> _Key | None:
        keys = self._keys
        entry = keys.get(key)
        if entry is not None:
            keys.move_to_end(key)
            return entry
        idle = self.algorithm.idle
        for _ in range(_SWEEP):
            if not keys:
                break
            head_key, head = next(iter(keys.items()))
            if head.waiters or not idle(head.state, now):
                break
            del keys[head_key]
            self._evicted += 1
        if len(keys) >= self.max_keys and not self._evict_one(now):
            self._refused_keys += 1
            return None
        entry = keys[key] = _Key(self.algorithm.new_state(now))
        return entry

    def _evict_one(self, now: float) -> bool:
        idle = self.algorithm.idle
        for k, e in self._keys.items():  # O(n), only when the table is full
            if not e.waiters and idle(e.state, now):
                del self._keys[k]
                self._evicted += 1
                return True
        return False

    def evict_idle(self) -> int:
        """Evict every idle key now and return how many were evicted (O(keys))."""
        now = self._clock()
        idle = self.algorithm.idle
        gone = [k for k, e in self._keys.items() if not e.waiters and idle(e.state, now)]
        for k in gone:
            del self._keys[k]
        self._evicted += len(gone)
        return len(gone)

    def try_acquire(self, key: Hashable = None, weight: int = 1) -> bool:
        """Take ``weight`` for ``key`` now if the algorithm allows it; never waits.

        Refused while tasks are waiting in :meth:`acquire` for the same key (they came
        first). Not a checkpoint.

        Returns:
            True if granted (and recorded), False if not (nothing recorded).

        Raises:
            TypeError, ValueError: a weight that is not an int in ``1..capacity``.
        """
        if weight.__class__ is not int or weight < 1 or weight > self._capacity:
            self._check_weight(weight)  # raises, naming the problem
        now = self._clock()
        entry = self._keys.get(key)
        if entry is None:
            entry = self._entry(key, now)
        else:
            self._keys.move_to_end(key)
        if entry is None or entry.waiters or not self._try_take(entry.state, now, weight):
            self._denied += 1
            if LIMITER_REJECTED in self._listened:
                self._tell_rejected(key, weight, entry)
            return False
        self._granted += 1
        return True

    async def acquire(self, key: Hashable = None, weight: int = 1) -> None:
        """Wait until ``weight`` may be taken for ``key``, then take it.

        Acquisitions of one key are granted in arrival order (a heavy one at the head
        holds back lighter ones behind it). Always a checkpoint. If cancelled, nothing
        was taken and the task's place in the queue is given up; the grant and the
        return happen with no checkpoint between them.

        Raises:
            TypeError, ValueError: a weight that is not an int in ``1..capacity``.
            Rejected: ``max_waiters`` tasks are already waiting, or ``key`` is new and
                the key table is full of busy keys.
        """
        self._check_weight(weight)
        await trio.lowlevel.checkpoint_if_cancelled()
        now = self._clock()
        entry = self._entry(key, now)
        if entry is None:
            self._tell_rejected(key, weight, None)
            raise Rejected("rate limiter", f"all {self.max_keys} keys are busy")
        if not entry.waiters and not self._take(entry.state, now, weight):
            self._granted += 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._waiting >= self.max_waiters:
            self._tell_rejected(key, weight, entry)
            raise Rejected("rate limiter", f"{self._waiting} tasks waiting (the maximum)")
        began = now
        waiter = _Waiter(weight)
        waiters = entry.waiters
        waiters.append(waiter)
        self._waiting += 1
        try:
            while True:
                if waiters[0] is waiter:
                    now = self._clock()
                    wait = self._take(entry.state, now, weight)
                    if not wait:
                        self._granted += 1
                        break
                    await trio.sleep_until(now + wait)
                else:
                    await waiter.event.wait()
        finally:
            self._waiting -= 1
            if waiters[0] is waiter:
                waiters.popleft()
                if waiters:
                    waiters[0].event.set()
            else:
                waiters.remove(waiter)
        # Granted; the queue is whole again, so a handler may call back into the limiter.
        if LIMITER_WAIT in self._listened:
            self._listeners.tell(
                LIMITER_WAIT,
                key,
                "granted after waiting",
                {"duration": now - began, "weight": weight},
            )

    def _tell_rejected(self, key: Hashable, weight: int, entry: _Key | None) -> None:
        if not self._telemetry.listening(LIMITER_REJECTED):
            return
        if entry is None:
            why = f"all {self.max_keys} keys are busy"
        elif self._waiting >= self.max_waiters:
            why = "too many waiters"
        elif entry.waiters:
            why = "tasks are waiting for this key"
        else:
            why = "over the limit"
        self._listeners.tell(LIMITER_REJECTED, key, why, {"weight": weight})

    def statistics(self) -> RateLimiterStatistics:
        """A frozen snapshot of the table size and counters."""
        return RateLimiterStatistics(
            keys=len(self._keys),
            waiting=self._waiting,
            granted=self._granted,
            denied=self._denied,
            evicted=self._evicted,
            refused_keys=self._refused_keys,
        )
