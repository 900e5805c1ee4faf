"""Benchmarks for the linearizability checker.

Run ``python benchmarks/bench_lincheck.py`` (``--quick`` for a smaller run). Every
scenario runs in a fresh child process so its peak RSS is its own; each is run
``--repeat`` times (default 2) and the best and worst times are printed, as the
machine is shared and figures are noisy.

Histories come from a seeded simulation: ``procs`` clients issue operations
against one atomic object (a register, a cas-register, or a key-value map);
each operation takes effect at a random instant between its invocation and its
completion. A fraction of operations end ``info`` (half of them took effect,
half did not), after which the client is replaced by a fresh process, as in
Jepsen. ``anomalies`` reads are made to return a value never written, which
makes the history non-linearizable (the checker does not know that: it must
exhaust every explanation first).

No pure-Python peer linearizability checker is published on PyPI, so the
"peer" column compares against the exhaustive reference checker
(:func:`check_exhaustively`) on small histories, where it can finish.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import resource
import subprocess
import sys
import time
from typing import Any

from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import check_exhaustively, check_history


def generate(
    seed: int,
    model: str,
    n_ops: int,
    procs: int,
    *,
    info_rate: float = 0.05,
    anomalies: int = 0,
    keys: int = 1,
    values: int = 5,
    stale: bool = False,
) -> list[HistoryEvent]:
    """A history of ``n_ops`` operations by ``procs`` concurrent clients.

    Args:
        seed: the random seed; the same seed gives the same history.
        model: ``register``, ``cas-register`` or ``kv``.
        n_ops: the number of operations.
        procs: the number of concurrent clients.
        info_rate: the fraction of operations that end ``info``.
        anomalies: how many reads return a value never written (or, with
            ``stale``, a value overwritten at least 8 writes earlier).
        keys: the number of keys (``kv`` only).
        values: written values are drawn from ``range(values)``.
    """
    rng = random.Random(seed)
    state: dict[Any, Any] = {}
    written: dict[Any, list[Any]] = {}
    anomalous = set(rng.sample(range(n_ops // 4, n_ops), anomalies)) if anomalies else set()
    owed = 0  # anomalies still to inject (each goes to the next read at or after its slot)
    events: list[HistoryEvent] = []
    # heap of (time, seq, kind, client slot)
    heap: list[tuple[float, int, str, int]] = []
    seq = 0
    pid = list(range(procs))
    current: dict[int, dict[str, Any]] = {}
    issued = 0
    for slot in range(procs):
        heapq.heappush(heap, (rng.random(), seq, "invoke", slot))
        seq += 1
    next_pid = procs
    while heap:
        now, _, kind, slot = heapq.heappop(heap)
        if kind == "invoke":
            if issued >= n_ops:
                continue
            key = rng.randrange(keys) if model == "kv" else None
            r = rng.random()
            if model == "kv":
                f, value = ("get", None) if r < 0.5 else ("put", rng.randrange(values))
            elif model == "cas-register" and r < 0.3:
                f, value = "cas", [rng.randrange(values), rng.randrange(values)]
            else:
                f, value = ("read", None) if r < 0.6 else ("write", rng.randrange(values))
            op = {"f": f, "value": value, "key": key, "n": issued, "info": rng.random() < info_rate}
            issued += 1
            current[slot] = op
            events.append(HistoryEvent(pid[slot], "invoke", f, value, key=key))
            apply_at = now + rng.expovariate(1.0)
            heapq.heappush(heap, (apply_at, seq, "apply", slot))
            seq += 1
            heapq.heappush(heap, (apply_at + rng.expovariate(1.0), seq, "complete", slot))
            seq += 1
        elif kind == "apply":
            op = current[slot]
            if op["info"] and rng.random() < 0.5:
                op["result"] = ("info", None)  # never took effect
                continue
            key, f, value = op["key"], op["f"], op["value"]
            cur = state.get(key)
            if op["n"] in anomalous:
                owed += 1
            if f in ("read", "get"):
                seen = cur
                if owed and op["n"] >= min(anomalous):
                    old = written.get(key, [])
                    if not stale:
                        seen = values + 1  # a value never written
                        owed -= 1
                    elif len(old) > 8 and old[-9] not in old[-8:]:
                        seen = old[-9]  # overwritten 8 writes ago
                        owed -= 1
                op["result"] = ("ok", seen)
            elif f in ("write", "put"):
                written.setdefault(key, []).append(value)
                state[key] = value
                op["result"] = ("ok", value)
            elif cur == value[0]:
                written.setdefault(key, []).append(value[1])
                state[key] = value[1]
                op["result"] = ("ok", value)
            else:
                op["result"] = ("fail", value)
        else:
            op = current.pop(slot)
            status, out = ("info", None) if op["info"] else op["result"]
            events.append(HistoryEvent(pid[slot], status, op["f"], out, key=op["key"]))
            if status == "info":
                pid[slot] = next_pid
                next_pid += 1
            heapq.heappush(heap, (now + rng.expovariate(5.0), seq, "invoke", slot))
            seq += 1
    return events


# name -> (model, generator arguments, check_history arguments, histories)
Scenario = tuple[str, dict[str, Any], dict[str, Any], int]
_JEPSEN = {"info_rate": 0.05, "values": 5}  # Jepsen's cas-register test draws values 0-4
_WIDE = {"info_rate": 0.05, "values": 1000}  # (nearly) unique values
_STALE = {"anomalies": 1, "stale": True}
SCENARIOS: dict[str, Scenario] = {
    # the targets
    "cas-register 10k ops, 10 procs, 5% info": (
        "cas-register",
        {"n_ops": 10_000, "procs": 10, **_JEPSEN},
        {},
        1,
    ),
    "cas-register 10k ops, 10 procs, 1 impossible read": (
        "cas-register",
        {"n_ops": 10_000, "procs": 10, "anomalies": 1, **_JEPSEN},
        {},
        1,
    ),
    "register 300 ops, 5 procs (per history, x20)": (
        "register",
        {"n_ops": 300, "procs": 5, **_JEPSEN},
        {},
        20,
    ),
    "register 300 ops, 5 procs, 1 stale read (x20)": (
        "register",
        {"n_ops": 300, "procs": 5, **_WIDE, **_STALE},
        {},
        20,
    ),
    "kv 10k ops, 50 procs, 200 keys": (
        "kv",
        {"n_ops": 10_000, "procs": 50, "keys": 200, **_JEPSEN},
        {},
        1,
    ),
    "kv 10k ops, 50 procs, 200 keys, 3 impossible reads": (
        "kv",
        {"n_ops": 10_000, "procs": 50, "keys": 200, "anomalies": 3, **_JEPSEN},
        {},
        1,
    ),
    "kv 10k ops, 50 procs, 200 keys, 3 stale reads": (
        "kv",
        {"n_ops": 10_000, "procs": 50, "keys": 200, **_WIDE, "anomalies": 3, "stale": True},
        {},
        1,
    ),
    "register 2k ops, 50 procs, 1 stale read, timeout 10 s": (
        "register",
        {"n_ops": 2_000, "procs": 50, **_WIDE, **_STALE},
        {"timeout": 10.0},
        1,
    ),
    "same, max_states 200k": (
        "register",
        {"n_ops": 2_000, "procs": 50, **_WIDE, **_STALE},
        {"max_states": 200_000},
        1,
    ),
    # scaling with history length (10k above)
    "cas-register 1k ops, 10 procs": (
        "cas-register",
        {"n_ops": 1_000, "procs": 10, **_JEPSEN},
        {},
        1,
    ),
    "cas-register 5k ops, 10 procs": (
        "cas-register",
        {"n_ops": 5_000, "procs": 10, **_JEPSEN},
        {},
        1,
    ),
    "cas-register 20k ops, 10 procs": (
        "cas-register",
        {"n_ops": 20_000, "procs": 10, **_JEPSEN},
        {},
        1,
    ),
    # scaling with concurrency (10 procs above)
    "cas-register 5k ops, 5 procs": (
        "cas-register",
        {"n_ops": 5_000, "procs": 5, **_JEPSEN},
        {},
        1,
    ),
    "cas-register 5k ops, 20 procs": (
        "cas-register",
        {"n_ops": 5_000, "procs": 20, **_JEPSEN},
        {},
        1,
    ),
    "cas-register 5k ops, 50 procs": (
        "cas-register",
        {"n_ops": 5_000, "procs": 50, **_JEPSEN},
        {},
        1,
    ),
    # the hard kind: distinct values and info operations
    "cas-register 1k ops, 10 procs, unique values": (
        "cas-register",
        {"n_ops": 1_000, "procs": 10, **_WIDE},
        {},
        1,
    ),
    "cas-register 5k ops, 10 procs, unique values, timeout 20 s": (
        "cas-register",
        {"n_ops": 5_000, "procs": 10, **_WIDE},
        {"timeout": 20.0},
        1,
    ),
}


def run_one(name: str, seed: int) -> dict[str, Any]:
    """Run one scenario in this process; returns its measurements."""
    model, gen_args, check_args, repeat = SCENARIOS[name]
    histories = [generate(seed + i, model, **gen_args) for i in range(repeat)]
    verdicts: dict[str, int] = {}
    states = 0
    started = time.perf_counter()
    for events in histories:
        result = check_history(events, model, **check_args)
        verdicts[result.verdict] = verdicts.get(result.verdict, 0) + 1
        states += result.states
    seconds = (time.perf_counter() - started) / repeat
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "verdicts": verdicts, "states": states // repeat, "rss_mb": rss_mb}


def compare_reference(seed: int, n_ops: int, count: int = 100) -> tuple[float, float, int]:
    """Check ``count`` small cas-register histories with both checkers.

    Half the histories carry one read of a value never written. Returns the
    seconds taken by this checker and by the exhaustive one, and how many
    histories were not linearizable (both checkers must agree).
    """
    histories = [
        generate(seed + i, "cas-register", n_ops, 4, info_rate=0.15, values=3, anomalies=i % 2)
        for i in range(count)
    ]
    started = time.perf_counter()
    ours = [check_history(h, "cas-register").verdict for h in histories]
    ours_s = time.perf_counter() - started
    started = time.perf_counter()
    ref = [check_exhaustively(h, "cas-register") for h in histories]
    ref_s = time.perf_counter() - started
    if ours != ref:
        raise AssertionError("the checkers disagree")
    return ours_s, ref_s, ours.count("not-linearizable")


def main() -> int:
    """Run every scenario (each in a child process) and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs per scenario (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="run only scenarios whose name contains this")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, args.seed)))
        return 0
    names = [n for n in SCENARIOS if not args.only or args.only in n]
    print(
        f"{'scenario':<60} {'verdict':<38} {'best s':>8} {'worst s':>8} "
        f"{'states':>9} {'peak MB':>8}",
        flush=True,
    )
    for name in names:
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, "--seed", str(args.seed)],
                check=True,
                capture_output=True,
                text=True,
            )
            runs.append(json.loads(out.stdout))
        times = sorted(r["seconds"] for r in runs)
        verdict = ", ".join(f"{v} x{c}" if c > 1 else v for v, c in runs[0]["verdicts"].items())
        rss = max(r["rss_mb"] for r in runs)
        print(
            f"{name:<60} {verdict:<38} {times[0]:>8.3f} {times[-1]:>8.3f} "
            f"{runs[0]['states']:>9} {rss:>8.0f}",
            flush=True,
        )
    print()
    print("no pure-Python peer linearizability checker on PyPI; the reference is the")
    print("exhaustive checker (every real-time-respecting order), on 100 small histories:")
    for n_ops in (6, 8, 10):
        runs = [compare_reference(args.seed, n_ops) for _ in range(args.repeat)]
        ours = sorted(r[0] for r in runs)
        ref = sorted(r[1] for r in runs)
        print(
            f"  {n_ops:>2} ops ({runs[0][2]} not linearizable): WGL {ours[0]:.3f}-{ours[-1]:.3f} s,"
            f" exhaustive {ref[0]:.3f}-{ref[-1]:.3f} s, exhaustive/WGL time ratio "
            f"{ref[0] / ours[-1]:.1f}-{ref[-1] / ours[0]:.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
