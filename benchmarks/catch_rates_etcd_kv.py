"""Catch rates of the etcd key-value store's broken variants over fresh runs.

Two suites, each run exactly as its test runs it (the tests' own functions):

* ``--suite chaos``: ``chaos/test_etcd_kv.py``. One run starts a fresh 3-member etcd
  cluster (``EtcdCluster.start``, 127.0.0.1, free ports, stopped by pid), runs
  ``run_chaos`` for ``--seconds`` (default: the test's 10 s) with a fresh seed, and
  checks each key's history with the test's ``verdicts`` (the project's checker,
  ``cas-register``). Variants: ``cached-reads`` (the broken client; as in the test,
  its run stops at the first check, every ``CHECK_EVERY`` s, that finds a key not
  linearizable) and ``correct``.
* ``--suite conformance``: ``tests/test_kv_conformance.py``. One run records a history
  with the test's ``record_history`` (six clients on three keys) against
  ``StaleReads(MemoryKV())`` (variant ``stale-reads``) or ``MemoryKV()`` (``correct``)
  and checks it with the test's ``verdicts``.
* ``--suite registry-claim``: ``tests/test_etcd_registry.py``'s
  ``contend_for_one_key`` (15 rounds of six contenders in two processes racing for one
  unique key) on one shared single-member etcd, each run under a prefix of its own,
  against the registry as it is (``correct``) or with ``Compare`` replaced in the
  registry module by the test's ``NoClaimComparison`` (``no-claim-comparison``: a
  claim written without checking it is free). Caught: two holders at once. This run
  has no seed of its own (the chance is real I/O timing); the number printed as its
  seed only names its prefix.
* ``--suite registry-churn``: ``tests/test_etcd_registry.py``'s ``churn_then_compare``
  (four writers in two processes register, update and unregister at random; then each
  view is compared with a freshly loaded one), on the shared etcd as above, against the
  registry as it is or with ``EtcdRegistry._insert`` replaced by the test's
  ``insert_ignoring_updates`` (``view-ignoring-updates``). Caught: a view that does not
  equal the fresh one within 5 s (the run stops at the first). Its writers draw from
  an unseeded ``random.Random()``, as in the test; the printed seed names the prefix.
* ``--suite registry-unregister``: ``tests/test_etcd_registry.py``'s
  ``own_writes_seen`` (register, update, unregister one entry, each write checked
  against the view at once; ``--rounds``, default the test's), against the registry as
  it is or with ``EtcdRegistry.unregister`` replaced by the test's
  ``unregister_without_waiting``. Caught: an unregistered entry still in the view when
  ``unregister`` returned (the run stops at the first such round).
* ``--suite registry-deadlines``: ``tests/test_etcd_registry.py``'s
  ``deadlines_leave_nothing`` (60 registrations under random real-time deadlines, an
  unseeded ``random.Random()`` as in the test), against the registry as it is or with
  ``EtcdClient.revoke_lease`` replaced by the test's ``revoke_nothing``
  (``lease-not-revoked``). Caught: a key left in etcd once its caller left (the run
  stops at the first such round).

A run is *caught* when a key's verdict is ``not-linearizable`` (the invariant the
broken variants break), *passed* when every key is ``linearizable``; anything else is
an *error* and is counted apart: a chaos run with too little work (fewer than 20
acknowledged writes: the test fails it before it looks at the verdicts), a verdict the
checker could not reach (``unknown``), or an exception. Every run's seed is drawn from
the operating system (``random.SystemRandom``) and printed, with its outcome, so a run
replays (``FOUNDATION_CHAOS_SEED=N`` for the chaos test; real I/O makes the exact
interleaving differ). ``uptime`` is printed at the start and the end.
Ctrl-C (or SIGTERM) stops the run in progress, stops its etcd members by pid, removes
their directories, prints the summary of the runs that finished and exits with 130.

Usage::

    nice -n 10 .venv/bin/python benchmarks/catch_rates_etcd_kv.py --suite chaos \\
        --variant cached-reads --runs 200
    nice -n 10 .venv/bin/python benchmarks/catch_rates_etcd_kv.py --suite conformance \\
        --variant stale-reads --runs 200

Nothing here is a test: the figures go to docs/etcd.md and docs/verification.md with
the command.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # loopback_proxy, raft_cluster

from _scripts import load, stop_like_ctrl_c  # noqa: E402
from _scripts import load_module as _load  # noqa: E402

from trio_foundation.verify.catch_rate import wilson_interval  # noqa: E402

VARIANTS = {
    "chaos": ("cached-reads", "correct"),
    "conformance": ("stale-reads", "correct"),
    "registry-claim": ("no-claim-comparison", "correct"),
    "registry-churn": ("view-ignoring-updates", "correct"),
    "registry-unregister": ("unregister-not-waiting", "correct"),
    "registry-deadlines": ("lease-not-revoked", "correct"),
}


def chaos_run(module: ModuleType, seed: int, seconds: float, variant: str) -> tuple[str, str]:
    """One run of the chaos test on a fresh cluster: (outcome, details)."""
    from trio_foundation.etcd.testing import EtcdCluster

    directory = tempfile.mkdtemp(prefix="etcd-kv-catch-")
    try:
        with EtcdCluster.start(directory, members=3) as cluster:
            broken = variant != "correct"
            every = module.CHECK_EVERY if broken else None  # as the test runs it
            run = trio.run(
                lambda: module.run_chaos(
                    cluster, seed, seconds, broken=broken, stop_at_violation=every
                )
            )
        found = module.verdicts(run.history)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    details = (
        f"stopped at {run.stopped_at}, faults {run.faults}, outcomes {run.counts}, verdicts {found}"
    )
    judged = _judge(found)
    if judged != "caught" and run.counts.get("write-ok", 0) < 20:
        return "error", "too little work: " + details
    return judged, details


def conformance_run(module: ModuleType, seed: int, variant: str) -> tuple[str, str]:
    """One run of the conformance test's history check: (outcome, details)."""
    from trio_foundation.coordination.kv import MemoryKV

    store: Any = MemoryKV() if variant == "correct" else module.StaleReads(MemoryKV())
    history = trio.run(module.record_history, store, seed)
    found = module.verdicts(history)
    return _judge(found), f"{len(history) // 2} operations, verdicts {found}"


def registry_claim_run(module: ModuleType, url: str, prefix: str, variant: str) -> tuple[str, str]:
    """One run of the etcd registry's claim test (15 rounds of six contenders in two
    processes on one unique key) on a shared etcd, under a prefix of its own."""
    from trio_foundation.etcd import _registry

    real = _registry.Compare
    if variant != "correct":
        _registry.Compare = module.NoClaimComparison  # what the test's monkeypatch does
    try:
        seen = trio.run(module.contend_for_one_key, url, prefix)
    finally:
        _registry.Compare = real
    if seen.rounds_without_winner or seen.keys_left:
        return "error", f"{seen}"
    return ("caught" if seen.overlaps else "passed"), f"{seen}"


def registry_churn_run(module: ModuleType, url: str, prefix: str, variant: str) -> tuple[str, str]:
    """One run of the etcd registry's churn test on a shared etcd."""
    from trio_foundation.etcd import EtcdRegistry

    if variant != "correct":
        EtcdRegistry._insert = module.insert_ignoring_updates  # what the test's monkeypatch does
    try:
        diverged = trio.run(module.churn_then_compare, url, prefix)
    finally:
        EtcdRegistry._insert = module.REAL_INSERT
    return ("caught" if diverged else "passed"), f"views that differed: {diverged}"


def registry_unregister_run(
    module: ModuleType, url: str, prefix: str, variant: str, rounds: int | None
) -> tuple[str, str]:
    """One run of the etcd registry's own-writes test on a shared etcd."""
    from trio_foundation.etcd import EtcdRegistry

    real = EtcdRegistry.unregister
    if variant != "correct":
        EtcdRegistry.unregister = module.unregister_without_waiting  # the test's monkeypatch
    try:
        extra = {} if rounds is None else {"rounds": rounds}
        lapse = trio.run(lambda: module.own_writes_seen(url, prefix, **extra))
    finally:
        EtcdRegistry.unregister = real  # type: ignore[method-assign]
    return ("passed" if lapse is None else "caught"), f"first lapse in round {lapse}"


def registry_deadlines_run(
    module: ModuleType, url: str, prefix: str, variant: str
) -> tuple[str, str]:
    """One run of the etcd registry's random-deadlines test on a shared etcd."""
    from trio_foundation.etcd import EtcdClient

    real = EtcdClient.revoke_lease
    if variant != "correct":
        EtcdClient.revoke_lease = module.revoke_nothing  # the test's monkeypatch
    try:
        outlived = trio.run(module.deadlines_leave_nothing, url, prefix)
    finally:
        EtcdClient.revoke_lease = real  # type: ignore[method-assign]
    return ("passed" if outlived is None else "caught"), f"first key outlived round {outlived}"


def _judge(found: dict[str, str]) -> str:
    if "not-linearizable" in found.values():
        return "caught"
    if set(found.values()) == {"linearizable"}:
        return "passed"
    return "error"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--variant", required=True, help="; ".join(
        f"{suite}: {'|'.join(names)}" for suite, names in sorted(VARIANTS.items())))  # fmt: skip
    parser.add_argument("--runs", type=int, default=200, help="fresh runs (default 200)")
    parser.add_argument("--seconds", type=float, default=None, help="chaos: run length")
    parser.add_argument("--rounds", type=int, default=None, help="registry-unregister: rounds")
    args = parser.parse_args()
    if args.variant not in VARIANTS[args.suite]:
        parser.error(f"--variant for {args.suite} is one of {', '.join(VARIANTS[args.suite])}")
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    if args.seconds is not None and not args.seconds > 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.suite == "chaos":
        module = _load("chaos_etcd_kv", ROOT / "chaos" / "test_etcd_kv.py")
        seconds = module.SECONDS if args.seconds is None else args.seconds
    elif args.suite == "conformance":
        module = _load("kv_conformance", ROOT / "tests" / "test_kv_conformance.py")
        seconds = 0.0
    else:
        module = _load("etcd_registry", ROOT / "tests" / "test_etcd_registry.py")
        seconds = 0.0
        from trio_foundation.etcd.testing import EtcdCluster

        shared = tempfile.mkdtemp(prefix="etcd-registry-catch-")
        cluster = EtcdCluster.start(shared)  # one member, as the test module's fixture
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, commit {commit}")
    print(f"{load()}\n{args.suite} {args.variant}: {args.runs} fresh runs", flush=True)
    fresh = random.SystemRandom()
    outcomes: dict[str, int] = {"caught": 0, "passed": 0, "error": 0}
    took: list[float] = []
    stop_like_ctrl_c()  # SIGTERM too: the clusters are stopped by pid on the way out
    interrupted = False
    try:
        try:
            for i in range(args.runs):
                seed = fresh.randrange(2**32)
                started = time.monotonic()
                try:
                    if args.suite == "chaos":
                        outcome, details = chaos_run(module, seed, seconds, args.variant)
                    elif args.suite.startswith("registry"):
                        # no seed: the printed one names a prefix
                        prefix = f"/registry-catch/{args.variant}-{seed}"
                        url = cluster.endpoints[0]
                        if args.suite == "registry-unregister":
                            outcome, details = registry_unregister_run(
                                module, url, prefix, args.variant, args.rounds
                            )
                        elif args.suite == "registry-deadlines":
                            outcome, details = registry_deadlines_run(
                                module, url, prefix, args.variant
                            )
                        elif args.suite == "registry-claim":
                            outcome, details = registry_claim_run(module, url, prefix, args.variant)
                        else:
                            outcome, details = registry_churn_run(module, url, prefix, args.variant)
                    else:
                        outcome, details = conformance_run(module, seed, args.variant)
                except Exception:  # counted and shown, never taken for a catch
                    outcome, details = "error", traceback.format_exc(limit=3).replace("\n", " | ")
                took.append(time.monotonic() - started)
                outcomes[outcome] += 1
                print(
                    f"run {i + 1} seed {seed}: {outcome} in {took[-1]:.1f} s; {details}", flush=True
                )
        except* KeyboardInterrupt:  # Ctrl-C or SIGTERM, bare or inside a nursery's group
            interrupted = True
    finally:
        if args.suite.startswith("registry"):
            cluster.close()
            shutil.rmtree(shared, ignore_errors=True)
    if interrupted:
        print(f"interrupted after {len(took)} of {args.runs} runs", flush=True)
        if not took:
            sys.exit(130)
    judged = outcomes["caught"] + outcomes["passed"]
    rate = outcomes["caught"] if args.variant != "correct" else outcomes["passed"]
    low, high = wilson_interval(rate, judged)
    what = "caught" if args.variant != "correct" else "passed (no false positive)"
    print(
        f"{args.suite} {args.variant}: {what} in {rate} of {judged} judged runs"
        f" ({rate / max(judged, 1):.1%}, 95 % Wilson {low:.1%}..{high:.1%});"
        f" {outcomes['error']} errors; seconds per run mean {statistics.mean(took):.2f},"
        f" max {max(took):.2f}; {outcomes}"
    )
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC\n{load()}")
    if interrupted:
        sys.exit(130)  # the figures above cover only the runs that finished


if __name__ == "__main__":
    main()
