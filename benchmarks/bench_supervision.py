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

Peer: when ``import triotp`` succeeds, the same scenarios run in the same process under
triotp's supervisor (``triotp.supervisor.start``, one supervisor for all N children), with
the same child coroutine, the same N and the same clock, and the table adds triotp's
figures and the ratio trio-foundation / triotp. triotp has no stop call: its children are
stopped by cancelling the enclosing nursery (all at once). triotp logs every restart with
its traceback through logbook, whose default handler writes to stderr; the benchmark
installs a ``logbook.NullHandler`` around triotp's runs (the log record is still made).
triotp 0.3.x needs Python >= 3.13; older triotp releases pin trio < 0.20, which
trio-foundation (trio >= 0.27) cannot use. Without triotp the benchmark says so and
measures the rest.

Goals (issue 4): start <= 2x bare, restart median <= 100 us, <= 5 KB per child.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import trio
import trio.lowlevel

from trio_foundation.supervision import ChildSpec, Supervisor

TRIOTP_MISSING = "triotp not installed: pip install triotp to compare"
triotp_supervisor: Any = None
logbook: Any = None
TRIOTP_VERSION = ""
#: Why triotp is not compared in this run (None: it is).
triotp_unavailable: str | None = None
try:
    import logbook  # type: ignore[no-redef]  # a dependency of triotp
    from triotp import supervisor as triotp_supervisor
except ImportError as exc:
    if exc.name in ("triotp", "logbook"):
        triotp_unavailable = TRIOTP_MISSING
        if sys.version_info < (3, 13):
            triotp_unavailable += (
                f"\n  (on Python {sys.version_info[0]}.{sys.version_info[1]}: triotp 0.3.x needs"
                " Python >= 3.13, and triotp <= 0.2.1 pins trio < 0.20, which trio-foundation"
                " (trio >= 0.27) cannot use)"
            )
    else:
        triotp_unavailable = f"triotp does not import: {type(exc).__name__}: {exc}"
except Exception as exc:
    triotp_unavailable = f"triotp does not import: {type(exc).__name__}: {exc}"
else:
    TRIOTP_VERSION = importlib.metadata.version("triotp")


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


@contextlib.contextmanager
def _triotp_quiet() -> Iterator[None]:
    """Silence triotp's logbook output (it logs each restart and cancellation)."""
    with logbook.NullHandler().applicationbound():
        yield


async def _triotp_start_stop(n: int) -> tuple[float, float]:
    count = 0
    all_started = trio.Event()

    async def child() -> None:
        nonlocal count
        count += 1
        if count == n:
            all_started.set()
        await trio.sleep_forever()

    specs = [triotp_supervisor.child_spec(id=f"c{i}", task=child, args=[]) for i in range(n)]
    opts = triotp_supervisor.options()
    with _triotp_quiet():
        async with trio.open_nursery() as nursery:
            t0 = time.perf_counter()
            await nursery.start(triotp_supervisor.start, specs, opts)
            await all_started.wait()
            t1 = time.perf_counter()
            nursery.cancel_scope.cancel()  # triotp has no stop call
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _interleaved_best(n: int, reps: int, peer: bool) -> dict[str, tuple[float, float]]:
    """Best (start, stop) of ``reps`` runs each of bare, bare+scope, supervised (and triotp).

    The sides alternate within each repetition. The garbage collector is collected before
    and disabled during each run, on all sides.
    """
    fns: dict[str, Callable[[int], Awaitable[tuple[float, float]]]] = {
        "bare": _bare_start_stop,
        "scope": _scoped_start_stop,
        "sup": _supervised_start_stop,
    }
    if peer:
        fns["triotp"] = _triotp_start_stop
    runs: dict[str, list[tuple[float, float]]] = {key: [] for key in fns}
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


async def _triotp_restarts(crashes: int) -> list[float]:
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

    # triotp keeps only failure times (no tracebacks), so its window needs no shrinking;
    # max_restarts above the crash count never escalates.
    spec = triotp_supervisor.child_spec(id="c", task=child, args=[])
    opts = triotp_supervisor.options(max_restarts=crashes + 1, max_seconds=1)
    with _triotp_quiet():
        async with trio.open_nursery() as nursery:
            await nursery.start(triotp_supervisor.start, [spec], opts)
            while len(latencies) < crashes:  # noqa: ASYNC110 - same polling as supervised
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
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


async def _memory(n: int, side: str) -> float:
    count = 0
    all_started = trio.Event()

    async def child() -> None:
        nonlocal count
        count += 1
        if count == n:
            all_started.set()
        await trio.sleep_forever()

    quiet = _triotp_quiet() if side == "triotp" else contextlib.nullcontext()
    with quiet:
        async with trio.open_nursery() as nursery:
            await trio.lowlevel.checkpoint()
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            if side == "sup":
                sup = Supervisor([ChildSpec(f"c{i}", child) for i in range(n)])
                await nursery.start(sup.run)
            elif side == "triotp":
                specs = [
                    triotp_supervisor.child_spec(id=f"c{i}", task=child, args=[]) for i in range(n)
                ]
                await nursery.start(triotp_supervisor.start, specs, triotp_supervisor.options())
            else:
                for _ in range(n):
                    nursery.start_soon(child)
            await all_started.wait()
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            nursery.cancel_scope.cancel()
    return (after - before) / n


def _triotp_smoke_test() -> str | None:
    """Run triotp once, small: None if it works with this trio, else the reason."""
    try:
        trio.run(_triotp_start_stop, 10)
        trio.run(_triotp_restarts, 3)
    except Exception as exc:
        cause: BaseException = exc
        while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]  # trio wraps the real error in nursery groups
        return (
            f"triotp {TRIOTP_VERSION} does not work with trio {trio.__version__}: "
            f"{type(cause).__name__}: {cause}"
        )
    return None


# ----------------------------------------------------------------------------------- main


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} us"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def _ratio(a: float, b: float | None) -> str:
    return "-" if b is None else f"{a / b:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    args = parser.parse_args(argv)
    sizes = (100, 1_000) if args.quick else (1_000, 10_000)
    crashes = 200 if args.quick else 2_000
    reps = 1 if args.quick else 5

    reason = triotp_unavailable
    if reason is None:
        reason = _triotp_smoke_test()
    peer = reason is None

    # (measure, trio-foundation, bare, tf/bare, triotp, tf/triotp, goal)
    rows: list[tuple[str, ...]] = []

    def row(
        name: str,
        fmt: Callable[[float], str],
        sup: float,
        bare: float,
        other: float | None,
        goal: str,
    ) -> None:
        cells = [name, fmt(sup), fmt(bare), _ratio(sup, bare)]
        if peer:
            cells += ["-" if other is None else fmt(other), _ratio(sup, other)]
        rows.append((*cells, goal))

    for n in sizes:
        best = _interleaved_best(n, reps, peer)
        (bare_start, bare_stop), (sup_start, sup_stop) = best["bare"], best["sup"]
        peer_start, peer_stop = best.get("triotp", (None, None))
        row(f"start {n:,} children", _ms, sup_start, bare_start, peer_start, "<= 2x")
        row(
            "  floor: bare tasks, each in a CancelScope",
            _ms,
            best["scope"][0],
            bare_start,
            None,
            "-",
        )
        row(f"stop {n:,} children", _ms, sup_stop, bare_stop, peer_stop, "-")

    sup_lat = sorted(trio.run(_supervised_restarts, crashes))
    bare_lat = sorted(trio.run(_bare_restarts, crashes))
    peer_lat = sorted(trio.run(_triotp_restarts, crashes)) if peer else None

    def p99(values: list[float]) -> float:
        return values[min(len(values) - 1, int(len(values) * 0.99))]

    row(
        f"restart latency median ({crashes:,} crashes)",
        _us,
        statistics.median(sup_lat),
        statistics.median(bare_lat),
        statistics.median(peer_lat) if peer_lat else None,
        "<= 100 us",
    )
    row(
        "restart latency p99",
        _us,
        p99(sup_lat),
        p99(bare_lat),
        p99(peer_lat) if peer_lat else None,
        "-",
    )
    n = sizes[-1]
    row(
        f"memory per child ({n:,} children)",
        lambda b: f"{b / 1024:.2f} KB",
        trio.run(_memory, n, "sup"),
        trio.run(_memory, n, "bare"),
        trio.run(_memory, n, "triotp") if peer else None,
        "<= 5 KB",
    )

    header: tuple[str, ...] = ("measure", "trio-foundation", "bare trio", "tf/bare")
    if peer:
        header += ("triotp", "tf/triotp")
    header += ("goal",)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    versions = f"python {sys.version.split()[0]}, trio {trio.__version__}"
    if peer:
        versions += f", triotp {TRIOTP_VERSION}"
    print(versions)
    for line in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    print(
        "compared: the same child coroutine, N and time.perf_counter clock in one process;"
        f" start/stop best of {reps}, sides alternating, gc off."
    )
    print(
        "  start = until every child has run its first step;"
        " stop: trio-foundation aclose() (one at a time, reverse order),"
        " bare and triotp: cancel the nursery (all at once)."
    )
    print(
        "  restart = from the raise to the replacement's first step (one_for_one, intensity"
        " never reached); memory = tracemalloc growth per running child, specs included."
    )
    if peer:
        print(
            "  triotp: one triotp.supervisor.start() for all children, default options;"
            " its logbook output silenced by a NullHandler."
        )
    else:
        print(reason)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
