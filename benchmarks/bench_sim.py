"""Simulator speed: events per second on one seeded chaos run of the ABD register.

Usage: ``.venv/bin/python benchmarks/bench_sim.py [--seed 1] [--ops 3000] [--repeat 3]``.
Prints the events processed, the best CPU time (``time.process_time``, steadier than
wall time on a shared machine) of ``--repeat`` runs, the
events per second and the event-log digest (identical on every run of a seed).
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from trio_foundation.protocols.register import register_factory
from trio_foundation.runtime.sim import ClientWorkload, Simulation
from trio_foundation.verify.history import HistoryRecorder
from trio_foundation.verify.nemesis import FAULT_KINDS, random_schedule


def _op(rng: random.Random, n: int) -> tuple[str, Any]:
    return ("read", None) if rng.random() < 0.5 else ("write", n)


def run_once(seed: int, ops: int) -> tuple[int, float, str]:
    """One run: (events processed, CPU seconds, event-log digest)."""
    schedule = random_schedule(seed, nodes=3, kinds=FAULT_KINDS, horizon=60.0, intensity=1.0)
    started = time.process_time()
    sim = Simulation(register_factory("correct"), nodes=3, seed=seed, schedule=schedule)
    recorder = HistoryRecorder(max_events=2 * ops + 2)
    workload = ClientWorkload(sim, recorder, clients=5, ops=ops, gen_op=_op)
    sim.run(stop=lambda: workload.done, until=70.0 + 2.0 * ops)
    return sim.steps, time.process_time() - started, sim.event_log_digest()


def main() -> None:
    """Run the benchmark and print one line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [run_once(args.seed, args.ops) for _ in range(args.repeat)]
    steps, best, digest = min(runs, key=lambda r: r[1])
    assert len({r[2] for r in runs}) == 1, "the digest changed between runs of one seed"
    print(
        f"seed {args.seed} ops {args.ops}: {steps} events in {best:.3f} s CPU "
        f"(best of {args.repeat}) = {steps / best:,.0f} events/s; digest {digest[:16]}"
    )


if __name__ == "__main__":
    main()
