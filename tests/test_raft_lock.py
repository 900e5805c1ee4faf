"""The lock service of a Raft cluster under leader crashes: fencing and inherited leases.

Three members run in this process (``open_lock_node`` on free loopback ports, real
data dirs); a member is killed by cancelling its scope (its peers see a crash; what
it saved stays on disk) and restarted from its data dir. Clients reach the cluster
through ``connect_lock_service("raft://...")``, some through one loopback proxy per
member so that their connections can be cut.

Checked: no two clients are ever entitled to the lock at once (the entitled
interval is the body of ``async with acquire``, which the client leaves before its
lease's safe deadline), fencing tokens increase in grant order and every token is
the log index of the entry that granted it, and a new leader does not expire a
lease it inherited before the holder's deadline.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from loopback_proxy import LoopbackProxy
from raft_cluster import loopback_peers
from test_lock_conformance import History, Proxies

from trio_foundation import LeaseLostError, StaleTokenError
from trio_foundation.coordination.connect import connect_lock_service
from trio_foundation.coordination.consensus import RaftNodeHandle
from trio_foundation.coordination.lease_lock import Lease, LeaseLock
from trio_foundation.coordination.raft_lock import open_lock_node
from trio_foundation.protocols import lock_machine as lm
from trio_foundation.protocols.lease_lock import FencedResource
from trio_foundation.protocols.raft import Proposal


class Cluster:
    """Three lock members that can be killed and restarted."""

    def __init__(self, tmp: Path, nursery: trio.Nursery) -> None:
        self.tmp = tmp
        self.nursery = nursery
        self.peers = loopback_peers(3)
        self.nodes: dict[int, RaftNodeHandle] = {}
        self.machines: dict[int, lm.ServiceMachine] = {}
        self.scopes: dict[int, trio.CancelScope] = {}
        self.stopped: dict[int, trio.Event] = {}

    @property
    def url(self) -> str:
        return "raft://" + ",".join(f"{h}:{p}" for h, p in self.peers.values())

    async def start(self, i: int) -> None:
        async def run(task_status: trio.TaskStatus[None]) -> None:
            stopped = self.stopped[i] = trio.Event()
            try:
                with trio.CancelScope() as scope:
                    self.scopes[i] = scope
                    machine = self.machines[i] = lm.ServiceMachine()
                    async with open_lock_node(
                        i, self.peers, str(self.tmp / f"m{i}"), machine=machine
                    ) as node:
                        self.nodes[i] = node
                        task_status.started()
                        await trio.sleep_forever()
            finally:
                self.nodes.pop(i, None)
                stopped.set()

        await self.nursery.start(run)

    async def kill(self, i: int) -> None:
        self.scopes[i].cancel()
        await self.stopped[i].wait()

    async def leader(self) -> int:
        while True:
            for i, node in self.nodes.items():
                if node.core.role == "leader":
                    return i
            await trio.sleep(0.01)


@asynccontextmanager
async def cluster(tmp: Path) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp, nursery)
        for i in c.peers:
            await c.start(i)
        yield c
        nursery.cancel_scope.cancel()


def granted_by(c: Cluster, token: int, name: str) -> bool:
    """Whether log entry ``token`` (on any live member) is an acquire of ``name``."""
    for node in c.nodes.values():
        entry = node.core.entry(token)
        if entry is not None and isinstance(entry.command, Proposal):
            return (
                b"lock_acquire" in entry.command.command and name.encode() in entry.command.command
            )
    return False


@pytest.mark.timeout(60)
async def test_a_new_leader_does_not_expire_an_inherited_lease_early(tmp_path: Path) -> None:
    """Holder A is cut off and the leader killed at once: B gets the lock only after
    A has left its body, although the new leader never saw A's last renewal arrive.
    (A keeper that expired inherited leases at takeover grants B about an election
    timeout after the kill, while A is entitled for most of its 4 s ttl.)"""
    history = History()
    with trio.fail_after(45):
        async with cluster(tmp_path) as c, trio.open_nursery() as nursery:
            proxies = []
            for addr in c.peers.values():
                proxy = LoopbackProxy(addr)
                await nursery.start(proxy.run)
                proxies.append(proxy)
            cut = Proxies(proxies)
            through = "raft://" + ",".join(
                f"{p.listen_address[0]}:{p.listen_address[1]}" for p in proxies
            )  # type: ignore[index]
            old = await c.leader()
            leases: dict[str, Lease] = {}
            killed = trio.Event()

            async def rival(b: LeaseLock) -> None:
                await killed.wait()
                # a short ttl keeps B's backoff short (at most its ttl): it asks often
                async with b.acquire(ttl=1, name="job") as lb:
                    leases["b"] = lb
                    async with history.hold(1, lb):
                        pass

            async with (
                connect_lock_service(through) as a,
                connect_lock_service(c.url) as b,
                trio.open_nursery() as rivals,
            ):
                rivals.start_soon(rival, b)
                with pytest.raises(LeaseLostError):
                    async with a.acquire(ttl=4, name="job") as la:
                        async with history.hold(0, la):
                            while la.renewals < 1:  # noqa: ASYNC110 - renewed every third of the validity
                                await trio.sleep(0.05)
                            cut.refusing = True
                            cut.cut_all()
                            await c.kill(old)
                            killed_at = trio.current_time()
                            killed.set()
                            await trio.sleep(30)  # cancelled when renewals stop
                cut.refusing = False  # A's connection closes through the proxies
            new = await c.leader()
            lb = leases["b"]
            fenced_by_index = granted_by(c, lb.token, "job")
            nursery.cancel_scope.cancel()
    assert new != old
    assert la.renewals >= 1
    assert len(history.holds) == 2
    assert history.violations() == []
    a_end, b_start = history.holds[0].end, history.holds[1].start
    assert b_start >= a_end
    assert b_start - killed_at < 4 + 5, "the lock never came free"
    assert lb.token > la.token and fenced_by_index


@pytest.mark.slow  # ~9 s of crashes and contention; run with -m slow
@pytest.mark.timeout(90)
async def test_contention_across_leader_crashes_keeps_mutual_exclusion(tmp_path: Path) -> None:
    """Three clients contend while the leader is killed and restarted three times;
    every hold writes to a fenced resource. No overlap, tokens increase, no stale
    write accepted, and the lock kept being granted after each crash."""
    history = History()
    resource = FencedResource()
    refused = 0
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    crashes: list[float] = []
    with trio.fail_after(70):
        async with cluster(tmp_path) as c:

            async def client(k: int, stop: trio.Event) -> None:
                nonlocal refused
                async with connect_lock_service(c.url) as locks:
                    while not stop.is_set():
                        try:
                            async with locks.acquire(ttl=1.0, name="x") as lease:
                                async with history.hold(k, lease):
                                    try:
                                        resource.check(lease.token)
                                    except StaleTokenError:
                                        refused += 1
                                    await trio.sleep(rng.uniform(0, 0.05))
                        except LeaseLostError:
                            history.lost += 1
                        await trio.sleep(rng.uniform(0, 0.02))

            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                for k in range(3):
                    nursery.start_soon(client, k, stop)
                for _ in range(3):
                    await trio.sleep(rng.uniform(0.8, 1.5))
                    victim = await c.leader()
                    await c.kill(victim)
                    crashes.append(trio.current_time())
                    await trio.sleep(rng.uniform(0.2, 0.6))
                    await c.start(victim)
                await trio.sleep(1.5)
                stop.set()
    print(f"seed {seed}: {len(history.holds)} holds, {history.lost} lost, {len(crashes)} crashes")
    assert history.violations() == [], f"seed {seed}"
    assert refused == 0, f"seed {seed}"
    for at in crashes:  # the service came back after every crash
        assert any(h.start > at for h in history.holds), f"seed {seed}: nothing after {at}"
    assert len(history.holds) >= 10, f"seed {seed}: too little happened"


@pytest.mark.slow  # ~7 s; run with -m slow
@pytest.mark.timeout(60)
async def test_a_partitioned_leader_cannot_keep_or_expire_a_lease(tmp_path: Path) -> None:
    """Every member reaches every other through its own proxy (one per direction);
    the leader is cut off from both peers while A, which knows only that member, holds
    the lock through it. A's renewals cannot commit, so A's body is cancelled before
    its deadline; the majority elects a leader that waits A's ttl out before B gets the
    lock; after the heal every replica holds the same locks (the old leader's
    uncommitted entries were replaced)."""
    real = loopback_peers(3)
    history = History()
    with trio.fail_after(50):
        async with trio.open_nursery() as nursery:
            links: dict[tuple[int, int], LoopbackProxy] = {}
            for i in real:
                for j in real:
                    if i != j:
                        proxy = links[(i, j)] = LoopbackProxy(real[j])
                        await nursery.start(proxy.run)
            machines = {i: lm.ServiceMachine() for i in real}
            nodes: dict[int, RaftNodeHandle] = {}

            async def member(i: int, task_status: trio.TaskStatus[None]) -> None:
                peers = {j: real[j] if j == i else links[(i, j)].listen_address for j in real}
                async with open_lock_node(
                    i,
                    peers,  # type: ignore[arg-type]
                    tmp_path / f"m{i}",
                    machine=machines[i],
                    listen=real[i],
                ) as node:
                    nodes[i] = node
                    task_status.started()
                    await trio.sleep_forever()

            for i in real:
                await nursery.start(member, i)
            old = await nodes[1].leader.wait_value(lambda v: v is not None)
            cut = [p for (i, j), p in links.items() if old in (i, j)]
            url = "raft://" + ",".join(f"{i}={h}:{p}" for i, (h, p) in real.items())
            leases: dict[str, Lease] = {}
            partitioned = trio.Event()

            async def rival(b: LeaseLock) -> None:
                await partitioned.wait()
                async with b.acquire(ttl=1, name="job") as lb:
                    leases["b"] = lb
                    async with history.hold(1, lb):
                        pass

            only_old = (
                f"raft://{old}={real[old][0]}:{real[old][1]}"  # A reaches the old leader only
            )
            async with (
                connect_lock_service(only_old) as a,
                connect_lock_service(url) as b,
                trio.open_nursery() as rivals,
            ):
                rivals.start_soon(rival, b)
                with pytest.raises(LeaseLostError):
                    async with a.acquire(ttl=3, name="job") as la:
                        async with history.hold(0, la):
                            for p in cut:
                                p.refusing = True
                                p.cut_all()
                            partitioned.set()
                            await trio.sleep(30)  # cancelled when renewals stop
                while "b" not in leases:  # noqa: ASYNC110 - B's hold, in the rivals nursery
                    await trio.sleep(0.05)
                new = next(i for i, n in nodes.items() if n.core.role == "leader" and i != old)
                for p in cut:  # heal: the old leader rejoins as a follower (and A can close)
                    p.refusing = False
            want = nodes[new].core.commit_index
            while not all(n.core.last_applied >= want for n in nodes.values()):  # noqa: ASYNC110
                await trio.sleep(0.05)
            held = {i: [(h.name, h.token) for h in m.locks.held()] for i, m in machines.items()}
            nursery.cancel_scope.cancel()
    assert history.violations() == []
    assert len(history.holds) == 2 and history.holds[1].start >= history.holds[0].end
    assert leases["b"].token > la.token
    assert len({tuple(v) for v in held.values()}) == 1, held  # the replicas agree
