"""Prometheus exporter (extra ``prometheus``): a collector and a trio HTTP endpoint."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any, final

import trio

from ._metrics import Counter, Gauge, Histogram, MetricRegistry, Rate

__all__ = ["PrometheusCollector", "serve_metrics"]

logger = logging.getLogger("trio_foundation.telemetry")


def _require() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Prometheus exporter needs prometheus-client:"
            " pip install 'trio-foundation[prometheus]'"
        ) from exc
    return prometheus_client


@final
class PrometheusCollector:
    """A ``prometheus_client`` collector that reads a :class:`MetricRegistry` at scrape time.

    Counters become counters, gauges gauges, rates gauges (events per second over their
    window), histograms histograms with a bucket at every power-of-two boundary.

    Register it: ``prometheus_client.CollectorRegistry().register(PrometheusCollector(m))``.
    """

    def __init__(self, metrics: MetricRegistry) -> None:
        self._metrics = metrics
        self._pc = _require()

    def collect(self) -> Iterator[Any]:
        core = self._pc.core
        for family in self._metrics.families():
            labels = list(family.label_names)
            if family.kind == "counter":
                out = core.CounterMetricFamily(family.name, family.help, labels=labels)
                for values, series in family.series():
                    assert isinstance(series, Counter)
                    out.add_metric(list(values), series.value)
            elif family.kind in ("gauge", "rate"):
                out = core.GaugeMetricFamily(family.name, family.help, labels=labels)
                for values, series in family.series():
                    assert isinstance(series, Gauge | Rate)
                    value = series.value if isinstance(series, Gauge) else series.rate()
                    out.add_metric(list(values), value)
            else:
                out = core.HistogramMetricFamily(family.name, family.help, labels=labels)
                for values, series in family.series():
                    assert isinstance(series, Histogram)
                    buckets = [
                        ("+Inf" if math.isinf(bound) else repr(bound), count)
                        for bound, count in series.cumulative()
                    ]
                    out.add_metric(list(values), buckets, sum_value=series.sum)
            yield out

    def describe(self) -> list[Any]:
        return []


async def _answer(stream: trio.abc.Stream, registry: Any, health: Any) -> None:
    pc = _require()
    with trio.move_on_after(10):
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 8192:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            request += chunk
        line = request.split(b"\r\n", 1)[0].decode("latin-1").split()
        path = line[1] if len(line) >= 2 else ""
        if len(line) < 2 or line[0] != "GET":
            status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
        elif path.split("?")[0] == "/metrics":
            try:
                body = pc.generate_latest(registry)
            except Exception:
                logger.exception("collecting metrics for a scrape failed")
                status, ctype, body = "500 Internal Server Error", "text/plain", b"error\n"
            else:
                status, ctype = "200 OK", pc.CONTENT_TYPE_LATEST
        elif path == "/health":
            try:
                ok = bool(health()) if health is not None else True
            except Exception:
                logger.exception("the health check raised; answering 503")
                ok = False
            status = "200 OK" if ok else "503 Service Unavailable"
            ctype, body = "text/plain", b"ok\n" if ok else b"unhealthy\n"
        else:
            status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
        head = (
            f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        await stream.send_all(head.encode("latin-1") + body)
    await stream.aclose()


async def serve_metrics(
    metrics: MetricRegistry,
    host: str,
    port: int,
    *,
    health: Any = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` (Prometheus text format) and ``GET /health`` over HTTP.

    Runs until cancelled; start it with ``port = await nursery.start(serve_metrics, m,
    "127.0.0.1", 0)``, which reports the bound port (useful with ``port=0``). Each
    connection is answered in its own task and closed; a client gets 10 s to send its
    request.

    Args:
        metrics: what to export.
        host: address to bind (``"127.0.0.1"`` for local scrapes).
        port: TCP port, or 0 for a free one.
        health: a callable returning whether the process is healthy (``/health``
            answers 200 or 503; a check that raises is logged and answers 503);
            ``None`` means always healthy.
    """
    pc = _require()
    registry = pc.CollectorRegistry(auto_describe=False)
    registry.register(PrometheusCollector(metrics))
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]

    async def handler(stream: trio.SocketStream) -> None:
        try:
            await _answer(stream, registry, health)
        except trio.BrokenResourceError:
            pass

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(bound)
