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
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager

import attrs

GROWTH_LIMIT = 256 * 1024  # bytes


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
