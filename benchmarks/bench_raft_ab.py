"""Two revisions of the Raft KV, measured side by side in alternating rounds.

Run ``python benchmarks/bench_raft_ab.py BEFORE [AFTER] [--rounds R] [--seconds S]``
from a git checkout. ``BEFORE`` and ``AFTER`` are git revisions (``AFTER``
defaults to the working tree): each one's ``src`` is exported with ``git archive``
to a temporary directory and its 3 ``foundation kv serve`` processes run with
that directory first on ``PYTHONPATH``. The client (this process, the working
tree's code) measures, per round and revision, the loads of ``bench_raft.py``:
1 client, 64 clients and ``--window`` outstanding writes (commits/s), and the CPU
time the 3 members used per commit (user + system, from ``/proc``; steadier than
the rates when other jobs share the machine), then the median latency of
sequential linearizable gets. The rounds
alternate ``before, after, after, before, ...`` so that load from other jobs on
a shared machine falls on both alike; the medians per revision and their ratio
are printed with ``uptime`` before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))

from bench_raft import OurCluster, closed_loop, sequential_latency, uptime

from trio_foundation.coordination.consensus import open_raft_client
from trio_foundation.coordination.raft_kv import KV_CODEC, RaftKV

LOADS = ("1 client", "64 clients", "pipelined")


def export(rev: str, into: Path) -> Path:
    """``rev``'s ``src`` directory under ``into``."""
    blob = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def cluster_cpu(cluster: OurCluster) -> float:
    """CPU seconds (user + system) the members' processes used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in cluster.procs.values():
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


async def one_round(src: Path | None, root: Path, args: argparse.Namespace) -> dict[str, float]:
    old = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = str(src)
    cluster = OurCluster(root, args.election_timeout)
    try:
        for i in (1, 2, 3):
            cluster.start(i)
    finally:
        if src is not None:
            if old is None:
                del os.environ["PYTHONPATH"]
            else:
                os.environ["PYTHONPATH"] = old
    out = {}
    try:
        async with open_raft_client(cluster.members, codec=KV_CODEC) as client:
            kv = RaftKV(client)
            with trio.fail_after(30):
                await kv.put("warmup", "x")

            async def put(c: int, k: int) -> None:
                await kv.put(f"bench/{c}", str(k))

            for load, clients in zip(LOADS, (1, 64, args.window), strict=True):
                cpu = cluster_cpu(cluster)
                out[load] = rate = await closed_loop(put, clients, args.seconds)
                out[load + " cpu"] = (cluster_cpu(cluster) - cpu) / (rate * args.seconds) * 1e3
            lat = await sequential_latency(lambda: kv.get("bench/0"), args.seconds)
            out["read p50 ms"] = statistics.median(lat) * 1e3
    finally:
        cluster.stop_all()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default=None, help="default: the working tree")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per revision")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--election-timeout", type=float, default=0.15)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    before_uptime = uptime()
    print("uptime before:", before_uptime, flush=True)
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="bench-raft-ab-", dir=args.dir or ".") as tmp:
        srcs = {
            "before": export(args.before, Path(tmp) / "before"),
            "after": None if args.after is None else export(args.after, Path(tmp) / "after"),
        }
        order = []
        for r in range(args.rounds):
            order += ["before", "after"] if r % 2 == 0 else ["after", "before"]
        for n, which in enumerate(order):
            root = Path(tmp) / f"run{n}"
            root.mkdir()
            got = trio.run(one_round, srcs[which], root, args)
            results[which].append(got)
            print(which, {k: round(v, 3) for k, v in got.items()}, flush=True)
    print(f"\nbefore = {args.before}, after = {args.after or 'working tree'};", end=" ")
    print(f"{args.rounds} rounds of {args.seconds:g} s per load, medians:")
    for load in LOADS:
        b = statistics.median(r[load] for r in results["before"])
        a = statistics.median(r[load] for r in results["after"])
        print(f"  {load:11}: before {b:8.0f} /s   after {a:8.0f} /s   after/before {a / b:.2f}")
        b = statistics.median(r[load + " cpu"] for r in results["before"])
        a = statistics.median(r[load + " cpu"] for r in results["after"])
        print(f"  {'':11}  members' CPU per commit: before {b:.3f} ms   after {a:.3f} ms")
    b = statistics.median(r["read p50 ms"] for r in results["before"])
    a = statistics.median(r["read p50 ms"] for r in results["after"])
    print(f"  {'read p50':11}: before {b:8.2f} ms  after {a:8.2f} ms")
    print("uptime before:", before_uptime)
    print("uptime after: ", uptime())


if __name__ == "__main__":
    main()
