"""Circuit breaker: closed, open, half-open (Nygard, *Release It!*, ch. 5).

Theory of operation
-------------------
Closed: calls pass; failures are counted — consecutive failures (count mode) or the
failure rate over a sliding time window of ten buckets once ``minimum_calls`` calls
were seen (rate mode). Reaching the threshold opens the circuit. Open: calls are refused
with :class:`CircuitOpenError` until ``reset_timeout`` has passed; then the breaker is
half-open and lets at most ``half_open_max_calls`` trial calls run at once. A trial's
success closes the circuit, a trial's failure opens it again.

Every transition bumps a generation; a call's outcome counts only in the generation it
started in, so a slow call that began before the circuit opened can neither close it
nor extend it. A cancelled call is neither a success nor a failure; it only frees its
trial slot. Entering and leaving the breaker is synchronous (not a checkpoint), which
keeps its cost per call under a microsecond.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, Literal, ParamSpec, TypeVar, final

import attrs
import trio
from trio.lowlevel import current_task

from ..telemetry import Telemetry
from ._errors import CircuitOpenError
from ._events import BREAKER_REJECTED, BREAKER_STATE, Listener, _Listeners

__all__ = ["BreakerState", "CircuitBreaker", "CircuitBreakerStatistics"]

BreakerState = Literal["closed", "open", "half_open"]
P = ParamSpec("P")
T = TypeVar("T")
_BUCKETS: Final = 10
#: The value of the ``state`` measurement (and of a state gauge) for each state.
STATE_VALUES: Final[dict[BreakerState, float]] = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


@final
@attrs.frozen
class CircuitBreakerStatistics:
    """A snapshot of a :class:`CircuitBreaker`.

    Attributes:
        state: ``"closed"``, ``"open"`` or ``"half_open"``.
        successes, failures, rejected: calls counted since the breaker was made.
        opened: times the circuit opened.
        trials: trial calls running now (half-open).
    """

    state: BreakerState
    successes: int
    failures: int
    rejected: int
    opened: int
    trials: int


@final
class CircuitBreaker:
    """A circuit breaker usable as ``async with breaker:`` and as a decorator.

    Args:
        name: used in errors and events.
        failure_threshold: consecutive failures that open the circuit (count mode).
        failure_rate: if given (0 < rate <= 1), rate mode: the circuit opens when the
            failed fraction of the calls in the last ``window`` seconds reaches it, once
            at least ``minimum_calls`` calls were seen in that window.
        window: rate mode's window in seconds (> 0).
        minimum_calls: rate mode's minimum number of calls (int >= 1).
        reset_timeout: seconds the circuit stays open before trials (> 0).
        half_open_max_calls: trial calls allowed at once when half-open (int >= 1).
        exclude: exception types that are not failures (they count as successes).
        is_failure: optional predicate deciding whether an exception is a failure.
        clock: seconds, monotonic; defaults to :func:`trio.current_time`.
        telemetry: where ``resilience.circuit_breaker.state`` (every transition;
            measurement ``state``: 0 closed, 1 half-open, 2 open) and
            ``resilience.circuit_breaker.rejected`` (measurement ``retry_after``) go;
            ``None``: :func:`~trio_foundation.telemetry.default_telemetry`.

    Raises:
        TypeError: ``telemetry`` is not a :class:`~trio_foundation.telemetry.Telemetry`.
        ValueError: a threshold, window, timeout or count that is not positive, a rate
            outside (0, 1].
    """

    def __init__(
        self,
        *,
        name: str = "breaker",
        failure_threshold: int = 5,
        failure_rate: float | None = None,
        window: float = 10.0,
        minimum_calls: int = 10,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        exclude: tuple[type[BaseException], ...] = (),
        is_failure: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = trio.current_time,
        telemetry: Telemetry | None = None,
    ) -> None:
        for label, n in (
            ("failure_threshold", failure_threshold),
            ("minimum_calls", minimum_calls),
            ("half_open_max_calls", half_open_max_calls),
        ):
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"{label} must be an int, got {type(n).__name__}")
            if n < 1:
                raise ValueError(f"{label} must be >= 1, got {n}")
        for label, x in (("window", window), ("reset_timeout", reset_timeout)):
            if not (x > 0 and math.isfinite(x)):
                raise ValueError(f"{label} must be > 0 and finite, got {x}")
        if failure_rate is not None and not 0 < failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], got {failure_rate}")
        self.name: Final = name
        self.failure_threshold: Final = failure_threshold
        self.failure_rate: Final = failure_rate
        self.window: Final = float(window)
        self.minimum_calls: Final = minimum_calls
        self.reset_timeout: Final = float(reset_timeout)
        self.half_open_max_calls: Final = half_open_max_calls
        self._exclude = exclude
        self._is_failure = is_failure
        self._clock = clock
        self._state: BreakerState = "closed"
        self._gen = 0  # bumped by every transition
        # Invariant: _mark == _gen << 1, the mark of a non-trial call of this generation;
        # _fast_mark == _mark in count mode, else -1 (never a mark): __aexit__'s fast path.
        self._mark = 0
        self._fast_mark = 0 if failure_rate is None else -1
        self._opened_at = 0.0
        self._consecutive = 0
        self._trials = 0
        # Rate mode: a ring of time buckets (bucket id, calls, failures).
        self._bucket_len = self.window / _BUCKETS
        self._ids = [-1] * _BUCKETS
        self._calls = [0] * _BUCKETS
        self._fails = [0] * _BUCKETS
        self._in_call: dict[object, int] = {}  # task -> generation << 1 | trial
        self._listeners = _Listeners("circuit_breaker", name, telemetry)
        self._successes = 0
        self._failures = 0
        self._rejected = 0
        self._opened = 0

    # ----------------------------------------------------------------------- state

    @property
    def state(self) -> BreakerState:
        """The current state (an open circuit whose timeout passed reads half-open)."""
        if self._state == "open" and self._clock() >= self._opened_at + self.reset_timeout:
            self._transition("half_open")
        return self._state

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` on every state change (``kind="state"``).

        The same changes are emitted as ``resilience.circuit_breaker.state`` through the
        breaker's telemetry; returns a function that removes the callback.
        """
        return self._listeners.add(callback)

    def statistics(self) -> CircuitBreakerStatistics:
        """A frozen snapshot of the state and counters."""
        return CircuitBreakerStatistics(
            state=self.state,
            successes=self._successes,
            failures=self._failures,
            rejected=self._rejected,
            opened=self._opened,
            trials=self._trials,
        )

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        self._gen += 1
        self._mark = self._gen << 1
        if self.failure_rate is None:
            self._fast_mark = self._mark
        self._trials = 0
        self._consecutive = 0
        if new == "open":
            self._opened += 1
            self._opened_at = self._clock()
        elif new == "closed":
            self._ids = [-1] * _BUCKETS
        if self._listeners.wants(BREAKER_STATE):
            self._listeners.emit(
                BREAKER_STATE,
                None,
                f"{old} -> {new}",
                self._clock(),
                {"state": STATE_VALUES[new], "previous": STATE_VALUES[old]},
            )

    # --------------------------------------------------------------- call protocol

    def _enter(self) -> tuple[int, bool]:
        state = self._state
        if state == "open":
            state = self.state
        if state == "closed":
            return self._gen, False
        if state == "half_open" and self._trials < self.half_open_max_calls:
            self._trials += 1
            return self._gen, True
        self._rejected += 1
        retry_after = 0.0
        if state == "open":
            retry_after = self._opened_at + self.reset_timeout - self._clock()
        if self._listeners.telemetry.listening(BREAKER_REJECTED):
            self._listeners.tell(BREAKER_REJECTED, None, state, {"retry_after": retry_after})
        raise CircuitOpenError(self.name, retry_after)

    def _exit(self, gen: int, trial: bool, exc: BaseException | None) -> None:
        if exc is not None and isinstance(exc, trio.Cancelled):
            if trial and gen == self._gen:
                self._trials -= 1
            return
        failed = (
            exc is not None
            and isinstance(exc, Exception)
            and not isinstance(exc, self._exclude)
            and (self._is_failure is None or self._is_failure(exc))
        )
        if failed:
            self._failures += 1
        else:
            self._successes += 1
        if gen != self._gen:
            return  # began in an earlier state: its outcome does not count now
        if trial:
            self._transition("open" if failed else "closed")
            return
        if self.failure_rate is None:
            if failed:
                self._consecutive += 1
                if self._consecutive >= self.failure_threshold:
                    self._transition("open")
            else:
                self._consecutive = 0
            return
        bucket = int(self._clock() // self._bucket_len)
        slot = bucket % _BUCKETS
        if self._ids[slot] != bucket:
            self._ids[slot] = bucket
            self._calls[slot] = 0
            self._fails[slot] = 0
        self._calls[slot] += 1
        if failed:
            self._fails[slot] += 1
            oldest = bucket - _BUCKETS
            calls = fails = 0
            for i in range(_BUCKETS):
                if self._ids[i] > oldest:
                    calls += self._calls[i]
                    fails += self._fails[i]
            if calls >= self.minimum_calls and fails >= self.failure_rate * calls:
                self._transition("open")

    async def __aenter__(self) -> None:
        """Enter a call. Not a checkpoint.

        Raises:
            CircuitOpenError: the circuit is open, or half-open with every trial taken.
            RuntimeError: this task is already inside this breaker.
        """
        task = current_task()
        calls = self._in_call
        if task in calls:
            raise RuntimeError(f"breaker {self.name!r} entered twice by one task")
        if self._state == "closed":
            calls[task] = self._mark  # fast path: not a trial
            return
        gen, trial = self._enter()
        calls[task] = gen << 1 | trial

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record the call's outcome (cancellation counts as neither). Not a checkpoint."""
        mark = self._in_call.pop(current_task())
        if exc_type is None and mark == self._fast_mark:
            self._successes += 1  # fast path: a success in the generation it entered
            self._consecutive = 0
            return
        self._exit(mark >> 1, bool(mark & 1), exc)

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate an async function so every call goes through the breaker."""

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            gen, trial = self._enter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._exit(gen, trial, exc)
                raise
            self._exit(gen, trial, None)
            return result

        return wrapper
