"""How much of the skew slack SharedRateLimiter's bound needs, and the broken variant's excess.

    python benchmarks/shared_limiter_slack.py [RUNS]

Runs the memory scenario of ``tests/test_resilience_shared_limiter.py`` (4 limiters with
clocks skewed within +-50 ms, a store with 0-20 ms latency each way, one key, 40 calls
each) with fresh seeds, for the real limiter and for the check-then-put variant, and
prints, per algorithm, the largest excess over ``burst + rate * (t + 2 eps + L)`` (the
documented bound; <= 0 means it held) and over ``burst + rate * t`` (no slack).
"""

from __future__ import annotations

import argparse
import importlib.util
import random
from pathlib import Path

import trio
import trio.testing

from trio_foundation.resilience import SharedRateLimiter

TESTS = Path(__file__).resolve().parent.parent / "tests" / "test_resilience_shared_limiter.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("runs", nargs="?", type=int, default=20, help="fresh seeds per algorithm")
    runs = parser.parse_args().runs
    if runs < 1:
        parser.error(f"RUNS must be >= 1, got {runs}")
    spec = importlib.util.spec_from_file_location("shared_limiter_tests", TESTS)
    assert spec is not None and spec.loader is not None
    t = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(t)
    for cls in (SharedRateLimiter, t.CheckThenPutLimiter):
        for kind, algorithm in t.ALGORITHMS.items():
            with_slack, without, violations = [], [], 0
            for _ in range(runs):
                seed = random.randrange(2**32)

                async def scenario(
                    seed: int = seed, cls: type = cls, algorithm: object = algorithm
                ) -> object:
                    return await t.run_clients(
                        cls, algorithm, seed=seed, clients=4, eps=t.EPS, lag=t.LAG, calls=40, keys=1
                    )

                grants = trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
                excess = t.excess(grants, algorithm, 2 * t.EPS + t.LAG)
                with_slack.append(excess)
                without.append(t.excess(grants, algorithm, 0.0))
                violations += excess > 1e-9
            print(
                f"{cls.__name__:20} {kind:12} largest excess: with slack {max(with_slack):+.3f},"
                f" without {max(without):+.3f}; bound violated in {violations}/{runs} runs"
            )


if __name__ == "__main__":
    main()
