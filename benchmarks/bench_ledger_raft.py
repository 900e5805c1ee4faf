"""Ledger transfers per second replicated on Raft, beside the in-memory figure.

Run ``python benchmarks/bench_ledger_raft.py [--seconds S] [--rounds R] [--window W]
[--batch B] [--dir DIR] [--memory-only]``.

The cluster is 3 ``foundation kv serve`` processes on loopback (free ports, data
dirs in a temporary directory under ``--dir``, durable writes: every member
fdatasyncs its log before it acknowledges an append or answers a client; election
timeout 0.15 s) — ``bench_raft.py``'s :class:`OurCluster`. The client runs in this
process: ``open_raft_client`` with the ledger codec and a
:class:`~trio_foundation.coordination.raft_ledger.RaftLedger`; every transfer is one
Raft log entry (``("ledger", Transfer)``) applied by every member's ledger.

Rows (each the median over ``--rounds`` rounds of ``S`` seconds):

* ``in memory``: ``Ledger.apply`` of ``Transfer`` in this process
  (``bench_market.transfers_per_second``, 200,000 transfers), and the same with
  50,000 accounts open and the journal window full (every command then folds
  the oldest entry into the checkpoint base: the cost a large ledger pays on
  every member); and the snapshot size of a ledger filled to its default bounds
  (what a leader sends a lagging member in one InstallSnapshot frame, 16 MiB at
  most);
* ``1 client``: one caller, ``RaftLedger.transfer`` back to back;
* ``64 clients``: 64 concurrent callers (one ``RaftClient``, one connection);
* ``pipelined``: ``W / B`` tasks each looping ``RaftLedger.apply_many`` of ``B``
  transfers (one request; each transfer its own log entry and session);
* ``KV put, 1 client`` / ``KV put, 64 clients``: the same cluster's key-value
  puts (``RaftKV.put`` of a small value) measured in the same rounds, for scale:
  what the log, the fsyncs and the round trips cost without the ledger.

Each caller moves 1 credit around its own ring of accounts, so no transfer is
refused. After the run the ledger is read back (a ReadIndex read of its
snapshot): the journal's sequence number must have advanced by exactly the
number of transfers counted (each applied once), and the supply must be
unchanged; the run fails otherwise. ``uptime`` is printed before and after (the
machine may be shared: compare figures of one run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))

from bench_market import transfers_per_second
from bench_raft import OurCluster, closed_loop, uptime

from trio_foundation.coordination.consensus import open_raft_client
from trio_foundation.coordination.raft_kv import KV_CODEC, RaftKV
from trio_foundation.coordination.raft_ledger import LEDGER_CODEC, RaftLedger
from trio_foundation.protocols import ledger as led

ELECTION_TIMEOUT = 0.15
CALLERS = 64
FUNDS = 10**12


def full_window_rate(accounts: int = 50_000, count: int = 20_000) -> float:
    """Transfers/s of ``Ledger.apply`` with ``accounts`` open and the journal window full."""
    ledger = led.Ledger()
    for i in range(accounts):
        ledger.apply(led.Open(f"a{i}"))
    ledger.apply(led.Mint("treasury", "a0", FUNDS))
    for _ in range(ledger.config.journal_window):
        ledger.apply(led.Transfer("a0", "a1", 1))
    commands = [led.Transfer("a0", f"a{i % accounts}", 1) for i in range(count)]
    start = time.perf_counter()
    for c in commands:
        ledger.apply(c)
    return count / (time.perf_counter() - start)


def full_snapshot_mib(n: int = 100_000) -> float:
    """MiB of the snapshot of a ledger filled to its default bounds: ``n`` accounts,
    ``n`` remembered transfer keys, ``n`` open holds, ``n // 2`` closed ones."""
    ledger = led.Ledger()
    for i in range(n):
        ledger.apply(led.Open(f"agent-{i:06d}"))
    ledger.apply(led.Mint("treasury", "agent-000000", FUNDS))
    for i in range(n):
        ledger.apply(led.Transfer("agent-000000", f"agent-{i:06d}", 1, key=f"order-{i:08d}"))
    for i in range(n + n // 2):
        ledger.apply(led.Hold(f"bid-{i:08d}", "agent-000000", 1))
    for i in range(n // 2):
        ledger.apply(led.Release(f"bid-{i:08d}"))
    return len(ledger.snapshot()) / 2**20


def account(c: int, j: int) -> str:
    return f"c{c}-{j}"


async def bench(args: argparse.Namespace, root: Path) -> dict[str, list[float]]:
    cluster = OurCluster(root, ELECTION_TIMEOUT)
    rows: dict[str, list[float]] = {
        "1 client": [],
        "64 clients": [],
        "pipelined": [],
        "KV put, 1 client": [],
        "KV put, 64 clients": [],
    }
    batch = max(1, min(args.batch, args.window))
    tasks = max(1, args.window // batch)
    rings = max(CALLERS, tasks)
    try:
        for i in (1, 2, 3):
            cluster.start(i)
        async with (
            open_raft_client(cluster.members, codec=LEDGER_CODEC) as client,
            open_raft_client(cluster.members, codec=KV_CODEC) as kv_client,
        ):
            ledger = RaftLedger(client)
            kv = RaftKV(kv_client)
            with trio.fail_after(60):
                setup = []
                for c in range(rings):
                    for j in range(2):
                        setup.append(led.Open(account(c, j)))
                        setup.append(led.Mint("treasury", account(c, j), FUNDS))
                for i in range(0, len(setup), 512):
                    for result in await ledger.apply_many(setup[i : i + 512]):
                        led.raise_for(result)
            before = await ledger.snapshot()
            counted = 0

            async def one(c: int, k: int) -> None:
                nonlocal counted
                await ledger.transfer(account(c, k % 2), account(c, 1 - k % 2), 1)
                counted += 1

            async def put(c: int, k: int) -> None:
                await kv.put(f"bench/{c}", str(k))

            async def many(c: int, k: int) -> None:
                nonlocal counted
                src, dst = account(c, k % 2), account(c, 1 - k % 2)
                results = await ledger.apply_many([led.Transfer(src, dst, 1)] * batch)
                for r in results:
                    led.raise_for(r)
                counted += batch

            for _ in range(args.rounds):
                rows["1 client"].append(await closed_loop(one, 1, args.seconds))
                rows["64 clients"].append(await closed_loop(one, CALLERS, args.seconds))
                rows["pipelined"].append(batch * await closed_loop(many, tasks, args.seconds))
                rows["KV put, 1 client"].append(await closed_loop(put, 1, args.seconds))
                rows["KV put, 64 clients"].append(await closed_loop(put, CALLERS, args.seconds))
            after = await ledger.snapshot()
            if after.seq - before.seq != counted:
                raise AssertionError(
                    f"journal advanced {after.seq - before.seq}, transfers counted {counted}"
                )
            if after.supply != before.supply or sum(after.balances().values()) != after.supply:
                raise AssertionError("the supply changed")
            print(f"checked: {counted:,} transfers, each journaled once; supply conserved")
    finally:
        cluster.stop_all()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--memory-only", action="store_true", help="skip the Raft cluster")
    args = parser.parse_args()
    print("before:", uptime())
    memory = [transfers_per_second() for _ in range(3)]
    full = [full_window_rate() for _ in range(3)]
    rows: dict[str, list[float]] = {}
    if not args.memory_only:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            rows = trio.run(bench, args, Path(tmp))
    size = full_snapshot_mib()
    print("after: ", uptime())
    print(f"snapshot of a ledger at its default bounds: {size:.1f} MiB")
    print()
    print("| operations | per second (median) | rounds |")
    print("|---|---|---|")
    print(f"| in memory (`Ledger.apply`) | {statistics.median(memory):,.0f} | 3 x 200,000 |")
    shown = ", ".join(f"{r:,.0f}" for r in full)
    print(
        f"| in memory, 50,000 accounts, journal window full | {statistics.median(full):,.0f}"
        f" | {shown} |"
    )
    for name, rates in rows.items():
        shown = ", ".join(f"{r:,.0f}" for r in rates)
        what = "Raft, 3 members, durable"
        print(f"| {what}: {name} | {statistics.median(rates):,.0f} | {shown} |")


if __name__ == "__main__":
    main()
