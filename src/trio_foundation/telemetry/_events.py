"""Events and handlers: emitting costs almost nothing when nobody listens, and a handler
can neither break, block nor deadlock the component that emits.

Theory of operation. Handlers are attached to exact event names; the table maps a name
to a tuple of handlers, so :meth:`Telemetry.emit` with nobody listening is one dict lookup.

*Synchronous* handlers run inline, one after the other, each inside its own ``try``: an
exception is logged (logger ``trio_foundation.telemetry``) and counted, and a handler that
has failed ``max_failures`` times in a row is detached. A handler that takes longer than
``slow_handler`` seconds counts as a failure too, since a sync handler must not block.
If a handler emits (directly, or by calling back into the component that emitted), the
nested event is *deferred*: queued (bounded by ``max_pending``; overflow is dropped and
counted) and delivered after the current event, by the outermost ``emit`` — so a handler
never re-enters a half-finished emit and the call stack never grows with the chain. One
outermost ``emit`` delivers at most ``max_pending`` deferred events; the rest of a chain
that keeps emitting is dropped and counted, so ``emit`` always returns.

*Asynchronous* handlers (:meth:`Telemetry.attach_async`) run in their own task, fed by a
bounded ``drop_newest`` mailbox: the emitter only does ``send_nowait``, so even a handler
that waits forever, or calls back into the emitting component and waits for it, cannot
hold the emitter up; what it cannot take in time is dropped and counted.

Scope-bound handlers (``with telemetry.attached(...)``, ``async with
telemetry.attach_async(...)``) are detached when their block ends, however it ends, so no
handler outlives its owner.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from types import MappingProxyType
from typing import Any, NamedTuple, final

import attrs
import trio

from ..messaging._mailbox import Mailbox

__all__ = [
    "Event",
    "Handler",
    "HandlerStatistics",
    "Telemetry",
    "TelemetryStatistics",
    "default_telemetry",
]

logger = logging.getLogger("trio_foundation.telemetry")

_EMPTY: Mapping[str, Any] = {}


class Event(NamedTuple):
    """One emitted event.

    Attributes:
        name: dotted event name, e.g. ``"registry.register"``.
        measurements: numbers (durations in seconds, counts, sizes in bytes).
        metadata: context (ids, keys, the trace context, ...).
    """

    name: str
    measurements: Mapping[str, float]
    metadata: Mapping[str, Any]


Handler = Callable[[Event], None]


@final
@attrs.define(eq=False)
class _Attached:
    handler_id: str
    events: tuple[str, ...]
    handler: Handler
    max_failures: int
    calls: int = 0
    failures: int = 0
    consecutive: int = 0


@final
@attrs.frozen
class HandlerStatistics:
    """Counters of one attached handler.

    Attributes:
        handler_id: its id.
        events: the event names it is attached to.
        calls: events delivered to it.
        failures: calls that raised or took longer than ``slow_handler``.
    """

    handler_id: str
    events: tuple[str, ...]
    calls: int
    failures: int


@final
@attrs.frozen
class TelemetryStatistics:
    """A snapshot of a :class:`Telemetry`.

    Attributes:
        handlers: attached handlers.
        emitted: events emitted that had at least one handler.
        deferred: events emitted from inside a handler, delivered after the current one.
        dropped: deferred events (or async-handler events) dropped because a bound was hit.
        detached: handlers detached for failing ``max_failures`` times in a row.
    """

    handlers: int
    emitted: int
    deferred: int
    dropped: int
    detached: int


@final
class Telemetry:
    """An event bus for measurements, with isolated handlers.

    Args:
        max_handlers: the most attached handlers (> 0).
        max_failures: consecutive failures after which a handler is detached (> 0);
            a handler may override it when attached.
        max_pending: the most events deferred while handlers run (> 0).
        slow_handler: seconds a sync handler may take before the call counts as a
            failure (> 0), or ``None`` for no limit.

    Raises:
        ValueError: a bound is not positive.
    """

    def __init__(
        self,
        *,
        max_handlers: int = 1000,
        max_failures: int = 3,
        max_pending: int = 10_000,
        slow_handler: float | None = 0.01,
    ) -> None:
        for name, bound in (
            ("max_handlers", max_handlers),
            ("max_failures", max_failures),
            ("max_pending", max_pending),
        ):
            if isinstance(bound, bool) or not isinstance(bound, int) or bound <= 0:
                raise ValueError(f"{name} must be a positive int, got {bound!r}")
        if slow_handler is not None and not slow_handler > 0:
            raise ValueError(f"slow_handler must be > 0 seconds or None, got {slow_handler!r}")
        self._table: dict[str, tuple[_Attached, ...]] = {}
        #: A live, read-only view of the event names that have handlers (their keys);
        #: ``name in telemetry.listened`` is the cheapest form of :meth:`listening`,
        #: for a component's hot path to keep a reference to.
        self.listened: Mapping[str, object] = MappingProxyType(self._table)
        self._by_id: dict[str, _Attached] = {}
        self._max_handlers = max_handlers
        self._max_failures = max_failures
        self._max_pending = max_pending
        self._slow = slow_handler
        self._dispatching = False
        self._deferred: deque[Event] = deque()
        self._emitted = 0
        self._deferred_count = 0
        self._dropped = 0
        self._detached = 0

    # ------------------------------------------------------------------- emitting

    def listening(self, event: str) -> bool:
        """Whether a handler is attached to ``event`` (one dict lookup).

        Components call it before building an event's measurements and metadata, so an
        event nobody listens to costs nothing more than this check.
        """
        return event in self._table

    def emit(
        self,
        event: str,
        measurements: Mapping[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Deliver an event to the handlers attached to its name. Never raises, never waits.

        With no handler attached to ``event`` this is one dict lookup (see
        ``benchmarks/bench_telemetry.py``). Called from inside a handler, the event is
        deferred until the current one has been delivered.
        """
        attached = self._table.get(event)
        if not attached:
            return
        self._emitted += 1
        item = Event(event, measurements or _EMPTY, metadata or _EMPTY)
        if self._dispatching:
            if len(self._deferred) >= self._max_pending:
                self._dropped += 1
            else:
                self._deferred_count += 1
                self._deferred.append(item)
            return
        self._dispatching = True
        try:
            self._deliver(attached, item)
            deferred = self._deferred
            budget = self._max_pending
            while deferred:
                if budget == 0:  # a chain of handlers emitting forever: cut it here
                    self._dropped += len(deferred)
                    deferred.clear()
                    break
                budget -= 1
                nxt = deferred.popleft()
                handlers = self._table.get(nxt.name)
                if handlers:
                    self._deliver(handlers, nxt)
        finally:
            self._dispatching = False

    def _deliver(self, attached: tuple[_Attached, ...], event: Event) -> None:
        slow = self._slow
        for entry in attached:
            if entry.handler_id not in self._by_id:
                continue  # detached by an earlier handler of this event
            entry.calls += 1
            start = time.perf_counter() if slow is not None else 0.0
            try:
                entry.handler(event)
            except Exception:
                logger.exception(
                    "telemetry handler %r raised on event %r", entry.handler_id, event.name
                )
                self._failed(entry)
                continue
            if slow is not None and time.perf_counter() - start > slow:
                logger.warning(
                    "telemetry handler %r took longer than %s s on event %r",
                    entry.handler_id,
                    slow,
                    event.name,
                )
                self._failed(entry)
            else:
                entry.consecutive = 0

    def _failed(self, entry: _Attached) -> None:
        entry.failures += 1
        entry.consecutive += 1
        if entry.consecutive >= entry.max_failures and self.detach(entry.handler_id):
            self._detached += 1
            logger.error(
                "telemetry handler %r detached after %d consecutive failures",
                entry.handler_id,
                entry.consecutive,
            )

    # ------------------------------------------------------------------- handlers

    def attach(
        self,
        handler_id: str,
        events: str | Iterable[str],
        handler: Handler,
        *,
        max_failures: int | None = None,
    ) -> None:
        """Attach a synchronous handler; it stays until :meth:`detach` (prefer :meth:`attached`).

        Args:
            handler_id: a unique id for the handler.
            events: the event name(s) it receives.
            handler: ``handler(event) -> None``; must not block.
            max_failures: overrides the telemetry's ``max_failures`` for this handler.

        Raises:
            ValueError: ``handler_id`` is attached already, no event is named, or
                ``max_failures`` is not positive.
            TypeError: ``handler`` is not callable or an event name is not a str.
            RuntimeError: ``max_handlers`` handlers are attached.
        """
        names = (events,) if isinstance(events, str) else tuple(dict.fromkeys(events))
        if not names:
            raise ValueError("attach needs at least one event name")
        for name in names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"event names are non-empty str, got {name!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        if handler_id in self._by_id:
            raise ValueError(f"a handler with id {handler_id!r} is already attached")
        limit = self._max_failures if max_failures is None else max_failures
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"max_failures must be a positive int, got {limit!r}")
        if len(self._by_id) >= self._max_handlers:
            raise RuntimeError(f"too many handlers: max_handlers={self._max_handlers}")
        entry = _Attached(handler_id, names, handler, limit)
        self._by_id[handler_id] = entry
        for name in names:
            self._table[name] = (*self._table.get(name, ()), entry)

    def detach(self, handler_id: str) -> bool:
        """Detach a handler. Returns whether it was attached."""
        entry = self._by_id.pop(handler_id, None)
        if entry is None:
            return False
        for name in entry.events:
            rest = tuple(e for e in self._table[name] if e is not entry)
            if rest:
                self._table[name] = rest
            else:
                del self._table[name]
        return True

    @contextmanager
    def attached(
        self,
        handler_id: str,
        events: str | Iterable[str],
        handler: Handler,
        *,
        max_failures: int | None = None,
    ) -> Iterator[None]:
        """Attach a synchronous handler for the duration of a ``with`` block.

        Arguments and errors as :meth:`attach`.
        """
        self.attach(handler_id, events, handler, max_failures=max_failures)
        try:
            yield
        finally:
            self.detach(handler_id)

    @asynccontextmanager
    async def attach_async(
        self,
        handler_id: str,
        events: str | Iterable[str],
        handler: Callable[[Event], Awaitable[None]],
        *,
        capacity: int = 1000,
        max_failures: int | None = None,
    ) -> AsyncIterator[Mailbox[Event]]:
        """Run an async handler in its own task for the duration of an ``async with`` block.

        The emitter puts each event in a bounded ``drop_newest`` mailbox (the drops are
        counted in the mailbox's statistics) and a task started in a nursery owned by
        this block awaits ``handler(event)`` for each. An exception is logged and counted;
        after ``max_failures`` in a row the handler is detached (the block continues).

        Entering is a checkpoint (nothing attached if cancelled there). Leaving detaches
        the handler and cancels its task; events still queued are discarded.

        Yields:
            The handler's mailbox (for its statistics).

        Raises:
            As :meth:`attach`; ``ValueError`` for a capacity that is not positive.
        """
        mailbox: Mailbox[Event] = Mailbox(capacity, policy="drop_newest", name=handler_id)
        limit = self._max_failures if max_failures is None else max_failures

        def enqueue(event: Event) -> None:
            mailbox.send_nowait(event)

        await trio.lowlevel.checkpoint_if_cancelled()
        self.attach(handler_id, events, enqueue, max_failures=limit)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._run_async_handler, handler_id, mailbox, handler, limit)
                try:
                    yield mailbox
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self.detach(handler_id)
            mailbox.close()

    async def _run_async_handler(
        self,
        handler_id: str,
        mailbox: Mailbox[Event],
        handler: Callable[[Event], Awaitable[None]],
        max_failures: int,
    ) -> None:
        consecutive = 0
        async for event in mailbox:
            try:
                await handler(event)
            except Exception:
                logger.exception(
                    "async telemetry handler %r raised on event %r", handler_id, event.name
                )
                consecutive += 1
                if consecutive >= max_failures:
                    if self.detach(handler_id):
                        self._detached += 1
                    logger.error(
                        "telemetry handler %r detached after %d consecutive failures",
                        handler_id,
                        consecutive,
                    )
                    return
            else:
                consecutive = 0

    # --------------------------------------------------------------------- queries

    def handlers(self) -> tuple[HandlerStatistics, ...]:
        """Counters of every attached handler, in attach order."""
        return tuple(
            HandlerStatistics(e.handler_id, e.events, e.calls, e.failures)
            for e in self._by_id.values()
        )

    def statistics(self) -> TelemetryStatistics:
        """A frozen snapshot of the telemetry's counters."""
        return TelemetryStatistics(
            handlers=len(self._by_id),
            emitted=self._emitted,
            deferred=self._deferred_count,
            dropped=self._dropped,
            detached=self._detached,
        )


_DEFAULT = Telemetry()


def default_telemetry() -> Telemetry:
    """The process-wide :class:`Telemetry` the library's components emit through.

    Supervisors, resilience services and the other components take a ``telemetry=``
    argument; when it is ``None`` they use this instance, so attaching a handler here
    observes every component that was not given its own.

    Like every :class:`Telemetry`, it is meant for one thread at a time: components that
    run in trio runs of several threads at once should each be given their own.
    """
    return _DEFAULT
