"""OpenTelemetry exporter (extra ``otel``): metrics as observable instruments, spans."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

from ._events import Event
from ._metrics import Counter, Gauge, Histogram, MetricRegistry, Rate
from ._trace import TraceContext

__all__ = ["OTelSpanHandler", "bind_opentelemetry"]


def _require() -> Any:
    try:
        from opentelemetry import metrics, trace
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the OpenTelemetry exporter needs opentelemetry-sdk:"
            " pip install 'trio-foundation[otel]'"
        ) from exc
    return metrics, trace


def bind_opentelemetry(metrics: MetricRegistry, meter_provider: Any) -> list[Any]:
    """Publish every family of ``metrics`` through an OpenTelemetry meter provider.

    Observed at each collection of the provider's readers: counters as observable
    counters, gauges and rates as observable gauges, and each histogram as three
    observable gauges ``<name>_count``, ``<name>_sum`` and ``<name>_p99`` (plus
    ``_p50``). Families created after this call are not bound (call it again).

    Returns:
        The instruments created (keep them alive as long as they should report).
    """
    otel_metrics, _ = _require()
    meter = meter_provider.get_meter("trio_foundation")
    instruments = []

    def observe(family: Any, read: Any) -> Any:
        def callback(options: Any) -> Iterable[Any]:
            for values, series in family.series():
                yield otel_metrics.Observation(
                    read(series), dict(zip(family.label_names, values, strict=True))
                )

        return callback

    for family in metrics.families():
        if family.kind == "counter":
            instruments.append(
                meter.create_observable_counter(
                    family.name, [observe(family, lambda s: s.value)], description=family.help
                )
            )
        elif family.kind in ("gauge", "rate"):

            def read(series: Gauge | Rate | Counter | Histogram) -> float:
                return series.value if isinstance(series, Gauge) else series.rate()  # type: ignore[union-attr]

            instruments.append(
                meter.create_observable_gauge(
                    family.name, [observe(family, read)], description=family.help
                )
            )
        else:
            for suffix, reader in (
                ("count", lambda s: s.count),
                ("sum", lambda s: s.sum),
                ("p50", lambda s: s.percentile(0.5) if s.count else 0.0),
                ("p99", lambda s: s.percentile(0.99) if s.count else 0.0),
            ):
                instruments.append(
                    meter.create_observable_gauge(
                        f"{family.name}_{suffix}",
                        [observe(family, reader)],
                        description=family.help,
                    )
                )
    return instruments


@final
class OTelSpanHandler:
    """A telemetry handler that turns ``"span.end"`` events into OpenTelemetry spans.

    Attach it: ``telemetry.attach("otel-spans", "span.end", OTelSpanHandler(tracer))``.
    Each exported span keeps our trace id (its parent is a remote span context built from
    our parent span id, or our own span id for a root); OpenTelemetry assigns its own span
    id, and ours is kept in the attribute ``trio_foundation.span_id``.
    """

    def __init__(self, tracer: Any) -> None:
        _, self._trace = _require()
        self._tracer = tracer

    def __call__(self, event: Event) -> None:
        trace = self._trace
        meta = event.metadata
        span: TraceContext = meta["trace"]
        parent_id = span.parent_span_id or span.span_id
        parent = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=span.trace_id,
                span_id=parent_id,
                is_remote=True,
                trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
            )
        )
        otel_span = self._tracer.start_span(
            meta["name"],
            context=trace.set_span_in_context(parent),
            start_time=meta["start"],
            attributes={"trio_foundation.span_id": f"{span.span_id:016x}"},
        )
        if meta.get("error") is not None:
            otel_span.set_status(trace.Status(trace.StatusCode.ERROR, repr(meta["error"])))
        otel_span.end(end_time=meta["end"])
