"""Catch rates of the Raft property test's honest searches, over fresh random runs.

Run ``python benchmarks/catch_rates_raft.py`` (``--help`` for the options).
The broken cores are defined in ``property_tests/test_raft.py`` (never in the
library; ``BROKEN`` lists them with the invariants each breaks).

Two measurements, both with fresh seeds (no example database, no derandomize):

* ``--runs N`` (default): N fresh runs of the state machine per variant, each
  run to its end (a broken invariant is tallied, not raised); reports the per-run
  rate ``p`` with the lower end of its 95 % Wilson interval, and what that buys
  one CI search of ``SEARCH_EXAMPLES`` runs: ``1 - (1 - p) ** SEARCH_EXAMPLES``;
  the correct core is measured too (it must show no violation).
* ``--searches K``: K real searches per variant, each exactly what CI runs
  (``search()``: up to ``SEARCH_EXAMPLES`` runs, stopping at the first failure),
  with the 95 % Wilson interval of the catch rate, the mean and the longest
  search's wall time and CPU time (the CPU time is what an idle machine's wall
  time would be), how many of its runs a search used (mean, max), and which
  invariants fired; variant ``correct`` runs the
  same searches on the real core (its false positives). The load average
  (``uptime``) is printed before and after, and so is the commit that last changed
  the generator (``property_tests/test_raft.py``; "modified" if the work tree
  differs), so that only searches of one generator are ever added up. SIGTERM
  (``kill PID``, what stops a process started in the background, where SIGINT is
  ignored) stops it like Ctrl-C and reports the searches completed — usually: one
  SIGTERM during a search ended the process without the report (cause not found),
  so keep ``--progress``, whose lines hold every completed search.

Nothing here is a test: the figures go to docs/consensus.md with the command
that produced them.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from _scripts import load
from _scripts import load_module as _load

from trio_foundation.verify.catch_rate import wilson_interval

ROOT = Path(__file__).resolve().parent.parent


wilson = wilson_interval  # the Wilson score interval, shared with the property tests


def wilson_low(caught: int, n: int, z: float = 1.96) -> float:
    """The lower end of the Wilson score interval for a rate of ``caught`` in ``n``."""
    return wilson(caught, n, z)[0]


def generator() -> str:
    """The commit that last changed the generator, and whether the work tree differs."""
    test = "property_tests/test_raft.py"
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "log", "-1", "--format=%h", "--", test], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", test], check=False).returncode
    return f"{commit or 'unknown'}{' (modified)' if dirty else ''}"


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="fresh runs per variant (0: none)")
    parser.add_argument("--searches", type=int, default=0, help="also run K real searches")
    parser.add_argument(
        "--variant", action="append", help="only these variants, or correct (repeatable)"
    )
    parser.add_argument("--progress", action="store_true", help="a line per search")
    args = parser.parse_args()
    for flag, value in (("--runs", args.runs), ("--searches", args.searches)):
        if value < 0:
            parser.error(f"{flag} must be at least 0, got {value}")
    if args.runs == 0 and args.searches == 0:
        parser.error("--runs 0 and --searches 0: nothing to measure")
    raft = _load("property_raft", ROOT / "property_tests" / "test_raft.py")
    unknown = [v for v in args.variant or () if v != "correct" and v not in raft.BROKEN]
    if unknown:
        known = ", ".join(["correct", *sorted(raft.BROKEN)])
        parser.error(f"unknown --variant {', '.join(unknown)}: one of {known}")
    variants = args.variant or sorted(raft.BROKEN)
    every = [v for v in variants if v != "correct"]
    k = raft.SEARCH_EXAMPLES
    print(f"{args.runs} fresh runs of {raft.STEPS} steps per variant; one CI search = {k} runs")
    print(f"{'variant':22} {'caught':>9} {'p':>6} {'p(low)':>7} {'search':>7} {'s/run':>6}")
    for name in ["correct", *every] if args.runs > 0 else []:
        machine = raft.RaftMachine if name == "correct" else raft.BROKEN[name][0]
        invariants = () if name == "correct" else raft.BROKEN[name][1]
        started = time.monotonic()
        runs, seen = raft.tally(machine, args.runs)
        per_run = (time.monotonic() - started) / max(runs, 1)
        broken = {s: n for s, n in seen.items() if s[:1].isupper()}
        caught = sum(n for s, n in broken.items() if s in invariants)
        p, low = caught / max(runs, 1), wilson_low(caught, runs)
        other = {s: n for s, n in broken.items() if s not in invariants}
        print(
            f"{name:22} {caught:>4}/{runs:<4} {p:6.1%} {low:7.1%} {1 - (1 - p) ** k:7.1%} "
            f"{per_run:6.2f}" + (f"  other violations: {other}" if other else ""),
            flush=True,
        )
        if name == "correct":
            reach = ", ".join(f"{s} {seen.get(s, 0) / max(runs, 1):.0%}" for s in raft.REACHABLE)
            print(f"  reached (fraction of runs): {reach}", flush=True)
    if args.searches:
        signal.signal(signal.SIGTERM, _stop)
        print(
            f"searches of up to {k} runs of {raft.STEPS} steps; generator of commit "
            f"{generator()}; {load()}",
            flush=True,
        )
        measure_searches(raft, variants, args.searches, args.progress)
        print(load(), flush=True)


@dataclass
class Tally:
    """The searches of one variant so far."""

    caught: int = 0
    fired: dict[str, int] = field(default_factory=dict)
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    used: list[int] = field(default_factory=list)


def measure_searches(raft: ModuleType, variants: list[str], searches: int, progress: bool) -> None:
    """``searches`` fresh searches per variant, the variants taking turns (so an
    interrupted measurement has as many for each); Ctrl-C (SIGINT) stops it and
    reports the searches completed."""
    k = raft.SEARCH_EXAMPLES
    tallies = {name: Tally() for name in variants}
    try:
        for i in range(searches):
            for name in variants:
                machine = raft.RaftMachine if name == "correct" else raft.BROKEN[name][0]
                invariants = ("",) if name == "correct" else raft.BROKEN[name][1]
                t = tallies[name]
                started, cpu_started, runs_before = (
                    time.monotonic(),
                    time.process_time(),
                    machine.runs,
                )
                found = raft.search(machine)
                t.wall.append(time.monotonic() - started)
                t.cpu.append(time.process_time() - cpu_started)
                t.used.append(machine.runs - runs_before)
                what = None if found is None else found.split(":", 1)[0][:40]
                if found == "":
                    what = "AssertionError without a message"
                if what is not None:
                    t.fired[what] = t.fired.get(what, 0) + 1
                    t.caught += found.startswith(invariants)
                if progress:
                    print(
                        f"  {name} search {i + 1}: {what or 'nothing found'}, {t.used[-1]} runs, "
                        f"{t.wall[-1]:.1f} s wall, {t.cpu[-1]:.1f} s CPU",
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: the searches completed so far", flush=True)
    for name, t in tallies.items():
        n = len(t.cpu)
        if not n:
            continue
        low, high = wilson(t.caught, n)
        print(
            f"searches {name:22} {t.caught}/{n} {t.caught / n:.1%} "
            f"(95 % Wilson {low:.1%}..{high:.1%}), mean {sum(t.wall) / n:.1f} s, "
            f"max {max(t.wall):.1f} s per search (CPU mean {sum(t.cpu) / n:.1f} s, "
            f"max {max(t.cpu):.1f} s); runs used mean {sum(t.used) / n:.1f}, "
            f"max {max(t.used)} of {k}; fired {t.fired}",
            flush=True,
        )


if __name__ == "__main__":
    main()
