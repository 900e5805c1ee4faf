"""Trace and span ids carried through tasks and message envelopes.

A :class:`TraceContext` names a span (W3C trace-context sizes: a 128-bit trace id, a 64-bit
span id) and its parent. The current one lives in a :class:`contextvars.ContextVar`, so it
follows a task into the tasks it starts (trio copies the context into child tasks) and is
captured into every message envelope sent while it is set; the receiver continues the trace
with :func:`start_span` ``(..., parent=envelope.trace)``.

Ids come from an injectable ``random.Random`` (by default one seeded from the OS), so a
simulation can make them deterministic.
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, final

import attrs

if TYPE_CHECKING:
    from ._events import Telemetry

__all__ = ["TraceContext", "current_trace", "set_id_source", "start_span"]

_current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar(
    "trio_foundation_trace", default=None
)
_ids = random.Random()


def set_id_source(source: random.Random) -> None:
    """Draw trace and span ids from ``source`` from now on (e.g. a seeded generator)."""
    global _ids
    _ids = source


@final
@attrs.frozen
class TraceContext:
    """One span of a trace.

    Attributes:
        trace_id: 128-bit id shared by every span of the trace (never 0).
        span_id: 64-bit id of this span (never 0).
        parent_span_id: the parent span's id, or ``None`` for a root span.
    """

    trace_id: int
    span_id: int
    parent_span_id: int | None = None

    @classmethod
    def new_root(cls) -> TraceContext:
        """A root span of a new trace."""
        return cls(_ids.getrandbits(128) or 1, _ids.getrandbits(64) or 1)

    def child(self) -> TraceContext:
        """A new span of the same trace whose parent is this span."""
        return TraceContext(self.trace_id, _ids.getrandbits(64) or 1, self.span_id)

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` header value for this span."""
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-01"


def current_trace() -> TraceContext | None:
    """The span current in this task (context), or ``None``."""
    return _current.get()


@contextmanager
def start_span(
    name: str,
    *,
    parent: TraceContext | None = None,
    telemetry: Telemetry | None = None,
) -> Iterator[TraceContext]:
    """Make a new span current for the ``with`` block.

    Args:
        name: the span's name (e.g. ``"lock.acquire"``).
        parent: the parent span; by default the current one (a root span if none).
        telemetry: a :class:`~trio_foundation.telemetry.Telemetry`; if given, the event
            ``"span.end"`` is emitted when the block ends, with measurements
            ``{"duration": seconds}`` and metadata ``{"name", "trace", "start", "end",
            "error"}`` (``start``/``end`` in ``time.time_ns()``).

    Yields:
        The new span's context.
    """
    base = parent if parent is not None else _current.get()
    span = base.child() if base is not None else TraceContext.new_root()
    token = _current.set(span)
    start = time.time_ns()
    error: BaseException | None = None
    try:
        yield span
    except BaseException as exc:
        error = exc
        raise
    finally:
        _current.reset(token)
        if telemetry is not None:
            end = time.time_ns()
            telemetry.emit(
                "span.end",
                {"duration": (end - start) / 1e9},
                {"name": name, "trace": span, "start": start, "end": end, "error": error},
            )
