"""Telemetry: events with isolated handlers, fixed-memory metrics, tracing, exporters.

* :class:`Telemetry`: ``emit(event, measurements, metadata)`` costs one dict lookup when
  nobody listens; sync handlers are isolated (logged, detached after ``max_failures``;
  nested emits deferred, never re-entrant); async handlers run in their own task behind a
  bounded queue, so no handler can block or deadlock the emitter; scope-bound attachment.
  :func:`default_telemetry` is the process-wide instance the library's components emit
  through unless given their own (``telemetry=``).
* :class:`MetricRegistry` with :class:`Counter`, :class:`Gauge`, :class:`Histogram`
  (log-linear buckets, percentiles) and :class:`Rate` (windowed), all of fixed memory.
* :class:`TrioInstrument`: task counts, scheduler batches, checkpoint-free stretches.
* :class:`TraceContext`, :func:`start_span`, :func:`current_trace`: trace/span ids that
  message envelopes carry.
* Exporters (optional extras): :class:`PrometheusCollector` and :func:`serve_metrics`
  (``prometheus``), :func:`bind_opentelemetry` and :class:`OTelSpanHandler` (``otel``).

See ``docs/telemetry.md``.
"""

from __future__ import annotations

from ._events import (
    Event,
    Handler,
    HandlerStatistics,
    Telemetry,
    TelemetryStatistics,
    default_telemetry,
)
from ._instrument import TrioInstrument
from ._metrics import (
    Counter,
    Gauge,
    Histogram,
    MetricFamily,
    MetricRegistry,
    Rate,
    TooManySeriesError,
)
from ._otel import OTelSpanHandler, bind_opentelemetry
from ._prometheus import PrometheusCollector, serve_metrics
from ._trace import TraceContext, current_trace, set_id_source, start_span

__all__ = [
    "Counter",
    "Event",
    "Gauge",
    "Handler",
    "HandlerStatistics",
    "Histogram",
    "MetricFamily",
    "MetricRegistry",
    "OTelSpanHandler",
    "PrometheusCollector",
    "Rate",
    "Telemetry",
    "TelemetryStatistics",
    "TooManySeriesError",
    "TraceContext",
    "TrioInstrument",
    "bind_opentelemetry",
    "current_trace",
    "default_telemetry",
    "serve_metrics",
    "set_id_source",
    "start_span",
]
