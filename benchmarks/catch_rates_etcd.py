"""Catch rates of the etcd lock and election chaos searches, over fresh random seeds.

Run ``python benchmarks/catch_rates_etcd.py --suite SUITE --variant VARIANT --runs N``
(``--help`` for the options). Each run draws a fresh seed from the operating system
(``random.SystemRandom``), prints it (``FOUNDATION_CHAOS_SEED=N`` replays its fault
choices in the test) and runs the test's own function once:

* ``lock``: ``chaos/test_etcd_lock.py::run_chaos`` (three contenders through loopback
  proxies, a seeded nemesis, ``--seconds`` long, default the test's 20 s), checked by
  the test's ``check`` (mutual exclusion of the bodies, increasing tokens, no write
  of a holder refused inside its body); ``broken`` is the test's broken keep-alive;
* ``paused``: one round of ``chaos/test_etcd_lock.py::pause_round`` (a holder in its
  own OS process SIGSTOPped past its ttl while a second process acquires), checked
  by the test's ``round_violations``; ``broken`` is the child's broken keep-alive;
* ``election``: ``tests/test_election_conformance.py::run_under_cuts`` (three
  candidates under cuts and partitions, default the test's 12 s) on the ``--backend``
  (``etcd`` or ``raft``), checked by ``History.violations`` (no two terms overlap,
  tokens increase); ``broken`` is the backend's ``install_broken``.

A run counts as caught only when the test's own check names a violation; a run that
raises anything else is counted apart as an error. A ``broken`` run stops at the first
violation (the tests' ``stop_early``: a violation among the bodies or terms so far is
one of the full run, so the run is caught exactly when a run of the full length would
be); ``--full`` runs every run to its end. Ctrl-C or SIGTERM stops the run in
progress, stops the etcd by pid, prints the summary of the runs that finished and
exits with 130. ``--second-run-after-miss`` measures what
CI runs for the lock's broken keep-alive: after a missed run, one more fresh run; it
reports both the rate of single runs and that of ``--runs`` such tests. One etcd
(``EtcdCluster``, 127.0.0.1, free ports, stopped by pid) serves every run of a
process; each run uses its own key prefix.

Nothing here is a test: the figures go to docs/etcd.md and docs/verification.md with
the command that produced them.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from _scripts import load_module as _load
from _scripts import stop_like_ctrl_c

from trio_foundation.etcd import EtcdClient
from trio_foundation.etcd.testing import EtcdCluster
from trio_foundation.verify.catch_rate import wilson_interval

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "chaos")]


class _Node:
    def __init__(self, name: str) -> None:
        self.name = name


class _Request:
    """What ``open_backend`` asks of pytest's ``request``: two fixtures and a node name."""

    def __init__(self, name: str, cluster: EtcdCluster | None, tmp: Path) -> None:
        self.node = _Node(name)
        self._fixtures: dict[str, Any] = {"etcd_cluster": cluster, "tmp_path": tmp}

    def getfixturevalue(self, name: str) -> Any:
        value = self._fixtures[name]
        assert value is not None, f"no {name} in this process"
        return value


# One run: (outcome, detail) with outcome "caught", "missed" or "error".
Outcome = tuple[str, str]


def lock_run(
    chaos: ModuleType, cluster: EtcdCluster, seed: int, seconds: float, early: bool
) -> Outcome:
    run = trio.run(lambda: chaos.run_chaos(cluster, seed, seconds, stop_early=early))
    detail = (
        f"{len(run.bodies)} bodies, faults {run.faults}, {run.lost} leases lost, "
        f"{run.unavailable} etcd errors"
    )
    found = chaos.violation(run)
    if found is not None:
        return "caught", f"{detail}: {found[:300]}"
    if len(run.bodies) < 4:
        return "missed", f"{detail} (too few acquisitions: the test fails on that)"
    return "missed", detail


def paused_run(chaos: ModuleType, cluster: EtcdCluster, seed: int, broken: bool) -> Outcome:
    rng = random.Random(seed)
    r = trio.run(lambda: chaos.pause_round(cluster, rng, f"/pause-{seed}-0", broken=broken))
    found = chaos.round_violations(r)
    if r.stale_accepted:
        return "error", f"the fence let a stale write through: {r}"
    return ("caught" if found else "missed"), f"{r} {found}"


def election_run(
    election: ModuleType,
    kind: str,
    cluster: EtcdCluster | None,
    seed: int,
    seconds: float,
    early: bool,
    install: Callable[[Any], None] | None,
) -> Outcome:
    async def one() -> Any:
        with tempfile.TemporaryDirectory(prefix="election-") as tmp:
            request = _Request(f"catch-{seed}", cluster, Path(tmp))
            async with election.open_backend(kind, request) as backend:
                if install is not None:
                    install(backend)
                return await election.run_under_cuts(backend, seed, seconds, stop_early=early)

    history = trio.run(one)
    detail = (
        f"{len(history.terms)} terms, {history.lost} lost, {history.errors} errors, "
        f"{history.faults} faults"
    )
    found = history.violations()
    if found:
        return "caught", f"{detail}: {found[0][:300]}"
    if len({t.candidate for t in history.terms}) < 2:
        return "missed", f"{detail} (too few terms: the test fails on that)"
    return "missed", detail


@contextmanager
def etcd_cluster(needed: bool) -> Iterator[EtcdCluster | None]:
    if not needed:
        yield None
        return
    with (
        tempfile.TemporaryDirectory(prefix="catch-etcd-") as tmp,
        EtcdCluster.start(Path(tmp)) as cluster,
    ):
        yield cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=["lock", "paused", "election"], required=True)
    parser.add_argument("--variant", choices=["broken", "correct"], required=True)
    parser.add_argument("--backend", choices=["etcd", "raft"], default="etcd", help="election only")
    parser.add_argument("--runs", type=int, default=200, help="fresh runs (default 200)")
    parser.add_argument(
        "--seconds", type=float, default=None, help="run length (default: the test's)"
    )
    parser.add_argument(
        "--full", action="store_true", help="run broken runs to their end (no early stop)"
    )
    parser.add_argument(
        "--second-run-after-miss",
        action="store_true",
        help="count CI's procedure: after a missed run, one more fresh run (--runs such tests)",
    )
    args = parser.parse_args()
    stop_like_ctrl_c()  # SIGTERM too: the etcd it started is stopped on the way out
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    broken = args.variant == "broken"
    early = broken and not args.full
    chaos = _load("chaos_etcd_lock", ROOT / "chaos" / "test_etcd_lock.py")
    election = _load("election_conformance", ROOT / "tests" / "test_election_conformance.py")
    seconds = args.seconds or {"lock": chaos.SECONDS, "election": 12.0, "paused": 0.0}[args.suite]
    name = (
        args.suite + (f"[{args.backend}]" if args.suite == "election" else "") + f" {args.variant}"
    )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"commit {commit}; {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC")
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    monkeypatch = pytest.MonkeyPatch()
    install: Callable[[Any], None] | None = None
    if broken and args.suite == "lock":
        monkeypatch.setattr(EtcdClient, "_keep_alive", chaos._broken_keep_alive)
    if broken and args.suite == "election":

        def install(backend: Any) -> None:
            backend.install_broken(monkeypatch)

    system = random.SystemRandom()
    counts: Counter[str] = Counter()  # outcomes of single runs
    tests: Counter[str] = Counter()  # outcomes of CI's procedure (--second-run-after-miss)
    times: list[float] = []
    started_all = time.monotonic()
    interrupted = False
    needs_etcd = not (args.suite == "election" and args.backend == "raft")
    with etcd_cluster(needs_etcd) as cluster:

        def one_run(label: str) -> str:
            seed = system.randrange(2**32)
            started = time.monotonic()
            try:
                if args.suite == "lock":
                    assert cluster is not None
                    outcome = lock_run(chaos, cluster, seed, seconds, early)
                elif args.suite == "paused":
                    assert cluster is not None
                    outcome = paused_run(chaos, cluster, seed, broken)
                else:
                    outcome = election_run(
                        election, args.backend, cluster, seed, seconds, early, install
                    )
            except Exception as exc:  # reported, counted apart from catches and misses
                print(f"run {label}: seed {seed}:", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
                tail = "".join(traceback.format_exception_only(exc)).strip()
                outcome = "error", tail[:300] + " (traceback on stderr)"
            times.append(time.monotonic() - started)
            counts[outcome[0]] += 1
            print(
                f"run {label}: seed {seed} {outcome[0]} in {times[-1]:.1f} s: {outcome[1]}",
                flush=True,
            )
            return outcome[0]

        try:
            for n in range(1, args.runs + 1):
                result = one_run(str(n))
                if args.second_run_after_miss:
                    if result == "missed":
                        result = one_run(f"{n} (second, after a miss)")
                    tests[result] += 1
                if n % 10 == 0:
                    print(
                        f"  {name}: {counts['caught']} caught, {counts['missed']} missed, "
                        f"{counts['error']} errors of {sum(counts.values())} runs; "
                        f"load {os.getloadavg()[0]:.1f}",
                        file=sys.stderr,
                        flush=True,
                    )
        except* KeyboardInterrupt:  # Ctrl-C or SIGTERM, bare or inside trio's group
            interrupted = True
    monkeypatch.undo()
    runs = len(times)
    if interrupted:
        print(f"interrupted after {runs} of {args.runs} runs", flush=True)
        if not runs:
            sys.exit(130)
    caught = counts["caught"]
    low, high = wilson_interval(caught, runs)
    print(f"load average at the end: {os.getloadavg()}")
    print(
        f"{name}: {caught}/{runs} runs caught ({caught / runs:.1%}; 95 % Wilson "
        f"{low:.1%} - {high:.1%}), {counts['missed']} missed, {counts['error']} errors; "
        f"{sum(times) / runs:.1f} s per run (max {max(times):.1f}), "
        f"{time.monotonic() - started_all:.0f} s in all",
        flush=True,
    )
    tested = sum(tests.values())
    if args.second_run_after_miss and tested:
        low, high = wilson_interval(tests["caught"], tested)
        print(
            f"{name}, as CI runs it (a second fresh run after a miss): "
            f"{tests['caught']}/{tested} caught ({tests['caught'] / tested:.1%}; "
            f"95 % Wilson {low:.1%} - {high:.1%}), {tests['missed']} missed twice, "
            f"{tests['error']} errors",
            flush=True,
        )
    if interrupted:
        sys.exit(130)  # the figures above cover only the runs that finished


if __name__ == "__main__":
    main()
