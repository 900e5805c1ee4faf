"""submit, submit_many and read under the project's cancellation harness (verify.cancellation).

The harness runs under ``MockClock(autojump_threshold=0)``, and the node does real
I/O (loopback sockets, fsync threads): a *ticker* task keeps a deadline 1 ms
ahead so that virtual time advances by at most 1 ms whenever every task waits
on I/O, and the cluster's timeouts are long in virtual time (T = 20 s).
"""

from __future__ import annotations

import socket
import tempfile
from contextlib import AsyncExitStack

import trio
from hypothesis import given, settings

from trio_foundation.coordination.consensus import RaftNodeHandle, open_raft_node
from trio_foundation.verify.cancellation import (
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)


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


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def held(nodes: list[RaftNodeHandle]) -> list[str]:
    """What a node holds for its own callers (forwarded calls, driver requests)."""
    out = []
    for node in nodes:
        if node._calls:
            out.append(f"node {node.node_id}: calls {sorted(node._calls)}")
    return out


async def scenario(inj: Injector, tmp: str, nodes: list[RaftNodeHandle]) -> None:
    peers = {i + 1: ("127.0.0.1", p) for i, p in enumerate(free_ports(3))}
    async with trio.open_nursery() as nursery:

        async def ticker() -> None:
            while True:  # noqa: ASYNC110 - a clock, not a wait for a condition
                await trio.sleep(0.001)

        nursery.start_soon(ticker)
        async with AsyncExitStack() as stack:
            for i in peers:
                nodes.append(
                    await stack.enter_async_context(
                        open_raft_node(i, peers, f"{tmp}/{i}", Counter(), election_timeout=20.0)
                    )
                )
            await nodes[0].leader.wait_value(lambda v: v is not None)
            for k, node in enumerate(nodes):
                with inj.scope(f"submit{k}"):
                    await node.submit(1)
                assert not held(nodes), held(nodes)
                with inj.scope(f"read{k}"):
                    await node.read(None)
                assert not held(nodes), held(nodes)
                with inj.scope(f"batch{k}"):
                    await node.submit_many([1, 1])
                assert not held(nodes), held(nodes)
        nursery.cancel_scope.cancel()


@settings(max_examples=8, deadline=None, database=None)
@given(
    plan=injection_plans(
        min_injections=1,
        max_injections=3,
        max_step=25000,
        max_opened=5,
        max_after_open=60,
        max_delay=2.0,
    )
)
def test_submit_and_read_under_injected_cancellation(plan: InjectionPlan) -> None:
    nodes: list[RaftNodeHandle] = []
    with tempfile.TemporaryDirectory() as tmp:
        result = run_injected(
            lambda inj: scenario(inj, tmp, nodes),
            plan,
            check=lambda: None,
            time_limit=5000.0,
            real_time_limit=60.0,
        )
    assert not held(nodes)
    STATS.append((result.steps, len(result.applied)))


STATS: list[tuple[int, int]] = []


def test_the_injections_landed() -> None:
    """Reachability: across the runs above, actions were applied to open scopes."""
    assert STATS, "run after test_submit_and_read_under_injected_cancellation"
    assert sum(applied for _, applied in STATS) > 0, STATS
