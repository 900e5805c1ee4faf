"""Retries on tenacity, with a shared retry budget and an overall deadline.

The retry loop, backoff and jitter are tenacity's (``AsyncRetrying``, which sleeps with
``trio.sleep`` under trio). What this module adds:

* :class:`RetryBudget` — a budget shared by every caller of a service, as in Finagle's
  ``RetryBudget``: retries in the last ``window`` seconds may not exceed
  ``min_per_second * window + ratio * requests`` in that window, so a failing dependency
  sees at most ``1 + ratio`` times its normal load instead of ``attempts`` times.
* an overall deadline: the whole call (every attempt and every sleep) runs in one
  :func:`trio.fail_after` scope.
* events for each retry through the listener hook.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Final, ParamSpec, TypeVar, final

import attrs
import tenacity
import trio

from ..telemetry import Telemetry
from ._errors import RetryBudgetExhausted
from ._events import RETRY_RETRY, Listener, _Listeners

__all__ = ["RetryBudget", "RetryBudgetStatistics", "RetryPolicy"]

P = ParamSpec("P")
T = TypeVar("T")
_BUCKETS: Final = 10


@final
@attrs.frozen
class RetryBudgetStatistics:
    """A snapshot of a :class:`RetryBudget` over its window.

    Attributes:
        requests: first attempts recorded in the window.
        retries: retries granted in the window.
        refused: retries refused so far (all time).
    """

    requests: int
    retries: int
    refused: int


@final
class RetryBudget:
    """Retries allowed per window: ``min_per_second * window + ratio * requests``.

    Args:
        ratio: extra load allowed from retries, as a fraction of requests (>= 0).
        min_per_second: retries always allowed per second, for low traffic (>= 0).
        window: seconds over which requests and retries are counted (> 0); kept as ten
            time buckets, so memory is constant.
        name: used in errors.
        clock: seconds, monotonic; defaults to :func:`trio.current_time`.

    Raises:
        ValueError: a negative ratio or minimum, a non-positive window.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        window: float = 10.0,
        name: str = "retry",
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if not (ratio >= 0 and math.isfinite(ratio)):
            raise ValueError(f"ratio must be >= 0, got {ratio}")
        if not (min_per_second >= 0 and math.isfinite(min_per_second)):
            raise ValueError(f"min_per_second must be >= 0, got {min_per_second}")
        if not (window > 0 and math.isfinite(window)):
            raise ValueError(f"window must be > 0, got {window}")
        self.ratio: Final = ratio
        self.min_per_second: Final = min_per_second
        self.window: Final = float(window)
        self.name: Final = name
        self._clock = clock
        self._len = self.window / _BUCKETS
        self._ids = [-1] * _BUCKETS
        self._requests = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._refused = 0

    def _slot(self) -> tuple[int, int]:
        bucket = int(self._clock() // self._len)
        slot = bucket % _BUCKETS
        if self._ids[slot] != bucket:
            self._ids[slot] = bucket
            self._requests[slot] = 0
            self._retries[slot] = 0
        return bucket, slot

    def _totals(self, bucket: int) -> tuple[int, int]:
        oldest = bucket - _BUCKETS
        req = ret = 0
        for i in range(_BUCKETS):
            if self._ids[i] > oldest:
                req += self._requests[i]
                ret += self._retries[i]
        return req, ret

    def record_request(self) -> None:
        """Count one first attempt. Not a checkpoint."""
        self._requests[self._slot()[1]] += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget if there is room. Not a checkpoint."""
        bucket, slot = self._slot()
        req, ret = self._totals(bucket)
        if ret + 1 > self.min_per_second * self.window + self.ratio * req:
            self._refused += 1
            return False
        self._retries[slot] += 1
        return True

    def statistics(self) -> RetryBudgetStatistics:
        """A frozen snapshot."""
        req, ret = self._totals(self._slot()[0])
        return RetryBudgetStatistics(requests=req, retries=ret, refused=self._refused)


@final
class RetryPolicy:
    """Retry an async call with exponential backoff (tenacity), a budget and a deadline.

    Args:
        on: exception type(s) worth retrying, or a predicate over the exception.
        attempts: the most attempts, the first included (int >= 1).
        deadline: seconds for the whole call, every attempt and sleep included (> 0), or
            None; when it passes, :class:`trio.TooSlowError` is raised.
        wait_initial, wait_max, wait_jitter, wait_exp_base: tenacity's
            ``wait_exponential_jitter`` parameters, in seconds.
        budget: a :class:`RetryBudget` shared by the callers of one service.
        name: used in events.
        telemetry: where ``resilience.retry.retry`` goes before each retry (key: the
            attempt that failed; measurements ``attempt``, ``sleep`` in seconds);
            ``None``: :func:`~trio_foundation.telemetry.default_telemetry`.

    Raises:
        ValueError: attempts below 1, a non-positive deadline or wait.
        TypeError: ``telemetry`` is not a :class:`~trio_foundation.telemetry.Telemetry`.
    """

    def __init__(
        self,
        *,
        on: type[BaseException]
        | tuple[type[BaseException], ...]
        | Callable[[BaseException], bool] = Exception,
        attempts: int = 3,
        deadline: float | None = None,
        wait_initial: float = 0.1,
        wait_max: float = 5.0,
        wait_jitter: float = 0.1,
        wait_exp_base: float = 2.0,
        budget: RetryBudget | None = None,
        name: str = "retry",
        telemetry: Telemetry | None = None,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be an int >= 1, got {attempts!r}")
        if deadline is not None and not deadline > 0:
            raise ValueError(f"deadline must be > 0, got {deadline}")
        for label, x in (("wait_initial", wait_initial), ("wait_max", wait_max)):
            if not x > 0:
                raise ValueError(f"{label} must be > 0, got {x}")
        if isinstance(on, type) or isinstance(on, tuple):
            types = on

            def predicate(exc: BaseException) -> bool:
                return isinstance(exc, types)

            self._predicate: Callable[[BaseException], bool] = predicate
        else:
            self._predicate = on
        self.attempts: Final = attempts
        self.deadline: Final = deadline
        self.budget: Final = budget
        self.name: Final = name
        self._wait = tenacity.wait_exponential_jitter(
            multiplier=wait_initial, max=wait_max, exp_base=wait_exp_base, jitter=wait_jitter
        )
        self._listeners = _Listeners("retry", name, telemetry)

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` before each retry (``kind="retry"``)."""
        return self._listeners.add(callback)

    async def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)``, retrying per the policy.

        A checkpoint (the call's own). Cancellation stops it at once, between or during
        attempts; ``Cancelled`` is never retried.

        Raises:
            Exception: the last attempt's exception, when attempts run out or it is not
                worth retrying.
            RetryBudgetExhausted: a retry was due but the budget refused it (chained from
                the attempt's exception).
            trio.TooSlowError: the overall deadline passed.
        """
        budget = self.budget
        if budget is not None:
            budget.record_request()
        refused: list[bool] = []

        class _OutOfBudget(tenacity.stop.stop_base):
            def __call__(self, state: tenacity.RetryCallState) -> bool:
                if budget is None or budget.try_spend():
                    return False
                refused.append(True)
                return True

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if self._listeners.wants(RETRY_RETRY):
                exc = state.outcome.exception() if state.outcome else None
                sleep = state.next_action.sleep if state.next_action is not None else 0.0
                self._listeners.emit(
                    RETRY_RETRY,
                    state.attempt_number,
                    repr(exc),
                    trio.current_time(),
                    {"attempt": state.attempt_number, "sleep": sleep},
                )

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_any(tenacity.stop_after_attempt(self.attempts), _OutOfBudget()),
            wait=self._wait,
            retry=tenacity.retry_if_exception(self._predicate),
            sleep=trio.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

        async def run() -> T:
            try:
                return await retrying(fn, *args, **kwargs)
            except Exception as exc:
                if refused:
                    attempts = retrying.statistics.get("attempt_number", 1)
                    raise RetryBudgetExhausted(
                        budget.name if budget else self.name, attempts
                    ) from exc
                raise

        if self.deadline is None:
            return await run()
        with trio.fail_after(self.deadline):
            return await run()

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate an async function so every call is retried per the policy."""

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return await self.call(fn, *args, **kwargs)

        return wrapper
