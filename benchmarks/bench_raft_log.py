"""Appends per second into the Raft log, with group commit and with one fsync per append.

Run ``python benchmarks/bench_raft_log.py [--dir DIR] [--seconds S] [--quick]``
(default directory: a temporary one under the current directory, i.e. on the
disk you run from). Each writer task loops ``await log.save(entries=[one
entry of --size bytes])``; the log's counters give the fsyncs.

* ``grouped``: :class:`RaftLog` as it is — concurrent saves share a write and
  an fsync (group commit), made in a worker thread.
* ``fsync-per-append``: the same log, but a lock lets one save at a time in,
  so each append pays its own fsync (what a log without group commit does).
* ``RecordLog``: :class:`~trio_foundation.runtime.storage.RecordLog.append`
  (blocking write + fdatasync, no thread, no Trio) — the floor of one fsync
  per record on this disk.
* Recovery: the time to open a log of ``--recovery-entries`` entries (read every
  segment, check every batch, replay every record).

Each configuration runs ``--repeat`` times; the median rate and the range are
printed (fsync latency on a shared disk varies by an order of magnitude from
run to run, so a best-of figure would flatter). The machine is shared (8
helpers on 2 cores when these figures were taken), so the load average is
printed before and after: read the figures with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import trio

from trio_foundation.runtime.raft_log import HardState, LogEntry, RaftLog
from trio_foundation.runtime.storage import RecordLog


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "uptime unavailable"


async def run_log(
    directory: str, writers: int, seconds: float, size: int, grouped: bool
) -> tuple[float, float]:
    """Appends/s and appends per fsync for one configuration."""
    log = await trio.to_thread.run_sync(RaftLog, directory)
    log.load()
    await log.save(hard_state=HardState(1, None))
    payload = b"x" * size
    gate = trio.Lock()
    done = 0
    deadline = trio.current_time() + seconds

    async def writer() -> None:
        nonlocal done
        while trio.current_time() < deadline:
            if grouped:
                await log.save(entries=(LogEntry(log.last_index + 1, 1, payload),))
            else:
                async with gate:
                    await log.save(entries=(LogEntry(log.last_index + 1, 1, payload),))
            done += 1

    start = trio.current_time()
    flushes_before = log.statistics().flushes
    async with trio.open_nursery() as nursery:
        for _ in range(writers):
            nursery.start_soon(writer)
    elapsed = trio.current_time() - start
    flushes = log.statistics().flushes - flushes_before
    await log.aclose()
    return done / elapsed, done / max(flushes, 1)


async def fill(directory: str, n: int, size: int) -> None:
    log = await trio.to_thread.run_sync(RaftLog, directory)
    log.load()
    await log.save(hard_state=HardState(1, None))
    payload = b"x" * size
    for start in range(1, n + 1, 10_000):
        stop = min(start + 10_000, n + 1)
        await log.save(entries=[LogEntry(i, 1, payload) for i in range(start, stop)])
    await log.aclose()


def time_open(directory: str) -> tuple[float, int]:
    start = time.perf_counter()
    log = RaftLog(directory)
    n = len(log.load().entries)
    elapsed = time.perf_counter() - start
    log.close()
    return elapsed, n


def run_record_log(directory: str, seconds: float, size: int) -> float:
    payload = b"x" * size
    with RecordLog(os.path.join(directory, "records")) as log:
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            log.append(payload)
            n += 1
        return n / (time.perf_counter() - start)


def report(name: str, rates: list[float], per_fsync: float) -> None:
    spread = f"{min(rates):,.0f}-{max(rates):,.0f}"
    print(f"{name:<34}{statistics.median(rates):>12,.0f}{spread:>16}{per_fsync:>15.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="where to write (default: under the cwd)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per run (default 3)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    parser.add_argument("--size", type=int, default=100, help="entry size in bytes")
    parser.add_argument("--quick", action="store_true", help="0.5 s per run, 1 run")
    parser.add_argument(
        "--recovery-entries", type=int, default=200_000, help="entries in the log timed on open"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeat, args.recovery_entries = 0.5, 1, 20_000
    root = tempfile.mkdtemp(dir=args.dir or os.getcwd(), prefix="bench-raft-log-")
    print(f"before: {uptime()}")
    print(f"entry size {args.size} B, {args.seconds:g} s per run, {args.repeat} runs each")
    print(f"{'configuration':<34}{'appends/s':>12}{'(min-max)':>16}{'appends/fsync':>15}")
    try:
        runs = 0
        for writers in (1, 64):
            for grouped in (True, False):
                rates = []
                for _ in range(args.repeat):
                    runs += 1
                    d = os.path.join(root, f"run{runs}")
                    rates.append(trio.run(run_log, d, writers, args.seconds, args.size, grouped))
                name = f"{'grouped' if grouped else 'fsync-per-append'}, {writers} writer(s)"
                report(name, [r[0] for r in rates], statistics.median(r[1] for r in rates))
        recs = [run_record_log(root, args.seconds, args.size) for _ in range(args.repeat)]
        report("RecordLog.append, 1 writer", recs, 1.0)
        big = os.path.join(root, "recovery")
        trio.run(fill, big, args.recovery_entries, args.size)
        elapsed, n = min(time_open(big) for _ in range(args.repeat))
        print(f"opening a log of {n:,} entries (read, check, replay): {elapsed:.2f} s, best run")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"after: {uptime()}")
    print("the machine is shared by 8 helpers on 2 cores: read the rates with the load above")


if __name__ == "__main__":
    main()
