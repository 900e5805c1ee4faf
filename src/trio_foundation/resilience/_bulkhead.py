"""Bulkhead: at most ``max_concurrent`` calls inside, ``max_queued`` waiting, others refused.

A :class:`trio.Semaphore` holds the slots; its wait queue is FIFO. A call that finds
every slot taken and ``max_queued`` tasks already waiting gets :class:`Rejected` at once
(no wait), so a burst can never build an unbounded queue.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final, ParamSpec, TypeVar, final

import attrs
import trio

from ..telemetry import Telemetry
from ._errors import Rejected
from ._events import BULKHEAD_REJECTED, Listener, _Listeners

__all__ = ["Bulkhead", "BulkheadStatistics"]

P = ParamSpec("P")
T = TypeVar("T")


@final
@attrs.frozen
class BulkheadStatistics:
    """A snapshot of a :class:`Bulkhead`.

    Attributes:
        active: calls inside now (<= ``max_concurrent``).
        queued: calls waiting now (<= ``max_queued``).
        rejected: calls refused so far.
    """

    active: int
    queued: int
    rejected: int


@final
class Bulkhead:
    """Limit concurrent calls, with a bounded FIFO queue and immediate rejection beyond.

    Args:
        max_concurrent: calls allowed inside at once (int >= 1).
        max_queued: calls allowed to wait (int >= 0; 0 means reject whenever full).
        name: used in errors and events.
        telemetry: where ``resilience.bulkhead.rejected`` goes (measurements ``running``,
            ``queued``); ``None``: :func:`~trio_foundation.telemetry.default_telemetry`.

    Raises:
        ValueError: ``max_concurrent`` below 1 or ``max_queued`` below 0.
        TypeError: ``telemetry`` is not a :class:`~trio_foundation.telemetry.Telemetry`.
    """

    def __init__(
        self,
        *,
        max_concurrent: int,
        max_queued: int = 0,
        name: str = "bulkhead",
        telemetry: Telemetry | None = None,
    ) -> None:
        for label, n, low in (("max_concurrent", max_concurrent, 1), ("max_queued", max_queued, 0)):
            if isinstance(n, bool) or not isinstance(n, int):
                raise TypeError(f"{label} must be an int, got {type(n).__name__}")
            if n < low:
                raise ValueError(f"{label} must be >= {low}, got {n}")
        self.max_concurrent: Final = max_concurrent
        self.max_queued: Final = max_queued
        self.name: Final = name
        self._sem = trio.Semaphore(max_concurrent)
        self._rejected = 0
        self._listeners = _Listeners("bulkhead", name, telemetry)

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(event)`` on every rejection (``kind="rejected"``)."""
        return self._listeners.add(callback)

    def statistics(self) -> BulkheadStatistics:
        """A frozen snapshot."""
        waiting = self._sem.statistics().tasks_waiting
        return BulkheadStatistics(
            active=self.max_concurrent - self._sem.value,
            queued=waiting,
            rejected=self._rejected,
        )

    async def __aenter__(self) -> None:
        """Enter, waiting in FIFO order if every slot is taken. Always a checkpoint.

        If cancelled while queued, the task leaves the queue and holds no slot.

        Raises:
            Rejected: every slot is taken and ``max_queued`` calls are waiting.
        """
        sem = self._sem
        if not sem.value:
            waiting = sem.statistics().tasks_waiting
            if waiting >= self.max_queued:
                self._rejected += 1
                reason = f"{self.max_concurrent} running and {waiting} queued (the maximum)"
                if self._listeners.wants(BULKHEAD_REJECTED):
                    self._listeners.emit(
                        BULKHEAD_REJECTED,
                        None,
                        reason,
                        trio.current_time(),
                        {"running": self.max_concurrent, "queued": waiting},
                    )
                await trio.lowlevel.checkpoint()
                raise Rejected(f"bulkhead {self.name!r}", reason)
        await sem.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Leave and hand the slot to the first queued call. Not a checkpoint."""
        self._sem.release()

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        """Decorate an async function so every call goes through the bulkhead."""

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            async with self:
                return await fn(*args, **kwargs)

        return wrapper
