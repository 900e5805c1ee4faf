"""Catch rates of the lease lock's honest searches, over fresh random seeds.

Run ``python benchmarks/catch_rates_lease_lock.py`` (``--help`` for the options).
Two searches must find each broken core of ``tests/lease_lock_mutants.py``
without knowing it:

* the chaos suite (``chaos/test_lease_lock.py``): each run draws a fresh seed
  from the operating system; the script reports, over ``--seeds`` runs per
  variant, the fraction that broke the expected invariant (the per-seed rate
  ``p``), and what that buys CI's search of ``SEARCH_SEEDS`` seeds:
  ``1 - (1 - p) ** SEARCH_SEEDS``, also from the lower end of a 95 % Wilson
  interval for ``p``;
* the Hypothesis state machine (``property_tests/test_lease_lock.py``): each
  search is a fresh Hypothesis run (new random seed, no example database) with
  CI's settings; the script reports how many of ``--searches`` searches caught
  the variant and how long they took.

Nothing here is a test: the figures go to docs/verification.md with the
command that produced them.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

from trio_foundation.verify.catch_rate import wilson_interval

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests")]

from _scripts import load_module as _load  # noqa: E402
from lease_lock_mutants import AmnesiacClient, NoDriftClient, UnfencedResource  # noqa: E402

wilson = wilson_interval  # the Wilson score interval, shared with the property tests


def wilson_low(caught: int, n: int, z: float = 1.96) -> float:
    """The lower end of the Wilson score interval for a rate of ``caught`` in ``n``."""
    return wilson(caught, n, z)[0]


# The chaos suite (chaos/test_lease_lock.py) still reports the resource's check under
# its former name, StaleWriteRejected; the state machine uses the spec's name.
CHAOS: dict[str, tuple[str, dict[str, Any]]] = {
    "NoDriftClient": ("MutualExclusion", {"client_cls": NoDriftClient, "clocks": "adversarial"}),
    "UnfencedResource": ("StaleWriteRejected", {"resource_cls": UnfencedResource}),
    "AmnesiacClient": ("MutualExclusion", {"client_cls": AmnesiacClient}),
}


#: broken cores that only the state machine searches for
STATEFUL_ONLY = ("ForgetfulAbortClient",)


def chaos_rates(seeds: int, variants: list[str]) -> None:
    chaos = _load("chaos_lease_lock", ROOT / "chaos" / "test_lease_lock.py")
    k = chaos.SEARCH_SEEDS
    rng = random.SystemRandom()
    print(f"chaos suite: {seeds} fresh seeds per variant; CI's search runs up to {k} seeds")
    print(f"{'variant':18} {'caught':>9} {'p':>6} {'search':>8} {'search(low)':>12} {'s/run':>6}")
    for name in variants:
        invariant, kwargs = CHAOS[name]
        caught = other = 0
        started = time.monotonic()
        for _ in range(seeds):
            run = chaos.run_lease_lock_chaos(rng.randrange(2**32), **kwargs)
            if run.violation is not None:
                if run.violation.split(": ", 1)[1].startswith(invariant):
                    caught += 1
                else:
                    other += 1
        per_run = (time.monotonic() - started) / seeds
        p, low = caught / seeds, wilson_low(caught, seeds)
        search, search_low = 1 - (1 - p) ** k, 1 - (1 - low) ** k
        extra = f"  ({other} other violations)" if other else ""
        print(
            f"{name:18} {caught:>4}/{seeds:<4} {p:6.1%} {search:8.1%} {search_low:12.1%} "
            f"{per_run:6.2f}{extra}",
            flush=True,
        )


def stateful_rates(
    searches: int, variants: list[str], examples: int | None, every: int = 10
) -> None:
    stateful = _load("property_lease_lock", ROOT / "property_tests" / "test_lease_lock.py")
    machines = stateful.BROKEN
    examples = examples or stateful.SEARCH_EXAMPLES
    print(
        f"state machine: {searches} fresh searches per variant, each up to {examples} runs "
        f"of {stateful.SEARCH_STEPS} steps"
    )
    print(f"load average at the start: {os.getloadavg()}")
    print(f"{'variant':22} {'caught':>9} {'rate':>6} {'95% Wilson':>15} {'mean s':>7} {'max s':>6}")
    for name in variants:
        machine, invariant = machines[name]
        caught = other = 0
        times = []
        for done in range(1, searches + 1):
            started = time.monotonic()
            found = stateful.search(machine, examples)
            times.append(time.monotonic() - started)
            if found is not None:
                if invariant in found:
                    caught += 1
                else:
                    other += 1
                    print(f"  {name}: another failure: {found[:200]}", file=sys.stderr)
            if (every and done % every == 0) and done < searches:
                print(
                    f"  {name}: {caught} of {done} so far ({times[-1]:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        low, high = wilson(caught, searches)
        extra = f"  ({other} found another failure)" if other else ""
        print(
            f"{name:22} {caught:>4}/{searches:<4} {caught / searches:6.1%} "
            f"{low:6.1%} - {high:6.1%} {sum(times) / searches:7.2f} {max(times):6.2f}{extra}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=200, help="chaos runs per variant")
    parser.add_argument("--searches", type=int, default=200, help="Hypothesis searches per variant")
    parser.add_argument(
        "--examples", type=int, default=None, help="runs per Hypothesis search (default: CI's)"
    )
    parser.add_argument(
        "--progress-every",
        type=int,
        default=10,
        help="print the running count every N searches (stderr; 0: never)",
    )
    parser.add_argument("--only", choices=["chaos", "stateful"], help="one of the two suites")
    parser.add_argument(
        "--variant",
        action="append",
        choices=[*CHAOS, *STATEFUL_ONLY],
        help="variants (default: all; ForgetfulAbortClient has no chaos search)",
    )
    args = parser.parse_args()
    for flag, value, least in (
        ("--seeds", args.seeds, 1),
        ("--searches", args.searches, 1),
        ("--examples", args.examples, 1),
        ("--progress-every", args.progress_every, 0),
    ):
        if value is not None and value < least:
            parser.error(f"{flag} must be at least {least}, got {value}")
    variants = args.variant or [*CHAOS, *STATEFUL_ONLY]
    if args.only != "stateful":
        chaos_rates(args.seeds, [v for v in variants if v in CHAOS])
    if args.only != "chaos":
        stateful_rates(args.searches, variants, args.examples, args.progress_every)


if __name__ == "__main__":
    main()
