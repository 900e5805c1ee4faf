"""Exporters against the real libraries: Prometheus scraped over HTTP, OpenTelemetry in memory."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import trio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from trio_foundation.telemetry import (
    MetricRegistry,
    OTelSpanHandler,
    Telemetry,
    bind_opentelemetry,
    serve_metrics,
    start_span,
)


def _metrics() -> MetricRegistry:
    metrics = MetricRegistry()
    requests = metrics.counter("requests_total", "requests served", labels=["code"])
    requests.labels("200").inc(3)
    requests.labels("500").inc()
    metrics.gauge("queue_depth", "messages queued").value.set(7)
    latency = metrics.histogram("latency_seconds", "request latency").value
    for value in (0.001, 0.002, 0.004, 0.5):
        latency.observe(value)
    return metrics


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_prometheus_scrape_over_http() -> None:
    metrics = _metrics()
    healthy = [True]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_metrics(
                metrics, "127.0.0.1", 0, health=lambda: healthy[0], task_status=task_status
            )
        )
        status, text = await trio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        families = {f.name: f for f in text_string_to_metric_families(text)}
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families.values()
            for s in f.samples
        }
        assert samples[("requests_total", (("code", "200"),))] == 3
        assert samples[("requests_total", (("code", "500"),))] == 1
        assert samples[("queue_depth", ())] == 7
        assert samples[("latency_seconds_count", ())] == 4
        assert samples[("latency_seconds_sum", ())] == pytest.approx(0.507)
        assert samples[("latency_seconds_bucket", (("le", "+Inf"),))] == 4
        buckets = sorted(
            (float(s.labels["le"]), s.value)
            for s in families["latency_seconds"].samples
            if s.name == "latency_seconds_bucket"
        )
        assert [count for bound, count in buckets if bound <= 0.0045][-1] == 3
        assert (await trio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/health"))[0] == 200
        healthy[0] = False
        assert (await trio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/health"))[0] == 503
        assert (await trio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/nope"))[0] == 404
        nursery.cancel_scope.cancel()


def test_opentelemetry_metrics_in_memory() -> None:
    metrics = _metrics()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = bind_opentelemetry(metrics, provider)
    assert instruments
    data = reader.get_metrics_data()
    points = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points[(metric.name, tuple(sorted(point.attributes.items())))] = point.value
    assert points[("requests_total", (("code", "200"),))] == 3
    assert points[("queue_depth", ())] == 7
    assert points[("latency_seconds_count", ())] == 4
    assert points[("latency_seconds_p99", ())] == pytest.approx(0.5, rel=1 / 16)
    provider.shutdown()


def test_opentelemetry_spans_keep_our_trace_id() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry()
    telemetry.attach("otel", "span.end", OTelSpanHandler(provider.get_tracer("test")))
    with start_span("agent.step", telemetry=telemetry) as outer:
        with start_span("lock.acquire", telemetry=telemetry) as inner:
            pass
    with pytest.raises(ZeroDivisionError), start_span("fails", telemetry=telemetry):
        1 / 0  # noqa: B018
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"agent.step", "lock.acquire", "fails"}
    assert spans["lock.acquire"].context.trace_id == outer.trace_id
    assert spans["lock.acquire"].parent.span_id == outer.span_id
    assert spans["lock.acquire"].attributes["trio_foundation.span_id"] == f"{inner.span_id:016x}"
    assert spans["agent.step"].context.trace_id == outer.trace_id
    assert not spans["fails"].status.is_ok
    provider.shutdown()


async def test_a_raising_health_check_answers_503_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def health() -> bool:
        raise RuntimeError("health check bug")

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: serve_metrics(
                MetricRegistry(), "127.0.0.1", 0, health=health, task_status=task_status
            )
        )
        assert (await trio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/health"))[0] == 503
        assert (await trio.to_thread.run_sync(_get, f"http://127.0.0.1:{port}/metrics"))[0] == 200
        nursery.cancel_scope.cancel()
    assert "health check raised" in caplog.text
