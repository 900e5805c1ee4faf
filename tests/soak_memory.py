"""Memory-slope measurement for soak tests (``chaos/test_soak_*.py``).

A soak runs ``ops`` operations in steps and calls :meth:`MemoryTrace.sample` after each
step; the sample is ``tracemalloc``'s current traced size after a full garbage
collection. The slope is the least-squares fit of bytes against operations over the
second half of the run (the first half lets caches, dict tables and free lists reach
their working size). A structure that keeps something per operation shows a slope of
tens to hundreds of bytes per operation; a bounded one, a slope near zero, perturbed
only by the discrete steps of dict and list tables resizing (tens of KiB each). Soaks
therefore assert that the growth the slope projects over the measured half stays under
``GROWTH_LIMIT`` (256 KiB): at 20,000 operations that refuses any leak above ~26 bytes
per operation, at 1,000,000 any leak above ~0.5 bytes per operation.

Each soak runs in a fresh interpreter (:func:`isolated`): ``tracemalloc`` counts what
every thread of its process allocates, and each sample's full collection walks the
whole heap, so in pytest's own process whatever earlier tests left behind (threads, a
heap of millions of objects) would slow the soak down and could be counted as its
growth.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

GROWTH_LIMIT = 256 * 1024  # bytes
TESTS = Path(__file__).resolve().parent


@attrs.define
class MemoryTrace:
    samples: list[tuple[int, int]] = attrs.Factory(list)

    def sample(self, ops_done: int) -> None:
        gc.collect()
        self.samples.append((ops_done, tracemalloc.get_traced_memory()[0]))

    def slope(self) -> float:
        """Bytes per operation over the second half of the samples."""
        half = self.samples[len(self.samples) // 2 :]
        n = len(half)
        mean_x = sum(x for x, _ in half) / n
        mean_y = sum(y for _, y in half) / n
        var = sum((x - mean_x) ** 2 for x, _ in half)
        cov = sum((x - mean_x) * (y - mean_y) for x, y in half)
        return cov / var

    def projected_growth(self) -> float:
        """Bytes the fitted slope adds over the second half of the run."""
        half = self.samples[len(self.samples) // 2 :]
        return self.slope() * (half[-1][0] - half[0][0])

    def report(self, name: str) -> str:
        first, last = self.samples[0][1], self.samples[-1][1]
        return (
            f"{name}: {self.samples[-1][0]:,} ops, traced memory {first / 1024:.0f} KiB ->"
            f" {last / 1024:.0f} KiB, slope over the second half"
            f" {self.slope() * 1000:+.1f} bytes per 1,000 ops"
            f" ({self.projected_growth() / 1024:+.1f} KiB over that half)"
        )


@contextmanager
def traced() -> Iterator[MemoryTrace]:
    tracemalloc.start()
    try:
        yield MemoryTrace()
    finally:
        tracemalloc.stop()


_DRIVER = """
import importlib.util, json, sys
path, function, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, {tests!r})
spec = importlib.util.spec_from_file_location("soak_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
trace = getattr(module, function)(*args)
print(json.dumps(trace.samples))
"""


def isolated(module: str, function: str, *args: object, timeout: float) -> MemoryTrace:
    """Call ``function(*args)`` (JSON-encodable arguments; it returns a
    :class:`MemoryTrace`) of the soak module at path ``module`` in a fresh interpreter,
    and return its trace.

    Raises:
        AssertionError: the process failed (its stderr is in the message) or ran out
            of ``timeout`` real seconds (it is killed).
    """
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _DRIVER.format(tests=str(TESTS)),
                module,
                function,
                json.dumps(args),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the soak {function}{args} ran past {timeout:g} s") from exc
    if done.returncode != 0:
        raise AssertionError(
            f"the soak {function}{args} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    samples = json.loads(done.stdout.splitlines()[-1])
    return MemoryTrace([(int(ops), int(size)) for ops, size in samples])
