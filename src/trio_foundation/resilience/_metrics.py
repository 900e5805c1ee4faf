"""Fixed-memory metrics of the resilience services, fed by their telemetry events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, final

from ..telemetry import Event, MetricRegistry, Telemetry, TooManySeriesError
from ._circuit_breaker import STATE_VALUES, CircuitBreaker
from ._events import BREAKER_STATE, EVENTS, check_telemetry

__all__ = ["ResilienceMetrics", "resilience_metrics"]

_DURATIONS: Final = ("duration", "wait")


@final
class ResilienceMetrics:
    """The handler :func:`resilience_metrics` attaches; its families live in ``metrics``.

    Families (every series is bounded by the registry's ``max_series``; a new label
    combination beyond it is not recorded and is counted in :attr:`refused`):

    * ``resilience_events_total{service, name, event}`` (counter): every event.
    * ``circuit_breaker_state{name}`` (gauge): 0 closed, 1 half-open, 2 open.
    * ``resilience_wait_seconds{service, name, event}`` (histogram): the ``duration``
      or ``wait`` measurement of an event that has one (limiter waits, pool checkouts,
      cache loads).

    Attributes:
        refused: events not recorded because the registry was full.
    """

    def __init__(self, metrics: MetricRegistry) -> None:
        if not isinstance(metrics, MetricRegistry):
            raise TypeError(f"metrics must be a MetricRegistry, got {metrics!r}")
        self._events = metrics.counter(
            "resilience_events_total", "resilience service events", ["service", "name", "event"]
        )
        self._state = metrics.gauge(
            "circuit_breaker_state", "0 closed, 1 half-open, 2 open", ["name"]
        )
        self._waits = metrics.histogram(
            "resilience_wait_seconds",
            "waits and durations of resilience events",
            ["service", "name", "event"],
        )
        self.refused = 0

    def watch(self, breaker: CircuitBreaker) -> None:
        """Set ``circuit_breaker_state{name}`` to ``breaker``'s state now (before any change).

        Raises:
            TooManySeriesError: the registry is full.
        """
        self._state.labels(breaker.name).set(STATE_VALUES[breaker.state])

    def __call__(self, event: Event) -> None:
        meta = event.metadata
        service, name = str(meta.get("service", "")), str(meta.get("name", ""))
        kind = event.name.rsplit(".", 1)[1]
        try:
            self._events.labels(service, name, kind).inc()
            if event.name == BREAKER_STATE:
                self._state.labels(name).set(event.measurements["state"])
            for field in _DURATIONS:
                value = event.measurements.get(field)
                if value is not None:
                    self._waits.labels(service, name, kind).observe(max(0.0, value))
        except TooManySeriesError:
            self.refused += 1


@contextmanager
def resilience_metrics(
    metrics: MetricRegistry,
    telemetry: Telemetry | None = None,
    *,
    handler_id: str = "resilience-metrics",
) -> Iterator[ResilienceMetrics]:
    """Keep ``metrics`` up to date from every resilience event while the block runs.

    Attaches a :class:`ResilienceMetrics` handler to every ``resilience.*`` event of
    ``telemetry`` (default: :func:`~trio_foundation.telemetry.default_telemetry`) and
    detaches it when the block ends, however it ends.

    Raises:
        TypeError: ``metrics`` is not a :class:`MetricRegistry`, or ``telemetry`` is not
            a :class:`Telemetry`.
        ValueError: ``handler_id`` is attached already.
    """
    handler = ResilienceMetrics(metrics)
    with check_telemetry(telemetry).attached(handler_id, EVENTS, handler):
        yield handler
