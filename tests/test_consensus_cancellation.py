"""submit, submit_many, read, leadership() and raft:// locks under the project's
cancellation harness (verify.cancellation).

The harness runs under ``MockClock(autojump_threshold=0)``, and the node does real
I/O (loopback sockets, fsync threads): a *ticker* task keeps a deadline 1 ms
ahead so that virtual time advances by at most 1 ms whenever every task waits
on I/O, and the cluster's timeouts are long in virtual time (T = 5 s). Each
test's ``max_step`` is about the step count of its scenario run without
injections (submit/read about 6,500; raft:// locks about 13,000; leadership
about 15,000).
"""

from __future__ import annotations

import tempfile
from contextlib import AsyncExitStack

import trio
from hypothesis import given, settings
from raft_cluster import Total, loopback_peers, open_raft_nodes

from trio_foundation import LeadershipLostError
from trio_foundation.coordination.connect import connect_lock_service
from trio_foundation.coordination.consensus import RaftNodeHandle
from trio_foundation.coordination.raft_lock import open_lock_node
from trio_foundation.protocols import lock_machine as lm
from trio_foundation.verify.cancellation import (
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)


def held(nodes: list[RaftNodeHandle]) -> list[str]:
    """What a node holds for its own callers (forwarded calls, driver requests)."""
    out = []
    for node in nodes:
        if node._calls:
            out.append(f"node {node.node_id}: calls {sorted(node._calls)}")
    return out


async def scenario(inj: Injector, tmp: str, nodes: list[RaftNodeHandle]) -> None:
    peers = loopback_peers(3)
    async with trio.open_nursery() as nursery:

        async def ticker() -> None:
            while True:  # noqa: ASYNC110 - a clock, not a wait for a condition
                await trio.sleep(0.001)

        nursery.start_soon(ticker)
        async with open_raft_nodes(
            peers, lambda i: f"{tmp}/{i}", Total, election_timeout=5.0, into=nodes
        ):
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
        max_step=8000,
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


# --------------------------------------------------------------------------- raft:// locks


def holding(machines: list[lm.ServiceMachine]) -> list[str]:
    """Locks held in the most advanced replica (it applied every lock command,
    each connection's closing ``LockClose`` included)."""
    if not machines:
        return []
    latest = max(machines, key=lambda m: m.locks.applied)
    return [f"{h.name} held by client {h.holder} (token {h.token})" for h in latest.locks.held()]


async def lock_scenario(inj: Injector, tmp: str, machines: list[lm.ServiceMachine]) -> None:
    peers = loopback_peers(3)
    url = "raft://" + ",".join(f"{h}:{p}" for h, p in peers.values())
    async with trio.open_nursery() as nursery:

        async def ticker() -> None:
            while True:  # noqa: ASYNC110 - a clock, not a wait for a condition
                await trio.sleep(0.001)

        nursery.start_soon(ticker)
        async with AsyncExitStack() as stack:
            nodes = []
            for i in peers:
                machine = lm.ServiceMachine()
                machines.append(machine)
                nodes.append(
                    await stack.enter_async_context(
                        open_lock_node(
                            i, peers, f"{tmp}/{i}", machine=machine, election_timeout=5.0
                        )
                    )
                )
            await nodes[0].leader.wait_value(lambda v: v is not None)
            for k in range(2):
                with inj.scope(f"connections{k}"):
                    async with connect_lock_service(url) as a, connect_lock_service(url) as b:
                        with inj.scope(f"acquire{k}"):
                            async with a.acquire(ttl=30, name="x"):
                                with inj.scope(f"rival{k}"), trio.move_on_after(1):
                                    async with b.acquire(ttl=30, name="x"):
                                        raise AssertionError("two holders")
                        with inj.scope(f"second{k}"):
                            async with b.acquire(ttl=30, name="x"):
                                await trio.sleep(0.5)
                # the connections closed: neither holds anything any more
                assert not holding(machines), holding(machines)
        nursery.cancel_scope.cancel()


@settings(max_examples=6, deadline=None, database=None)
@given(
    plan=injection_plans(
        min_injections=1,
        max_injections=3,
        max_step=14000,
        max_opened=8,
        max_after_open=60,
        max_delay=2.0,
    )
)
def test_raft_lock_acquire_and_release_under_injected_cancellation(plan: InjectionPlan) -> None:
    """Connections, acquires and bodies of ``connect_lock_service("raft://...")``
    cancelled at injected points: only ``Cancelled`` handling, no task left behind,
    and once the connections have closed the cluster holds no lock for them."""
    machines: list[lm.ServiceMachine] = []
    with tempfile.TemporaryDirectory() as tmp:
        result = run_injected(
            lambda inj: lock_scenario(inj, tmp, machines),
            plan,
            check=lambda: None,
            time_limit=5000.0,
            real_time_limit=90.0,
        )
    assert not holding(machines), holding(machines)
    LOCK_STATS.append((result.steps, len(result.applied)))


LOCK_STATS: list[tuple[int, int]] = []


def test_the_lock_injections_landed() -> None:
    """Reachability: injections hit open scopes of the lock scenario."""
    assert LOCK_STATS, "run after test_raft_lock_acquire_and_release_under_injected_cancellation"
    assert sum(applied for _, applied in LOCK_STATS) > 0, LOCK_STATS


# --------------------------------------------------------------------------- leadership()


async def leadership_scenario(
    inj: Injector, tmp: str, nodes: list[RaftNodeHandle], lost: list[BaseException]
) -> None:
    peers = loopback_peers(3)
    async with trio.open_nursery() as nursery:

        async def ticker() -> None:
            while True:  # noqa: ASYNC110 - a clock, not a wait for a condition
                await trio.sleep(0.001)

        nursery.start_soon(ticker)
        async with open_raft_nodes(
            peers, lambda i: f"{tmp}/{i}", Total, election_timeout=5.0, into=nodes
        ):
            leader_id = await nodes[0].leader.wait_value(lambda v: v is not None)
            leader = next(n for n in nodes if n.node_id == leader_id)
            follower = next(n for n in nodes if n.node_id != leader_id)
            baseline = {n.node_id: guards(n) for n in nodes}
            for k in range(2):
                try:
                    with inj.scope(f"lead{k}"):
                        async with leader.leadership() as term:
                            assert term == leader.core.term
                            assert guards(leader) == baseline[leader_id] + 1  # it counts
                            await trio.sleep(3.0)  # longer than one lease: renewed
                    with inj.scope(f"wait{k}"), trio.move_on_after(1.0):
                        async with follower.leadership():  # a follower's waits
                            raise AssertionError("a follower's body ran while another leads")
                except LeadershipLostError as exc:
                    lost.append(exc)
                # every helper task of the scopes that were left has ended
                await trio.sleep(0.01)
                assert {n.node_id: guards(n) for n in nodes} == baseline
        nursery.cancel_scope.cancel()


def guards(node: RaftNodeHandle) -> int:
    """Tasks the node runs for leadership() scopes (its nursery's ``_guard`` tasks)."""
    nursery = node.nursery
    if nursery is None:
        return 0
    return sum(1 for t in nursery.child_tasks if t.name.endswith("_guard"))


@settings(max_examples=4, deadline=None, database=None)
@given(
    plan=injection_plans(
        min_injections=1,
        max_injections=3,
        max_step=16000,
        max_opened=4,
        max_after_open=80,
        max_delay=3.0,
    )
)
def test_leadership_under_injected_cancellation(plan: InjectionPlan) -> None:
    """``node.leadership()`` entered, held and waited for, cancelled at injected
    points: only ``Cancelled`` handling escapes, its helper task never outlives the
    scope, and with no fault in the cluster ``LeadershipLostError`` is never raised
    (it is documented only for a lost leadership)."""
    nodes: list[RaftNodeHandle] = []
    lost: list[BaseException] = []
    with tempfile.TemporaryDirectory() as tmp:
        result = run_injected(
            lambda inj: leadership_scenario(inj, tmp, nodes, lost),
            plan,
            check=lambda: None,
            time_limit=5000.0,
            real_time_limit=90.0,
        )
    assert lost == []
    LEAD_STATS.append((result.steps, len(result.applied)))


LEAD_STATS: list[tuple[int, int]] = []


def test_the_leadership_injections_landed() -> None:
    """Reachability: injections hit open leadership scopes."""
    assert LEAD_STATS, "run after test_leadership_under_injected_cancellation"
    assert sum(applied for _, applied in LEAD_STATS) > 0, LEAD_STATS
