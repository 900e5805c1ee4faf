"""Benchmarks: supervised children vs bare ``nursery.start_soon`` tasks, in one run.

    python benchmarks/bench_supervision.py [--quick]

Measures, each against a bare-trio baseline measured in the same process:

* start: time from starting N children until every one is running (N = 1,000, 10,000);
  the supervised side is ``nursery.start(Supervisor(specs).run)`` with specs built before
  the clock starts; best of 5, bare and supervised runs alternating, the garbage
  collector disabled during each run (on both sides).
* floor: the same bare tasks, each inside its own ``trio.CancelScope`` (what a supervisor
  needs to stop one child alone): the lowest ratio a supervisor on trio can reach.
* stop: time to stop them all (the supervisor stops one at a time in reverse order; the
  bare nursery cancels all at once); best of 5, same conditions.
* restart latency: a child that raises, until its replacement runs (2,000 crashes;
  intensity never reached, period 1 ms); baseline: a bare task that catches its own
  exception and ``start_soon``s a new one. The garbage collector stays enabled.
* memory per child: tracemalloc growth per running child (specs included) vs a bare task.

Goals (issue 4): start <= 2x bare, restart median <= 100 us, <= 5 KB per child.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import trio
import trio.lowlevel

from trio_foundation.supervision import ChildSpec, Supervisor


class Crash(Exception):
    pass


# ----------------------------------------------------------------------------- start/stop


async def _bare_start_stop(n: int, scoped: bool = False) -> tuple[float, float]:
    count = 0
    all_started = trio.Event()

    async def child() -> None:
        nonlocal count
        count += 1
        if count == n:
            all_started.set()
        await trio.sleep_forever()

    async def scoped_child() -> None:
        with trio.CancelScope():
            await child()

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(scoped_child if scoped else child)
        await all_started.wait()
        t1 = time.perf_counter()
        nursery.cancel_scope.cancel()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


async def _supervised_start_stop(n: int) -> tuple[float, float]:
    count = 0
    all_started = trio.Event()

    async def child() -> None:
        nonlocal count
        count += 1
        if count == n:
            all_started.set()
        await trio.sleep_forever()

    sup = Supervisor([ChildSpec(f"c{i}", child) for i in range(n)])
    async with trio.open_nursery() as nursery:
        t0 = time.perf_counter()
        await nursery.start(sup.run)
        await all_started.wait()
        t1 = time.perf_counter()
        await sup.aclose()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


async def _scoped_start_stop(n: int) -> tuple[float, float]:
    return await _bare_start_stop(n, scoped=True)


def _interleaved_best(n: int, reps: int) -> dict[str, tuple[float, float]]:
    """Best (start, stop) of ``reps`` runs each of bare, bare+scope and supervised, alternating.

    The garbage collector is collected before and disabled during each run, on all sides.
    """
    runs: dict[str, list[tuple[float, float]]] = {"bare": [], "scope": [], "sup": []}
    fns: dict[str, Callable[[int], Awaitable[tuple[float, float]]]] = {
        "bare": _bare_start_stop,
        "scope": _scoped_start_stop,
        "sup": _supervised_start_stop,
    }
    for _ in range(reps):
        for key, fn in fns.items():
            gc.collect()
            gc.disable()
            try:
                runs[key].append(trio.run(fn, n))
            finally:
                gc.enable()

    def best(key: str) -> tuple[float, float]:
        return min(r[0] for r in runs[key]), min(r[1] for r in runs[key])

    return {key: best(key) for key in runs}


# -------------------------------------------------------------------------------- restart


async def _supervised_restarts(crashes: int) -> list[float]:
    latencies: list[float] = []
    crashed_at = 0.0

    async def child() -> None:
        nonlocal crashed_at
        if crashed_at:
            latencies.append(time.perf_counter() - crashed_at)
        if len(latencies) < crashes:
            crashed_at = time.perf_counter()
            raise Crash
        await trio.sleep_forever()

    # intensity high enough never to escalate; a 1 ms period keeps the restart window as
    # small as a production supervisor's (a 1-hour window would hold every crash's
    # traceback and make the benchmark measure the garbage collector).
    sup = Supervisor([ChildSpec("c", child)], intensity=crashes + 1, period=0.001)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        while len(latencies) < crashes:  # noqa: ASYNC110 - polling keeps the child simple
            await trio.sleep(0.01)
        await sup.aclose()
    return latencies


async def _bare_restarts(crashes: int) -> list[float]:
    latencies: list[float] = []
    crashed_at = 0.0
    done = trio.Event()

    async with trio.open_nursery() as nursery:

        async def child() -> None:
            nonlocal crashed_at
            if crashed_at:
                latencies.append(time.perf_counter() - crashed_at)
            if len(latencies) >= crashes:
                done.set()
                return
            try:
                crashed_at = time.perf_counter()
                raise Crash
            except Crash:
                nursery.start_soon(child)

        nursery.start_soon(child)
        await done.wait()
    return latencies


# --------------------------------------------------------------------------------- memory


async def _memory(n: int, supervised: bool) -> float:
    count = 0
    all_started = trio.Event()

    async def child() -> None:
        nonlocal count
        count += 1
        if count == n:
            all_started.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await trio.lowlevel.checkpoint()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        if supervised:
            sup = Supervisor([ChildSpec(f"c{i}", child) for i in range(n)])
            await nursery.start(sup.run)
        else:
            for _ in range(n):
                nursery.start_soon(child)
        await all_started.wait()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        nursery.cancel_scope.cancel()
    return (after - before) / n


# ----------------------------------------------------------------------------------- main


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} us"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    args = parser.parse_args(argv)
    sizes = (100, 1_000) if args.quick else (1_000, 10_000)
    crashes = 200 if args.quick else 2_000
    reps = 1 if args.quick else 5

    rows: list[tuple[str, str, str, str, str]] = []
    for n in sizes:
        best = _interleaved_best(n, reps)
        (bare_start, bare_stop), (sup_start, sup_stop) = best["bare"], best["sup"]
        scope_start = best["scope"][0]
        rows.append(
            (
                f"start {n:,} children",
                _ms(sup_start),
                _ms(bare_start),
                f"{sup_start / bare_start:.2f}x",
                "<= 2x",
            )
        )
        rows.append(
            (
                "  floor: bare tasks, each in a CancelScope",
                _ms(scope_start),
                _ms(bare_start),
                f"{scope_start / bare_start:.2f}x",
                "-",
            )
        )
        rows.append(
            (
                f"stop {n:,} children",
                _ms(sup_stop),
                _ms(bare_stop),
                f"{sup_stop / bare_stop:.2f}x",
                "-",
            )
        )
    sup_lat = sorted(trio.run(_supervised_restarts, crashes))
    bare_lat = sorted(trio.run(_bare_restarts, crashes))

    def p99(values: list[float]) -> float:
        return values[min(len(values) - 1, int(len(values) * 0.99))]

    rows.append(
        (
            f"restart latency median ({crashes:,} crashes)",
            _us(statistics.median(sup_lat)),
            _us(statistics.median(bare_lat)),
            f"{statistics.median(sup_lat) / statistics.median(bare_lat):.2f}x",
            "<= 100 us",
        )
    )
    rows.append(
        (
            "restart latency p99",
            _us(p99(sup_lat)),
            _us(p99(bare_lat)),
            f"{p99(sup_lat) / p99(bare_lat):.2f}x",
            "-",
        )
    )
    n = sizes[-1]
    sup_mem = trio.run(_memory, n, True)
    bare_mem = trio.run(_memory, n, False)
    rows.append(
        (
            f"memory per child ({n:,} children)",
            f"{sup_mem / 1024:.2f} KB",
            f"{bare_mem / 1024:.2f} KB",
            f"{sup_mem / bare_mem:.2f}x",
            "<= 5 KB",
        )
    )

    header = ("measure", "supervised", "bare trio", "ratio", "goal")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    print(f"python {sys.version.split()[0]}, trio {trio.__version__}")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
