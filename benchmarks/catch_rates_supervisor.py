"""Catch rate of the supervisor's broken variant over fresh searches.

Run ``python benchmarks/catch_rates_supervisor.py --searches K``. Each search is
exactly what CI runs (``search_per_child_intensity`` in
``property_tests/test_supervisor.py``: a fresh Hypothesis seed, no database, up to
``PER_CHILD_SEARCH_EXAMPLES`` runs of the state machine against
``_PerChildIntensitySupervisor``, which counts restart intensity per child instead of
per supervisor), stopping at the first violation. Prints the searches that caught it
with the 95 % Wilson interval, which invariant fired, and the machine runs and wall
seconds a search took (mean, median, max). ``uptime`` is printed before and after.

Nothing here is a test: the figures go to docs/verification.md with the command.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the property test imports tests/trio_guest.py
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scripts import load  # noqa: E402
from _scripts import load_module as _load  # noqa: E402
from catch_rates_raft import wilson  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=200, help="fresh searches (default 200)")
    args = parser.parse_args()
    if args.searches < 1:
        parser.error(f"--searches must be at least 1, got {args.searches}")
    # the machine's hostile telemetry handlers make the library log each failure
    logging.disable(logging.CRITICAL)
    module = _load("property_supervisor", ROOT / "property_tests" / "test_supervisor.py")
    print(f"{load()}\n{args.searches} searches of up to {module.PER_CHILD_SEARCH_EXAMPLES} runs")
    caught = 0
    fired: dict[str, int] = {}
    runs: list[int] = []
    seconds: list[float] = []
    for _ in range(args.searches):
        started = time.monotonic()
        found, used = module.search_per_child_intensity()
        seconds.append(time.monotonic() - started)
        runs.append(used)
        if found is not None:
            what = found.strip().split(":", 1)[0][:60]  # the invariant's name
            fired[what] = fired.get(what, 0) + 1
            caught += "IntensityBound violated" in found
    low, high = wilson(caught, args.searches)
    print(
        f"_PerChildIntensitySupervisor: caught by {caught} of {args.searches} searches"
        f" ({caught / args.searches:.1%}, 95 % Wilson {low:.1%}..{high:.1%});"
        f" machine runs per search mean {statistics.mean(runs):.0f}, median"
        f" {statistics.median(runs):.0f}, max {max(runs)}; seconds per search mean"
        f" {statistics.mean(seconds):.2f}, max {max(seconds):.2f}; fired {fired}"
    )
    print(load())


if __name__ == "__main__":
    main()
