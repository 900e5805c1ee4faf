"""The Raft node on Trio: 3 members in one process over loopback TCP, durable logs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import trio
from raft_cluster import cluster, free_ports, until

from trio_foundation._errors import LeadershipLostError
from trio_foundation.coordination.consensus import (
    RaftNodeHandle,
    open_raft_client,
    open_raft_node,
)


async def test_submit_read_failover_and_restart(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        with trio.fail_after(10):
            leader = await c.leader()
            follower = next(i for i in c.nodes if i != leader)
            # submit through a follower: forwarded to the leader
            assert await c.nodes[follower].submit(("a", 1)) == 1
            assert await c.nodes[leader].submit(("a", 2)) == 3
            assert await c.nodes[follower].read("a") == 3  # linearizable through any node
            # every replica applies both (eventually; commit reaches followers by heartbeat)
            await until(lambda: all(m.values.get("a") == 3 for m in c.machines.values()))
            c.stop(leader)
            new = await c.leader()
            assert new != leader
            assert await c.nodes[new].read("a") == 3  # no acknowledged write lost
            assert await c.nodes[new].submit(("a", 10)) == 13
            async with trio.open_nursery() as n:
                await c.start(leader, n)  # restart from its data dir
                await until(lambda: c.machines[leader].values.get("a") == 13)
                n.cancel_scope.cancel()


async def test_a_client_outside_the_cluster(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        with trio.fail_after(10):
            async with open_raft_client(c.peers) as client:
                results = []

                async def add(k: int) -> None:
                    results.append(await client.submit(("x", 1)))

                async with trio.open_nursery() as n:
                    for k in range(20):
                        n.start_soon(add, k)
                assert sorted(results) == list(range(1, 21))  # each applied exactly once
                assert await client.read("x") == 20
                statuses = [await client.node_status(i) for i in c.peers]
                assert all(s is not None for s in statuses)
                assert len({s.leader for s in statuses if s is not None}) == 1


async def test_submit_many_applies_each_command_once_in_order(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        with trio.fail_after(30):
            leader = await c.leader()
            follower = next(i for i in c.nodes if i != leader)
            # on the leader (its own core), through a follower, and from a client
            assert await c.nodes[leader].submit_many([("b", 1)] * 5) == [1, 2, 3, 4, 5]
            assert await c.nodes[follower].submit_many([("b", 10), ("c", 1)]) == [15, 1]
            async with open_raft_client(c.peers) as client:
                assert await client.submit_many([("b", 1)] * 300) == list(range(16, 316))
                assert await client.submit_many([]) == []
                with pytest.raises(ValueError, match="at most 1024 commands"):
                    await client.submit_many([("b", 1)] * 1025)
                # a batch in flight while its leader stops: retried, each command
                # applied exactly once (sessions), the results those of the one apply
                async with trio.open_nursery() as n:
                    got: list[Any] = []

                    async def batch() -> None:
                        got.extend(await client.submit_many([("d", 1)] * 200))

                    n.start_soon(batch)
                    await trio.sleep(0.005)
                    c.stop(leader)
                assert sorted(got) == list(range(1, 201))
                assert await client.read("d") == 200
                assert await client.read("b") == 315


async def test_leadership_ends_before_another_node_leads(tmp_path: Path) -> None:
    async with cluster(tmp_path) as c:
        with trio.fail_after(15):
            leader = await c.leader()
            entered: list[tuple[int, int, float]] = []
            lost: list[tuple[int, float]] = []

            async def contend(i: int) -> None:
                try:
                    async with c.nodes[i].leadership() as term:
                        entered.append((i, term, trio.current_time()))
                        await trio.sleep_forever()
                except LeadershipLostError:
                    lost.append((i, trio.current_time()))

            async with trio.open_nursery() as n:
                for i in list(c.nodes):
                    n.start_soon(contend, i)
                await until(lambda: bool(entered))
                assert [i for i, _, _ in entered] == [leader]  # only the leader's body runs
                # partition the leader: it hears nothing and its messages are lost
                old = c.nodes[leader]
                old._on_message = lambda env: None  # type: ignore[method-assign]
                assert old.persister is not None
                old.persister.send = lambda dst, msg: True  # type: ignore[method-assign]
                await until(lambda: len(entered) >= 2)
                new, new_term, new_at = entered[1]
                assert new != leader and new_term > entered[0][1]
                # the old leader's body was cancelled before the new one started
                assert [i for i, _ in lost] == [leader]
                assert lost[0][1] < new_at
                n.cancel_scope.cancel()


# ----------------------------------------------------------------------------- cancellation


def _held(nodes: list[RaftNodeHandle], *, served: bool = False) -> list[str]:
    """What the nodes still hold for callers that left: their own calls at once;
    with ``served``, also the requests a node serves for other nodes (bounded by
    ``request_timeout``, since a remote caller's departure is not signalled)."""
    held = []
    for node in nodes:
        if node._calls:
            held.append(f"node {node.node_id}: forwarded calls {sorted(node._calls)}")
        if served and node.driver is not None and node.driver._pending:
            held.append(f"node {node.node_id}: driver waits {list(node.driver._pending)}")
    return held


async def test_submit_and_read_cancelled_at_random_points_leave_nothing_held(
    tmp_path: Path,
) -> None:
    # real time, fresh random offsets (no seed kept); the same calls under
    # verify.cancellation's harness: tests/test_consensus_cancellation.py
    rng = random.Random()
    async with cluster(tmp_path) as c:
        with trio.fail_after(30):
            await c.leader()
            nodes = list(c.nodes.values())
            acked = 0
            cancelled = 0
            for _ in range(60):
                node = rng.choice(nodes)
                with trio.move_on_after(rng.uniform(0, 0.01)) as scope:
                    choice = rng.random()
                    if choice < 0.4:
                        await node.submit(("k", 1))
                        acked += 1
                    elif choice < 0.6:
                        await node.submit_many([("k", 1), ("k", 1)])
                        acked += 2
                    else:
                        await node.read("k")
                cancelled += scope.cancelled_caught
                assert not _held(nodes), _held(nodes)
            await trio.sleep(2.5)  # request_timeout (2 s) bounds what is served for others
            assert not _held(nodes, served=True), _held(nodes, served=True)
            # a cancelled submit may or may not be applied; acknowledged ones are
            applied = await nodes[0].read("k")
            assert acked <= applied
            assert cancelled > 0  # the schedule did cancel calls in flight


async def test_a_command_that_does_not_fit_the_codec_is_refused_before_the_log(
    tmp_path: Path,
) -> None:
    from trio_foundation.coordination.raft_kv import KV_CODEC
    from trio_foundation.protocols.kv_machine import KVMachine

    peers = {1: ("127.0.0.1", free_ports(1)[0])}
    async with open_raft_node(1, peers, tmp_path / "one", KVMachine(), codec=KV_CODEC) as node:
        with trio.fail_after(10):
            await node.leader.wait_value(1)
            with pytest.raises(ValueError, match="does not fit the codec"):
                await node.submit("not a request")
            with pytest.raises(ValueError, match="does not fit the codec"):
                await node.read(42)
            assert node.status().role == "leader"  # the node is unharmed
