"""What a ``RaftNodeMonitor`` costs a Raft member.

Run ``python benchmarks/bench_raft_monitor.py [--runs N]``. It prints:

* ``on_step``: the monitor's trace hook per step, best of 3 runs of 100 000 calls, for a
  message step with no effects (the common case: a heartbeat or an ack) and for a
  proposal step (request and its reply; the request, reply and transition objects
  are built in the timed loop too);
* ``submits/s``: a one-member node (durable log on the current disk), 32 tasks
  submitting 4000 commands, without and with a monitor, ``--runs`` pairs (which of the
  two goes first alternates).

The machine may be shared: the runs alternate so that load hits both alike; read
the spread, not one figure.
"""

from __future__ import annotations

import argparse
import itertools
import random
import socket
import tempfile
import time
import timeit

import trio

from trio_foundation.coordination.consensus import open_raft_node
from trio_foundation.coordination.raft_monitor import RaftNodeMonitor
from trio_foundation.protocols import raft as core
from trio_foundation.protocols.effects import ClientRequest, Reply
from trio_foundation.runtime.driver import Transition


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def apply(self, delta: int) -> int:
        self.n += delta
        return self.n

    def query(self, _: object) -> int:
        return self.n

    def snapshot(self) -> bytes:
        return str(self.n).encode()

    def restore(self, data: bytes) -> None:
        self.n = int(data)


def bench_on_step() -> None:
    node = core.RaftNode(1, [1, 2, 3], Counter(), election_timeout=0.3)
    node.on_start(0.0, random.Random(0))
    monitor = RaftNodeMonitor()
    monitor.watch(node)
    plain = Transition(0.0, None, (), None)
    keys = itertools.count()

    def message() -> None:
        monitor.on_step(plain)

    def proposal() -> None:
        key = next(keys)
        request = ClientRequest(key, "propose", b"x")
        monitor.on_step(Transition(0.0, request, (Reply(key, b"r"),), None))

    for name, call in (("message step", message), ("proposal step", proposal)):
        best = min(timeit.repeat(call, number=100_000, repeat=3)) / 100_000
        print(f"on_step, {name}: {best * 1e6:.2f} us")


async def submits_per_second(data_dir: str, monitor: RaftNodeMonitor | None) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    total, clients = 4000, 32
    async with open_raft_node(
        1, {1: ("127.0.0.1", port)}, data_dir, Counter(), monitor=monitor
    ) as node:
        await node.leader.wait_value(lambda v: v == 1)

        async def worker() -> None:
            for _ in range(total // clients):
                await node.submit(1)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(worker)
        return total / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bench_on_step()
    for run in range(args.runs):
        pair: list[tuple[str, RaftNodeMonitor | None]] = [("off", None), ("on", RaftNodeMonitor())]
        for label, monitor in pair if run % 2 == 0 else pair[::-1]:  # alternate who goes first
            with tempfile.TemporaryDirectory(dir=".") as tmp:
                rate = trio.run(submits_per_second, tmp, monitor)
            print(f"submits/s, monitor {label}: {rate:.0f}", flush=True)


if __name__ == "__main__":
    main()
