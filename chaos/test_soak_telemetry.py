"""Soak: metrics and telemetry under rotating label values, handlers and events.

Metric operations: counter increments, gauge sets, histogram observations and rate marks
over 200 rotating label values (the registry's ``max_series`` is 1,000; a label beyond it
would be refused, never stored). Telemetry operations: emits to rotating event names,
handlers attached and detached (some raising, so they are detached after 3 failures),
scope-bound handlers, spans. Sampling starts after 10,000 warm-up operations; the test
asserts the growth the memory slope projects stays under ``soak_memory.GROWTH_LIMIT``.

CI runs 20,000 operations; the 1,000,000-operation soak is ``pytest -m slow
chaos/test_soak_telemetry.py -s`` (figures in docs/telemetry.md).
"""

from __future__ import annotations

import logging
import random

import pytest
from soak_memory import GROWTH_LIMIT, MemoryTrace, isolated, traced

from trio_foundation.telemetry import Event, MetricRegistry, Telemetry, start_span

WARMUP = 10_000


def _soak(ops: int, trace: MemoryTrace, seed: int) -> None:
    rng = random.Random(seed)
    metrics = MetricRegistry(max_series=1000)
    telemetry = Telemetry(max_failures=3, slow_handler=None)
    counters = metrics.counter("requests_total", labels=["route"])
    gauges = metrics.gauge("depth", labels=["route"])
    histograms = metrics.histogram("latency_seconds", labels=["route"])
    now = [0.0]
    rates = metrics.rate("arrivals", labels=["route"], window=10, slots=10, clock=lambda: now[0])
    attached: list[str] = []
    step = max(1, ops // 40)

    def failing(event: Event) -> None:
        raise RuntimeError("soak handler failure")

    for i in range(-WARMUP, ops):
        route = str(rng.randrange(200))
        op = rng.randrange(9)
        now[0] += 0.01
        if op == 0:
            counters.labels(route).inc()
        elif op == 1:
            gauges.labels(route).set(i)
        elif op == 2:
            histograms.labels(route).observe(rng.expovariate(1000))
        elif op == 3:
            rates.labels(route).mark()
        elif op == 4:
            telemetry.emit(f"e{rng.randrange(20)}", {"v": 1.0}, {"route": route})
        elif op == 5 and len(attached) < 50:
            handler_id = f"h{i}"
            handler = failing if rng.random() < 0.3 else (lambda event: None)
            telemetry.attach(handler_id, [f"e{rng.randrange(20)}"], handler)
            attached.append(handler_id)
        elif op == 6 and attached:
            telemetry.detach(attached.pop(rng.randrange(len(attached))))
        elif op == 7:
            with telemetry.attached(f"scoped{i}", "e0", lambda event: None):
                telemetry.emit("e0")
        else:
            with start_span("soak", telemetry=telemetry):
                pass
        if i >= 0 and i % step == 0:
            trace.sample(i)
    assert metrics.series_count <= 1000
    assert telemetry.statistics().handlers <= 50
    trace.sample(ops)


def _run(ops: int) -> MemoryTrace:
    logging.getLogger("trio_foundation.telemetry").disabled = True
    try:
        with traced() as trace:
            _soak(ops, trace, random.randrange(2**32))
    finally:
        logging.getLogger("trio_foundation.telemetry").disabled = False
    return trace


def test_telemetry_soak_short() -> None:
    trace = isolated(__file__, "_run", 20_000, timeout=240)
    print(trace.report("metrics+telemetry"))
    assert trace.projected_growth() < GROWTH_LIMIT, trace.report("metrics+telemetry")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_telemetry_soak_million() -> None:
    trace = isolated(__file__, "_run", 1_000_000, timeout=3500)
    print(trace.report("metrics+telemetry"))
    assert trace.projected_growth() < GROWTH_LIMIT, trace.report("metrics+telemetry")
