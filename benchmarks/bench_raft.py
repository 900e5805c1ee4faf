"""The replicated KV on 3 ``foundation kv serve`` processes on loopback, durable writes.

Run ``python benchmarks/bench_raft.py [--seconds S] [--failovers N] [--dir DIR]``.
A client in this process (``open_raft_client`` + ``RaftKV``) measures:

* ``1 client``: synchronous puts, one after the other (commits/s);
* ``64 clients``: 64 tasks doing synchronous puts concurrently (commits/s);
* ``read latency``: sequential linearizable gets (ReadIndex), median and p99 (ms);
* ``failover``: SIGKILL of the leader, then the time until a put is acknowledged
  again, median and range over ``--failovers`` kills (the killed member is
  restarted from its data dir before the next one).

Every member fsyncs (RaftLog group commit) before it sends or answers. The
machine is shared (8 helpers on 2 cores): ``uptime`` is printed before and
after; read the figures with it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from trio_foundation.coordination.consensus import RaftClient, open_raft_client
from trio_foundation.coordination.raft_kv import KV_CODEC, RaftKV


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Cluster:
    def __init__(self, root: Path, election_timeout: float) -> None:
        self.root = root
        self.election_timeout = election_timeout
        self.ports = dict(zip((1, 2, 3), free_ports(3), strict=True))
        self.members = {i: ("127.0.0.1", p) for i, p in self.ports.items()}
        self.peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in self.ports.items())
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, i: int) -> None:
        ready = self.root / f"ready{i}"
        ready.unlink(missing_ok=True)
        with open(self.root / f"log{i}", "ab") as log:
            self.procs[i] = subprocess.Popen(
                [
                    *(sys.executable, "-m", "trio_foundation.cli", "kv", "serve"),
                    *("--id", str(i), "--peers", self.peers),
                    *("--data-dir", str(self.root / f"data{i}")),
                    *("--ready-file", str(ready)),
                    *("--election-timeout", str(self.election_timeout)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        while not ready.exists():
            if self.procs[i].poll() is not None:
                raise RuntimeError((self.root / f"log{i}").read_text())
            time.sleep(0.02)

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for i in list(self.procs):
            self.kill(i)


async def leader_of(client: RaftClient) -> int:
    while True:
        for node in client.members:
            s = await client.node_status(node, wait=0.3)
            if s is not None and s.role == "leader":
                return s.node
        await trio.sleep(0.02)


async def throughput(kv: RaftKV, clients: int, seconds: float) -> float:
    done = 0
    deadline = trio.current_time() + seconds

    async def one(c: int) -> None:
        nonlocal done
        k = 0
        while trio.current_time() < deadline:
            await kv.put(f"bench/{c}", str(k))
            k += 1
            done += 1

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for c in range(clients):
            nursery.start_soon(one, c)
    return done / (trio.current_time() - start)


async def read_latency(kv: RaftKV, seconds: float) -> tuple[float, float, int]:
    samples = []
    deadline = trio.current_time() + seconds
    while trio.current_time() < deadline:
        t = time.perf_counter()
        await kv.get("bench/0")
        samples.append(time.perf_counter() - t)
    samples.sort()
    return (
        statistics.median(samples) * 1000,
        samples[int(len(samples) * 0.99)] * 1000,
        len(samples),
    )


async def failover(cluster: Cluster, client: RaftClient, kv: RaftKV) -> float:
    await kv.put("fo", "before")
    leader = await leader_of(client)
    t = time.perf_counter()
    cluster.kill(leader)
    await kv.put("fo", "after")
    took = time.perf_counter() - t
    await trio.to_thread.run_sync(cluster.start, leader)
    await trio.sleep(1.0)
    return took


async def main(args: argparse.Namespace, root: Path) -> None:
    cluster = Cluster(root, args.election_timeout)
    try:
        for i in (1, 2, 3):
            cluster.start(i)
        async with open_raft_client(cluster.members, codec=KV_CODEC) as client:
            kv = RaftKV(client)
            with trio.fail_after(30):
                await kv.put("warmup", "x")
            r1 = await throughput(kv, 1, args.seconds)
            print(f"1 client    : {r1:8.1f} commits/s (synchronous puts)")
            r64 = await throughput(kv, 64, args.seconds)
            print(f"64 clients  : {r64:8.1f} commits/s")
            med, p99, n = await read_latency(kv, args.seconds)
            print(f"read latency: median {med:.2f} ms, p99 {p99:.2f} ms ({n} gets)")
            times = []
            for _ in range(args.failovers):
                with trio.fail_after(30):
                    times.append(await failover(cluster, client, kv))
            if times:
                print(
                    f"failover    : median {statistics.median(times) * 1000:.0f} ms,"
                    f" range {min(times) * 1000:.0f}-{max(times) * 1000:.0f} ms"
                    f" over {len(times)} SIGKILLs of the leader"
                    f" (election timeout {args.election_timeout} s)"
                )
    finally:
        cluster.stop_all()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--election-timeout", type=float, default=0.15)
    parser.add_argument("--dir", default=None, help="parent of the data dirs (default: cwd)")
    args = parser.parse_args()
    print(
        "uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    )
    with tempfile.TemporaryDirectory(prefix="bench-raft-", dir=args.dir or ".") as tmp:
        trio.run(main, args, Path(tmp))
    print(
        "uptime after: ", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    )


if __name__ == "__main__":
    cli()
