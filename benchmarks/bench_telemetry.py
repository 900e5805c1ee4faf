"""Benchmarks: the cost of ``Telemetry.emit`` and of the metrics, in one run.

    python benchmarks/bench_telemetry.py [--quick]

* emit with no handler attached to the event (other events have handlers): the figure
  the issue bounds at 1 us;
* emit with one synchronous handler (a no-op function), and with one async handler
  (``attach_async``: the emitter's share only, the ``send_nowait`` into its queue);
* a bare Python call of a no-op function, for scale;
* ``Counter.inc``, ``Histogram.observe`` and ``Rate.mark``.

1,000,000 calls (``--quick``: 100,000), best of 5, garbage collector disabled while timing.
Goal (issue 12): emit with no handler <= 1 us.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import trio

from trio_foundation.telemetry import Event, MetricRegistry, Telemetry


def per_call(fn: Callable[[int], None], n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            fn(n)
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return min(times) / n * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 calls")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    repeat = 5
    telemetry = Telemetry(slow_handler=None)
    telemetry.attach("other", "some.other.event", lambda e: None)
    measurements = {"duration": 0.001}

    def noop(event: Event) -> None:
        return None

    def bare(count: int) -> None:
        for _ in range(count):
            noop(None)  # type: ignore[arg-type]

    def emit_none(count: int) -> None:
        emit = telemetry.emit
        for _ in range(count):
            emit("registry.lookup", measurements)

    def emit_one(count: int) -> None:
        emit = telemetry.emit
        for _ in range(count):
            emit("registry.register", measurements)

    results = {"bare call": per_call(bare, n, repeat)}
    results["emit, no handler"] = per_call(emit_none, n, repeat)
    with telemetry.attached("one", "registry.register", noop):
        results["emit, one sync handler"] = per_call(emit_one, n, repeat)

    async def with_async_handler() -> None:
        async def handler(event: Event) -> None:
            return None

        async with telemetry.attach_async("async", "registry.register", handler, capacity=n):
            results["emit, one async handler (emitter side)"] = per_call(emit_one, n, repeat)

    trio.run(with_async_handler)

    metrics = MetricRegistry()
    counter = metrics.counter("c").value
    histogram = metrics.histogram("h").value
    rate = metrics.rate("r").value

    def incs(count: int) -> None:
        for _ in range(count):
            counter.inc()

    def observes(count: int) -> None:
        for i in range(count):
            histogram.observe(i * 1e-6)

    def marks(count: int) -> None:
        for _ in range(count):
            rate.mark()

    results["Counter.inc"] = per_call(incs, n, repeat)
    results["Histogram.observe"] = per_call(observes, n, repeat)
    results["Rate.mark"] = per_call(marks, n, repeat)
    for name, ns in results.items():
        print(f"{name:42} {ns:8.0f} ns")
    verdict = "meets" if results["emit, no handler"] <= 1000 else "MISSES"
    print(f"emit with no handler {verdict} the 1 us goal")


if __name__ == "__main__":
    main()
