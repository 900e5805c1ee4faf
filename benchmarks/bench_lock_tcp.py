"""Acquire+release round trips per second over loopback TCP, against a server *process*.

Run ``python benchmarks/bench_lock_tcp.py`` (``--quick`` for a shorter run).
Each client task has its own connection and loops ``async with
service.acquire(ttl=5, name=...): pass`` — one acquire request, its grant, and
the release (a message sent without waiting) — on a lock name of its own (so
the figure is the service's throughput, not contention on one name), recording
each cycle's latency. Rows, for 1 and 16 clients:

* ``raw trio``: the floor — a separate process running ``trio.serve_tcp``
  echoing 16-byte requests, each client a ``trio.open_tcp_stream`` doing
  sequential request/reply; no framing, codec, handshake or core.
* ``lock serve``: ``foundation lock serve`` in a separate process, data dir in
  a temporary directory, tokens reserved 1000 per fsync (the default).
* ``lock serve, fsync per grant``: the same with ``--token-block 1``: every
  grant waits for one fdatasync of the state log before it is sent.
* ``PySyncObj ReplLockManager, N node(s)`` (``--pysyncobj``, needs the ``bench``
  extra: ``pysyncobj`` 0.3.17): PySyncObj's Raft-replicated lock on a loopback
  cluster of 1 (and 3) processes, tuned as DESIGN.md says (``appendEntriesPeriod``
  and ``autoTickPeriod`` 10 ms, election timeouts 150-450 ms). PySyncObj's client
  must be a cluster member, so one client only: a member process loops
  ``tryAcquire(name, sync=True)`` + ``release(name, sync=True)`` (two Raft
  commits) and reports its count and latencies. Its lock has no fencing token
  and compares client wall clocks (``autoUnlockTime``).

Each row is measured ``--repeat`` times for ``--seconds`` each; the best run is
printed (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from trio_foundation.coordination.tcp_lock import open_remote_lock_service

REQUEST = b"0123456789abcdef"

ECHO_SERVER = """
import functools, sys, trio
async def echo(stream):
    try:
        while data := await stream.receive_some(65536):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass
async def main():
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, echo, 0, host="127.0.0.1")
        listeners = await nursery.start(serve)
        port = listeners[0].socket.getsockname()[1]
        print(f"127.0.0.1:{port}", flush=True)
trio.run(main)
"""


# One PySyncObj cluster member. With "bench SECONDS" it waits for a leader, warms up,
# then loops acquire+release for SECONDS and prints "count elapsed" and one latency
# (seconds) per line; otherwise it just serves until killed.
PYSYNCOBJ_NODE = """
import sys, time
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.batteries import ReplLockManager

me, partners, mode = sys.argv[1], [p for p in sys.argv[2].split(",") if p], sys.argv[3]
conf = SyncObjConf(
    appendEntriesPeriod=0.01, autoTickPeriod=0.01, raftMinTimeout=0.15, raftMaxTimeout=0.45,
    connectionTimeout=1.0, dynamicMembershipChange=False,
)
locks = ReplLockManager(autoUnlockTime=30)
node = SyncObj(me, partners, consumers=[locks], conf=conf)
if mode != "bench":
    while True:
        time.sleep(3600)
seconds = float(sys.argv[4])
deadline = time.monotonic() + 30
while not (node.isReady() and node._getLeader() is not None):
    if time.monotonic() > deadline:
        sys.exit("no leader within 30 s")
    time.sleep(0.01)
for _ in range(3):  # warm-up
    assert locks.tryAcquire("bench", sync=True, timeout=10)
    locks.release("bench", sync=True, timeout=10)
latencies = []
start = time.perf_counter()
end = start + seconds
while (t0 := time.perf_counter()) < end:
    assert locks.tryAcquire("bench", sync=True, timeout=10)
    locks.release("bench", sync=True, timeout=10)
    latencies.append(time.perf_counter() - t0)
print(len(latencies), time.perf_counter() - start)
print("\\n".join(map(repr, latencies)), flush=True)
node.destroy()
"""


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def pysyncobj_row(nodes: int, args: argparse.Namespace) -> tuple[float, float, float]:
    """The best of ``args.repeat`` runs of one member looping acquire+release."""
    best: tuple[float, list[float]] | None = None
    for _ in range(args.repeat):
        addresses = [f"127.0.0.1:{p}" for p in free_ports(nodes)]
        others = []
        try:
            for i in range(1, nodes):
                partners = ",".join(a for a in addresses if a != addresses[i])
                others.append(
                    subprocess.Popen(
                        [sys.executable, "-c", PYSYNCOBJ_NODE, addresses[i], partners, "serve"],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            partners = ",".join(addresses[1:])
            done = subprocess.run(
                [sys.executable, "-c", PYSYNCOBJ_NODE, addresses[0], partners, "bench",
                 str(args.seconds)],
                capture_output=True, text=True, timeout=120, check=True,
            )  # fmt: skip
        finally:
            for proc in others:
                proc.kill()
                proc.wait()
        head, *rest = done.stdout.splitlines()
        count, elapsed = head.split()
        result = (int(count) / float(elapsed), [float(x) for x in rest if x])
        if best is None or result[0] > best[0]:
            best = result
    assert best is not None
    rate, lat = best
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    return rate, q[49] * 1e6, q[98] * 1e6


def start(cmd: list[str], ready: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if ready is None:
        assert proc.stdout is not None
        return proc, proc.stdout.readline().decode().strip()
    deadline = time.monotonic() + 30
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("the lock server did not start")
        time.sleep(0.05)
    return proc, ready.read_text().strip()


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Start:
    """All clients connect and warm up, then loop from one start until one deadline."""

    def __init__(self, clients: int, seconds: float) -> None:
        self.waiting = clients
        self.seconds = seconds
        self.go = trio.Event()
        self.deadline = 0.0

    async def ready(self) -> float:
        self.waiting -= 1
        if self.waiting == 0:
            self.deadline = time.perf_counter() + self.seconds
            self.go.set()
        await self.go.wait()
        return self.deadline


Client = Callable[[str, int, Start, list[float]], Awaitable[int]]


async def raw_client(address: str, index: int, start: Start, latencies: list[float]) -> int:
    host, port = address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    done = 0
    deadline = await start.ready()
    async with stream:
        while (t0 := time.perf_counter()) < deadline:
            await stream.send_all(REQUEST)
            got = 0
            while got < len(REQUEST):
                got += len(await stream.receive_some(65536))
            latencies.append(time.perf_counter() - t0)
            done += 1
    return done


async def lock_client(address: str, index: int, start: Start, latencies: list[float]) -> int:
    done = 0
    async with open_remote_lock_service(f"tcp://{address}") as service:
        async with service.acquire(ttl=5, name=f"bench-{index}"):
            pass  # warm-up: the name's core exists on both sides
        deadline = await start.ready()
        while (t0 := time.perf_counter()) < deadline:
            async with service.acquire(ttl=5, name=f"bench-{index}"):
                pass
            latencies.append(time.perf_counter() - t0)
            done += 1
    return done


async def measure(
    client: Client, address: str, clients: int, seconds: float
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counts: list[int] = []

    start = Start(clients, seconds)

    async def one(i: int) -> None:
        counts.append(await client(address, i, start, latencies))

    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(one, i)
    # every client stops its loop at the deadline; the last cycle may end after it
    elapsed = time.perf_counter() - (start.deadline - seconds)
    return sum(counts) / elapsed, latencies


def row(
    name: str, client: Client, address: str, clients: int, args: argparse.Namespace
) -> tuple[float, float, float]:
    best: tuple[float, list[float]] | None = None
    for _ in range(args.repeat):
        result = trio.run(measure, client, address, clients, args.seconds)
        if best is None or result[0] > best[0]:
            best = result
    assert best is not None
    rate, lat = best
    q = statistics.quantiles(lat, n=100)
    return rate, q[49] * 1e6, q[98] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="0.5 s, 1 repeat")
    parser.add_argument(
        "--pysyncobj",
        type=int,
        nargs="*",
        default=None,
        metavar="NODES",
        help="also measure PySyncObj's ReplLockManager on clusters of NODES (default: 1 3)",
    )
    args = parser.parse_args()
    if args.pysyncobj == []:
        args.pysyncobj = [1, 3]
    if args.quick:
        args.seconds, args.repeat = 0.5, 1
    results: list[tuple[int, str, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        servers: list[tuple[str, list[str], Path | None, Client]] = [
            ("raw trio", [sys.executable, "-c", ECHO_SERVER], None, raw_client),
        ]
        for label, block in (("lock serve", "1000"), ("lock serve, fsync per grant", "1")):
            ready = Path(tmp) / f"ready-{block}"
            cmd = [sys.executable, "-m", "trio_foundation.cli", "lock", "serve"]
            cmd += ["--listen", "127.0.0.1:0", "--data-dir", str(Path(tmp) / f"data-{block}")]
            cmd += ["--ready-file", str(ready), "--token-block", block]
            servers.append((label, cmd, ready, lock_client))
        for label, cmd, ready, client in servers:
            proc, address = start(cmd, ready)
            try:
                for clients in (1, 16):
                    rate, p50, p99 = row(label, client, address, clients, args)
                    results.append((clients, label, rate, p50, p99))
            finally:
                stop(proc)
    for nodes in args.pysyncobj or ():
        label = f"PySyncObj ReplLockManager, {nodes} node{'s' if nodes > 1 else ''}"
        rate, p50, p99 = pysyncobj_row(nodes, args)
        results.append((1, label, rate, p50, p99))
    floor = {c: r for c, label, r, _, _ in results if label == "raw trio"}
    ours = {c: r for c, label, r, _, _ in results if label == "lock serve"}
    print("| clients | row | acquire+release/s | vs raw | vs lock serve | p50 µs | p99 µs |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for clients, label, rate, p50, p99 in sorted(results, key=lambda r: r[0]):
        print(
            f"| {clients} | {label} | {rate:,.0f} | {rate / floor[clients]:.3f}x "
            f"| {rate / ours[clients]:.3f}x | {p50:,.0f} | {p99:,.0f} |"
        )
    for nodes in args.pysyncobj or ():
        label = f"PySyncObj ReplLockManager, {nodes} node{'s' if nodes > 1 else ''}"
        theirs = next(r for c, lab, r, _, _ in results if lab == label)
        print(f"lock serve / {label}, 1 client: {ours[1] / theirs:,.1f}x")


if __name__ == "__main__":
    main()
