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

* ``trace-reach``: for each broken core of the trace-validation tests
  (``tests/test_*_trace.py``), fresh simulated runs (no TLC), counting those whose
  trace reaches the bug (the test's own predicate). A test's search draws fresh runs
  until one reaches the bug and then has TLC check that one trace, which is
  deterministic given the trace (the tests' slow ``catch_rate`` tests check every
  reached run is rejected, every other accepted), so the rate that matters is the
  per-run reach ``p``: a search of ``k`` runs catches with ``1 - (1 - p)^k``, printed
  from the low end of ``p``'s Wilson interval. Here ``--searches`` is runs per core.

* ``supervisor-trace``: ``tests/test_supervisor_trace.py``'s broken supervisors. CI
  checks one batch of 40 fresh runs in one TLC run (about 15 s of wall time on a
  loaded machine, too slow for 600 of them), so here a batch counts as reaching the bug
  when one of its traces shows it (a restart while ``INTENSITY`` restarts no older than
  ``PERIOD`` stand, for the intensity mutants; a shutdown that stops two or more
  children in ascending start order, for ``start_order``); the correct supervisor's
  batches must never reach it, and the first ``--tlc`` batches of each broken
  supervisor also go through TLC, whose verdict must agree with the predicate.

* ``small``: the cheap ones, each the test's own search: ``tests/test_storage.py``'s
  disk that skips fsync (every crash point of a run of saves, 4 torn tails each) and
  store that does not persist (up to 20 crash sequences), the check-then-put shared
  limiter of ``tests/test_resilience_shared_limiter.py`` (up to 10 fresh seeds), the
  leaky lock of ``tests/test_cancellation_harness.py`` (one Hypothesis search of up to
  200 injection plans) and the supervisor with uninterruptible waits of
  ``property_tests/test_supervisor_cancellation.py`` (up to 1,000 examples).

Nothing here is a test: the figures go to docs/verification.md with the command.
"""

from __future__ import annotations

import argparse
import logging
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _scripts import load  # noqa: E402
from _scripts import load_module as _load  # noqa: E402

from trio_foundation.verify.catch_rate import wilson_interval  # noqa: E402

# one search: (caught, verdict, seeds or runs it tried, runs that caught)
Search = Callable[[], tuple[bool, str, list[int], int]]


def commit() -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()


def measure(name: str, search: Search, searches: int) -> tuple[int, int]:
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
    return caught, searches


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


def trace_reach(searches: int) -> Iterator[tuple[str, Search]]:
    raft = _load("raft_trace", ROOT / "tests" / "test_raft_trace.py")
    cnet = _load("contract_net_trace", ROOT / "tests" / "test_contract_net_trace.py")
    auction = _load("auction_trace", ROOT / "tests" / "test_auction_trace.py")
    ledger = _load("ledger_trace", ROOT / "tests" / "test_ledger_trace.py")
    lease = _load("lease_lock_trace", ROOT / "tests" / "test_lease_lock_trace.py")
    # (name, attempts of the test's search, a fresh run's trace, the reach predicate)
    cases: list[tuple[str, int, Callable[[int], Any], Callable[[Any], bool]]] = [
        (
            "raft vote_before_persist (CI: 20 runs)",
            20,
            lambda seed: raft.rt.simulated_trace(seed, node_factory=raft.VOTE_FIRST),
            lambda t: raft._first(t, raft._granted_vote) is not None,
        ),
        (
            "raft commit_old_term (CI: 80 runs)",
            80,
            lambda seed: raft.rt.simulated_trace(seed, node_factory=raft.COMMIT_OLD),
            lambda t: raft._old_term_commit(t) is not None,
        ),
        (
            "lease lock SendBeforePersistServer (CI: 3 runs, each must be caught)",
            -3,
            lambda seed: lease.random_trace(seed, 40, lease.PARAMS, lease.broken_cluster()),
            lambda t: any(step.action == "ServerOnAcquire" for step in t),
        ),
    ]
    for name, (core, reached, _) in cnet.BROKEN.items():
        cases.append(
            (
                f"contract net {name} (CI: 60 runs)",
                60,
                lambda seed, core=core: cnet.cn.simulated_trace(seed, manager_factory=core),
                lambda t, reached=reached: reached(t) is not None,
            )
        )
    for name, (core, fmt, reached, _) in auction.BROKEN.items():
        cases.append(
            (
                f"sealed auction {name} (slow: 60 runs)",
                60,
                lambda seed, core=core, fmt=fmt: auction.at.simulated_trace(
                    seed, fmt, auctioneer_factory=core
                ),
                lambda t, reached=reached: reached(t) is not None,
            )
        )
    for name, (core, reached, _) in auction.DUTCH_BROKEN.items():
        cases.append(
            (
                f"dutch auction {name} (slow: 40 runs)",
                40,
                lambda seed, core=core: auction.ao.simulated_trace(seed, auctioneer_factory=core),
                lambda t, reached=reached: reached(t) is not None,
            )
        )
    for name, (core, reached, _) in ledger.BROKEN.items():
        cases.append(
            (
                f"ledger {name} (slow: 40 runs)",
                40,
                lambda seed, core=core: ledger.lt.simulated_trace(seed, node_factory=core),
                lambda t, reached=reached: reached(t) is not None,
            )
        )
    for name, attempts, run, reached in cases:

        def one(
            run: Callable[[int], Any] = run, reached: Callable[[Any], bool] = reached
        ) -> Search:
            def search() -> tuple[bool, str, list[int], int]:
                seed = random.SystemRandom().randrange(2**32)
                hit = reached(run(seed))
                return hit, "reached" if hit else "not reached", [seed], int(hit)

            return search

        yield f"{name} [{attempts}]", one()


def _supervisor_reached(
    broken: str, trace: list[dict[str, Any]], intensity: int, period: int
) -> bool:
    if broken == "start_order":
        stops = [e["stops"] for e in trace if len(e["stops"]) >= 2]
        return any(order == sorted(order) for order in stops)
    restarts: list[int] = []
    for e in trace:
        if e["rs"] and e["a"] in ("crash", "normal"):
            if sum(e["now"] - t <= period for t in restarts) >= intensity:
                return True
            restarts.append(e["now"])
    return False


def supervisor_trace(searches: int, tlc: int = 0) -> Iterator[tuple[str, Search]]:
    import tempfile

    import trio

    module = _load("supervisor_trace", ROOT / "tests" / "test_supervisor_trace.py")
    correct = [("correct", "one_for_one"), ("correct", "one_for_all")]
    for broken, strategy in [*module.BROKEN_STRATEGY.items(), *correct]:
        cls = module.BROKEN.get(broken, module._SupervisorBase)
        checked = [0]

        def one(
            broken: str = broken, strategy: str = strategy, cls: Any = cls, checked: Any = checked
        ) -> Search:
            def search() -> tuple[bool, str, list[int], int]:
                draw = random.SystemRandom()
                seeds = [draw.randrange(2**32) for _ in range(module.TRACES_PER_STRATEGY)]
                traces = []
                for seed in seeds:
                    clock = trio.testing.MockClock()
                    traces.append(trio.run(module._record, strategy, seed, clock, cls, clock=clock))
                kind = (
                    "start_order" if broken == "correct" and strategy == "one_for_all" else broken
                )
                hits = sum(
                    _supervisor_reached(
                        kind if kind != "correct" else "per_child",
                        t,
                        module.INTENSITY,
                        module.PERIOD,
                    )
                    for t in traces
                )
                verdict = "reached" if hits else "not reached"
                if broken != "correct" and checked[0] < tlc:
                    checked[0] += 1
                    with tempfile.TemporaryDirectory() as tmp:
                        result = module._check(Path(tmp), strategy, traces)
                    rejected = result.status is module.TLCStatus.DEADLOCK
                    verdict += f", TLC {'rejected' if rejected else 'accepted'}"
                return hits > 0, verdict, seeds, hits

            return search

        yield f"supervisor {broken} ({strategy}, batches of {module.TRACES_PER_STRATEGY})", one()


def small(searches: int) -> Iterator[tuple[str, Search]]:
    import re

    storage = _load("storage_tests", ROOT / "tests" / "test_storage.py")
    limiter = _load("shared_limiter_tests", ROOT / "tests" / "test_resilience_shared_limiter.py")
    harness = _load("harness_tests", ROOT / "tests" / "test_cancellation_harness.py")
    sup = _load("sup_cancel", ROOT / "property_tests" / "test_supervisor_cancellation.py")

    def fsync() -> tuple[bool, str, list[int], int]:
        seed = random.SystemRandom().randrange(2**32)
        found = storage.crash_everywhere(storage.skips_fsync, random.Random(seed)) != []
        return found, "violations" if found else "missed", [seed], int(found)

    def lying() -> tuple[bool, str, list[int], int]:
        seed = random.SystemRandom().randrange(2**32)
        found = storage.lying_store_caught(random.Random(seed))
        return found, "token reissued" if found else "missed", [seed], int(found)

    def check_then_put() -> tuple[bool, str, list[int], int]:
        found, tried = limiter.check_then_put_search()
        return found, "bound exceeded" if found else "missed", tried, int(found)

    def leaky() -> tuple[bool, str, list[int], int]:
        message = harness.leaky_lock_search()
        found = harness.leaky_lock_caught(message)
        verdict = "caught" if found else ("missed" if message is None else "other failure")
        return found, verdict, [], int(found)

    def uninterruptible() -> tuple[bool, str, list[int], int]:
        try:
            sup.search_uninterruptible()
        except sup.InjectionFailure as exc:
            found = re.search(sup.UNINTERRUPTIBLE_CAUGHT, str(exc)) is not None
            return found, "caught" if found else f"other: {exc}"[:80], [], int(found)
        return False, "missed", [], 0

    yield "storage: disk that skips fsync", fsync
    yield "storage: store that does not persist (tokens)", lying
    yield "shared limiter: check-then-put (search of 10 seeds)", check_then_put
    yield "cancellation harness: leaky lock (one search)", leaky
    yield "supervisor cancellation: uninterruptible waits (one search)", uninterruptible


def derived(caught: int, runs: int, attempts: int) -> str:
    """A search's catch rate from a per-run rate: ``attempts`` > 0 runs until one
    catches; ``attempts`` < 0: ``-attempts`` runs that must all catch."""
    low, _ = wilson_interval(caught, runs)
    p = caught / runs
    if attempts > 0:
        return (
            f"search of {attempts}: {100 * (1 - (1 - p) ** attempts):.3f} %, "
            f"from the low end {100 * (1 - (1 - low) ** attempts):.3f} %"
        )
    return (
        f"all of {-attempts} runs: {100 * p**-attempts:.2f} %, "
        f"from the low end {100 * low**-attempts:.2f} %"
    )


TARGETS = {
    "register-chaos": register_chaos,
    "register-split-brain": register_split_brain,
    "raft-kv-stale-read": raft_kv_stale_read,
    "ledger-forgetful": ledger_forgetful,
    "trace-reach": trace_reach,
    "supervisor-trace": supervisor_trace,
    "small": small,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--searches", type=int, default=200, help="fresh searches (default 200)")
    parser.add_argument("--tlc", type=int, default=10, help="supervisor-trace: TLC batches")
    parser.add_argument(
        "--only", action="append", help="measure only the variants whose name has this word"
    )
    args = parser.parse_args()
    if args.searches < 1:
        parser.error(f"--searches must be at least 1, got {args.searches}")
    if args.tlc < 0:
        parser.error(f"--tlc must be at least 0, got {args.tlc}")
    logging.disable(logging.CRITICAL)
    print(f"{load()}\ncommit {commit()}; {args.target}, {args.searches} searches", flush=True)
    start = time.time()
    targets = TARGETS[args.target]
    found = (
        supervisor_trace(args.searches, args.tlc)
        if targets is supervisor_trace
        else targets(args.searches)
    )
    names: list[str] = []
    measured = 0
    for name, search in found:
        names.append(name)
        if args.only and not any(word in name for word in args.only):
            continue
        measured += 1
        caught, runs = measure(name, search, args.searches)
        if name.endswith("]"):  # a per-run rate with the CI search's attempts
            attempts = int(name.rsplit("[", 1)[1][:-1])
            print(f"  -> {name}: {derived(caught, runs, attempts)}", flush=True)
    print(f"{load()}\n{time.time() - start:.0f} s in all", flush=True)
    if args.only and not measured:
        parser.error(f"--only {' '.join(args.only)} matches none of {', '.join(names)}")


if __name__ == "__main__":
    main()
