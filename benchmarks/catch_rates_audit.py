"""Catch rates of the other broken variants' CI searches, over fresh seeds.

Run ``python benchmarks/catch_rates_audit.py TARGET --searches N`` (``--help`` lists
the targets). Each search is the very function the CI test calls (imported from the
test module, never copied), with fresh seeds from the operating system; the script
prints each search's verdict and the seeds it tried (each replays), then the searches
that caught the variant with the 95 % Wilson interval, the per-run rate over every
run the searches made, and the wall seconds; ``uptime`` before and after.

Targets:

* ``register-chaos``: ``chaos/test_register.py``'s ``search`` (up to 40 fresh seeds
  of 150 operations until a history is not linearizable) for each of its five broken
  scenarios, then ``--searches`` runs of the correct register (false positives);
* ``register-split-brain``: ``property_tests/test_register_sim.py``'s
  ``search_split_brain`` (one Hypothesis ``find`` of up to 300 fault schedules,
  generation only: shrinking starts after a catch, so it does not change the rate);
* ``raft-kv-stale-read``: ``chaos/test_raft_kv.py``'s ``search_stale_read`` (up to
  ``SEARCH`` = 25 fresh seeds of the stale-read core until one is not linearizable);
* ``ledger-forgetful``: ``tests/test_raft_ledger_chaos.py``'s ``search_forgetful``
  (up to 8 fresh seeds until an operation is applied twice or replicas disagree).

Nothing here is a test: the figures go to docs/verification.md with the command.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from trio_foundation.verify.catch_rate import wilson_interval  # noqa: E402

# one search: (caught, verdict, seeds or runs it tried, runs that caught)
Search = Callable[[], tuple[bool, str, list[int], int]]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load() -> str:
    """The load averages as ``uptime`` shows them."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def measure(name: str, search: Search, searches: int) -> None:
    caught = runs = run_hits = 0
    verdicts: Counter[str] = Counter()
    seconds: list[float] = []
    for i in range(searches):
        start = time.perf_counter()
        hit, verdict, tried, hits = search()
        seconds.append(time.perf_counter() - start)
        caught += hit
        runs += len(tried)
        run_hits += hits
        verdicts[verdict] += 1
        print(f"  {name} search {i + 1}: {verdict} after {len(tried)} runs {tried}", flush=True)
    low, high = wilson_interval(caught, searches)
    per_run = ""
    if runs:  # a search of seeds (a Hypothesis search does not count its runs here)
        rlow, rhigh = wilson_interval(run_hits, runs)
        per_run = (
            f"; runs {runs}, of which caught {run_hits} ({100 * run_hits / runs:.1f} %, "
            f"Wilson {100 * rlow:.1f}-{100 * rhigh:.1f} %), s per run {sum(seconds) / runs:.3f}"
        )
    print(
        f"{name}: caught by {caught} of {searches} searches ({100 * caught / searches:.1f} %, "
        f"Wilson 95 % {100 * low:.1f} %-{100 * high:.1f} %); verdicts {dict(verdicts)}; "
        f"s per search {sum(seconds) / searches:.2f} mean, {max(seconds):.2f} max{per_run}",
        flush=True,
    )


def register_chaos(searches: int) -> Iterator[tuple[str, Search]]:
    module = _load("chaos_register", ROOT / "chaos" / "test_register.py")
    for scenario, faults in module.BROKEN:

        def one(scenario: str = scenario, faults: tuple[str, ...] = faults) -> Search:
            def search() -> tuple[bool, str, list[int], int]:
                seed, tried = module.search(scenario, faults)
                found = seed is not None
                return found, "not-linearizable" if found else "missed", tried, int(found)

            return search

        label = "all faults" if faults == module.DEFAULT_FAULTS else "+".join(faults)
        yield f"{scenario} ({label})", one()

    def correct() -> tuple[bool, str, list[int], int]:
        seed = random.SystemRandom().randrange(2**32)
        run = module.run_chaos("register", seed=seed, ops=module.OPS)
        verdict = module.check_history(run.history, "register", timeout=30).verdict
        bad = verdict != "linearizable"
        return bad, verdict, [seed], int(bad)

    yield "register (correct; a catch is a false positive)", correct


def register_split_brain(searches: int) -> Iterator[tuple[str, Search]]:
    module = _load("property_register_sim", ROOT / "property_tests" / "test_register_sim.py")

    def search() -> tuple[bool, str, list[int], int]:
        found = module.search_split_brain(shrink=False)
        if found is None:
            return False, "missed", [], 0
        return True, f"not-linearizable ({len(found)} faults)", [], 1

    yield "register-split-brain (schedule search)", search


def raft_kv_stale_read(searches: int) -> Iterator[tuple[str, Search]]:
    _load("raft_kv_chaos", ROOT / "tests" / "raft_kv_chaos.py")
    module = _load("chaos_raft_kv", ROOT / "chaos" / "test_raft_kv.py")

    def search() -> tuple[bool, str, list[int], int]:
        run, tried = module.search_stale_read()
        found = run is not None
        return found, "not-linearizable" if found else "missed", tried, int(found)

    yield f"raft-kv stale-read (search of {module.SEARCH} seeds)", search


def ledger_forgetful(searches: int) -> Iterator[tuple[str, Search]]:
    _load("raft_kv_chaos", ROOT / "tests" / "raft_kv_chaos.py")
    module = _load("ledger_chaos", ROOT / "tests" / "test_raft_ledger_chaos.py")

    def search() -> tuple[bool, str, list[int], int]:
        found, tried = module.search_forgetful()
        caught = found in module.FORGETFUL_BREAKS
        return caught, str(found or "missed"), tried, int(found is not None)

    yield f"ledger ForgetfulNode (search of {module.FORGETFUL_SEARCH} seeds)", search


TARGETS = {
    "register-chaos": register_chaos,
    "register-split-brain": register_split_brain,
    "raft-kv-stale-read": raft_kv_stale_read,
    "ledger-forgetful": ledger_forgetful,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--searches", type=int, default=200, help="fresh searches (default 200)")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    print(f"{load()}\ncommit {commit()}; {args.target}, {args.searches} searches", flush=True)
    start = time.time()
    for name, search in TARGETS[args.target](args.searches):
        measure(name, search, args.searches)
    print(f"{load()}\n{time.time() - start:.0f} s in all", flush=True)


if __name__ == "__main__":
    main()
