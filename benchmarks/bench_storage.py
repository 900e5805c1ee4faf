"""Cost of a durable save, and of fencing tokens with block reservation.

Run ``python benchmarks/bench_storage.py [--dir DIR]`` (default: a temporary
directory under the current one, i.e. on the disk you run from; ``--quick`` for
fewer saves). Prints the mean time of one ``save`` of a few bytes through
:class:`DurableState` (temp file, fsync, rename, fsync dir) and :class:`LoggedState`
(append, fdatasync), best of 3 runs, and the rate of
``TokenBlocks(LoggedState, block=1000).next_token()``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable

from trio_foundation.runtime.storage import DurableState, LoggedState, StateStore, TokenBlocks


def per_save(make: Callable[[], StateStore], n: int) -> float:
    store = make()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(n):
            store.save(b"%d" % i)
        best = min(best, (time.perf_counter() - start) / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="where to write (default: under the cwd)")
    parser.add_argument("--quick", action="store_true", help="50 saves instead of 500")
    args = parser.parse_args()
    n = 50 if args.quick else 500
    d = tempfile.mkdtemp(dir=args.dir or os.getcwd(), prefix="bench-storage-")
    try:
        stores: dict[str, Callable[[], StateStore]] = {
            "DurableState.save": lambda: DurableState(os.path.join(d, "state")),
            "LoggedState.save": lambda: LoggedState(os.path.join(d, "log")),
        }
        for name, make in stores.items():
            print(f"{name:<20}{per_save(make, n) * 1e3:8.3f} ms per save")
        tokens = TokenBlocks(LoggedState(os.path.join(d, "tokens")), block=1000)
        count = 100 * n
        start = time.perf_counter()
        for _ in range(count):
            tokens.next_token()
        rate = count / (time.perf_counter() - start)
        print(f"TokenBlocks(LoggedState, block=1000).next_token: {rate:,.0f} tokens/s")
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
