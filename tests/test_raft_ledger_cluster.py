"""The replicated ledger on a 3-member cluster whose leader is killed and cut off.

Three ``open_lock_node`` members run in this process (free loopback ports, real
data dirs, durable writes); a member is killed by cancelling its scope and
restarted from its data dir. Clients (``open_raft_ledger``) run concurrent
transfers, holds, settles and releases meanwhile.

Checked after every run:

* **equal state at equal index**: every member records a digest of its ledger
  snapshot after each ledger entry it applies (a restarted member applies the
  entries after its snapshot again: the digest must match what it, and every
  other member, recorded at that index), and at the end every member's ledger
  (balances, holds, journal, keys) is byte-equal;
* **conservation**: balances + open holds == credits minted, none negative, and
  the journal replays from its checkpoint to the balances;
* **applied once**: the journal's entries are exactly the ones whose ``Ok`` the
  clients received (no call was cancelled here, so each write either answered
  ``Ok(seq)`` with its own entry or was refused and wrote none): a retried
  submit applied twice would leave an entry no client was told of.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from loopback_proxy import LoopbackProxy
from raft_cluster import loopback_peers

from trio_foundation.coordination.consensus import RaftNodeHandle
from trio_foundation.coordination.raft_ledger import RaftLedger, open_raft_ledger
from trio_foundation.coordination.raft_lock import open_lock_node
from trio_foundation.protocols import ledger as led
from trio_foundation.protocols import lock_machine as lm
from trio_foundation.protocols.auction import AuctionConfig, Auctioneer, Bid
from trio_foundation.protocols.effects import Send

ACCOUNTS = [f"agent{i}" for i in range(6)]
START = 1_000


class Recording:
    """A member's service machine that records a digest of its ledger after each
    ledger entry it applies, by log index (the same dict across restarts)."""

    def __init__(self, digests: dict[int, bytes], divergences: list[str], node: int) -> None:
        self.inner = lm.ServiceMachine()
        self.digests = digests
        self.divergences = divergences
        self.node = node

    @property
    def locks(self) -> lm.LockMachine:
        return self.inner.locks

    @property
    def ledger(self) -> led.Ledger:
        return self.inner.ledger

    def apply_at(self, index: int, command: Any) -> Any:
        result = self.inner.apply_at(index, command)
        if isinstance(command, tuple) and command[0] == lm.LEDGER_TAG:
            digest = hashlib.sha256(self.inner.ledger.snapshot()).digest()
            seen = self.digests.setdefault(index, digest)
            if seen != digest:
                self.divergences.append(f"member {self.node} re-applied index {index} differently")
        return result

    def apply(self, command: Any) -> Any:
        return self.inner.apply(command)

    def query(self, query: Any) -> Any:
        return self.inner.query(query)

    def snapshot(self) -> bytes:
        return self.inner.snapshot()

    def restore(self, data: bytes) -> None:
        self.inner.restore(data)


class Cluster:
    """Three members that can be killed, restarted and cut off from each other.

    Member ``i`` reaches member ``j`` through its own proxy ``links[(i, j)]``, so
    a member can be partitioned from its peers (clients dial the members directly).
    """

    def __init__(self, tmp: Path, nursery: trio.Nursery) -> None:
        self.tmp = tmp
        self.nursery = nursery
        self.real = loopback_peers(3)
        self.links: dict[tuple[int, int], LoopbackProxy] = {}
        self.nodes: dict[int, RaftNodeHandle] = {}
        self.machines: dict[int, Recording] = {}
        self.digests: dict[int, dict[int, bytes]] = {i: {} for i in self.real}
        self.divergences: list[str] = []
        self.scopes: dict[int, trio.CancelScope] = {}
        self.stopped: dict[int, trio.Event] = {}

    @property
    def url(self) -> str:
        return "raft://" + ",".join(f"{i}={h}:{p}" for i, (h, p) in self.real.items())

    async def setup(self) -> None:
        for i in self.real:
            for j in self.real:
                if i != j:
                    proxy = self.links[(i, j)] = LoopbackProxy(self.real[j])
                    await self.nursery.start(proxy.run)
        for i in self.real:
            await self.start(i)

    async def start(self, i: int) -> None:
        async def run(task_status: trio.TaskStatus[None]) -> None:
            stopped = self.stopped[i] = trio.Event()
            peers = {
                j: self.real[j] if j == i else self.links[(i, j)].listen_address for j in self.real
            }
            try:
                with trio.CancelScope() as scope:
                    self.scopes[i] = scope
                    machine = self.machines[i] = Recording(self.digests[i], self.divergences, i)
                    async with open_lock_node(
                        i,
                        peers,  # type: ignore[arg-type]
                        self.tmp / f"m{i}",
                        machine=machine,  # type: ignore[arg-type]
                        listen=self.real[i],
                        max_log_entries=64,  # snapshots and log compaction happen
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

    def cut(self, i: int, refusing: bool) -> None:
        for (a, b), proxy in self.links.items():
            if i in (a, b):
                proxy.refusing = refusing
                if refusing:
                    proxy.cut_all()

    async def leader(self, other_than: int | None = None) -> int:
        while True:
            for i, node in self.nodes.items():
                if node.core.role == "leader" and i != other_than:
                    return i
            await trio.sleep(0.01)

    async def settled(self) -> None:
        """Wait until every member applied the leader's commit index."""
        while True:
            leader = await self.leader()
            want = self.nodes[leader].core.commit_index
            if len(self.nodes) == 3 and all(
                n.core.last_applied >= want for n in self.nodes.values()
            ):
                return
            await trio.sleep(0.05)


@asynccontextmanager
async def cluster(tmp: Path) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp, nursery)
        await c.setup()
        yield c
        nursery.cancel_scope.cancel()


class Told:
    """What the clients were told: the seq of every Ok that wrote an entry."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.refused: dict[str, int] = {}
        self.kinds: dict[str, int] = {}

    def ok(self, kind: str, seq: int) -> None:
        self.seqs.append(seq)
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def no(self, exc: led.LedgerError) -> None:
        self.refused[exc.code] = self.refused.get(exc.code, 0) + 1

    @property
    def answered(self) -> int:
        return len(self.seqs) + sum(self.refused.values())


async def worker(url: str, rng: random.Random, me: int, stop: trio.Event, told: Told) -> None:
    """Random transfers, holds and settles/releases of its own holds, through its own
    client, until ``stop`` (at most 2,000 operations)."""
    async with open_raft_ledger(url, request_timeout=0.5) as ledger:
        await _work(ledger, rng, me, stop, told)


async def _work(
    ledger: RaftLedger, rng: random.Random, me: int, stop: trio.Event, told: Told
) -> None:
    open_holds: list[str] = []
    for n in range(2000):
        if stop.is_set():
            return
        r = rng.random()
        try:
            with trio.fail_after(20):
                if open_holds and r < 0.3:
                    hold = open_holds.pop(rng.randrange(len(open_holds)))
                    if rng.random() < 0.6:
                        payee = rng.choice(ACCOUNTS)
                        told.ok("settle", await ledger.settle(hold, payee, rng.randrange(0, 40)))
                    else:
                        told.ok("release", await ledger.release(hold))
                elif r < 0.5:
                    hold = f"w{me}-h{n}"
                    told.ok(
                        "hold", await ledger.hold(hold, rng.choice(ACCOUNTS), rng.randrange(1, 60))
                    )
                    open_holds.append(hold)
                else:
                    src, dst = rng.choice(ACCOUNTS), rng.choice(ACCOUNTS)
                    key = f"w{me}-t{n}" if rng.random() < 0.5 else ""
                    amount = rng.randrange(1, 400) if rng.random() < 0.9 else 5 * START  # refused
                    told.ok("transfer", await ledger.transfer(src, dst, amount, key=key))
        except led.LedgerError as exc:
            told.no(exc)


def check_ledgers(c: Cluster, told: Told, minted: int) -> led.Ledger:
    assert c.divergences == []
    snaps = {i: m.ledger.snapshot() for i, m in c.machines.items()}
    assert len(set(snaps.values())) == 1, "members hold different ledgers"
    # equal state at equal index, across members
    common = set.intersection(*(set(d) for d in c.digests.values()))
    assert len(common) > 20, len(common)
    for index in common:
        assert len({c.digests[i][index] for i in c.digests}) == 1, index
    ledger = next(iter(c.machines.values())).ledger
    balances, holds = ledger.balances(), ledger.holds()
    assert ledger.supply == minted
    assert sum(balances.values()) + sum(n for _, n in holds.values()) == minted
    assert min(balances.values()) >= 0
    base_bal, base_holds = ledger.checkpoint()
    assert led.replay(base_bal, base_holds, ledger.journal) == (balances, holds)
    # applied once: the journal (whole: the window is not full) is what the clients saw
    setup = len(ACCOUNTS) * 2
    assert ledger.seq < ledger.config.journal_window
    assert sorted(e.seq for e in ledger.journal[setup:]) == sorted(told.seqs)
    return ledger


@pytest.mark.timeout(90)
async def test_concurrent_ledger_traffic_while_the_leader_is_killed_and_cut(
    tmp_path: Path,
) -> None:
    """Four clients run transfers, holds and settles; the leader is killed and
    restarted, then the next leader is cut off from its peers and healed; after
    each fault the test waits until the clients got 10 more answers (so every fault
    lands in the middle of the traffic, and the cluster makes progress under it)."""
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    told = Told()
    with trio.fail_after(75):
        async with cluster(tmp_path) as c, open_raft_ledger(c.url) as setup:
            for name in ACCOUNTS:
                await setup.open(name)
                await setup.mint(name, START)
            events: list[tuple[str, int]] = []  # (event, operations answered before it)
            stop = trio.Event()

            async def progress(what: str) -> None:
                """Note ``what`` and wait until 5 more operations are answered."""
                events.append((what, told.answered))
                want = told.answered + 10
                while told.answered < want:  # noqa: ASYNC110 - counted by the workers
                    await trio.sleep(0.02)

            async with trio.open_nursery() as clients:
                for me in range(4):
                    clients.start_soon(worker, c.url, random.Random(seed + me), me, stop, told)
                await progress("start")
                first = await c.leader()
                await c.kill(first)
                await progress(f"killed {first}")
                await c.start(first)
                await progress(f"restarted {first}")
                leader = await c.leader()
                c.cut(leader, True)
                await progress(f"cut {leader}")
                c.cut(leader, False)
                await progress(f"healed {leader}")
                stop.set()
                clients.cancel_scope.deadline = trio.current_time() + 40
            assert not clients.cancel_scope.cancelled_caught, "the clients did not finish"
            await c.settled()
            ledger = check_ledgers(c, told, START * len(ACCOUNTS))
            # reachability: the traffic did real work
            assert told.kinds.get("transfer", 0) > 10, told.kinds
            assert told.kinds.get("settle", 0) + told.kinds.get("release", 0) > 0, told.kinds
            assert told.refused.get("insufficient_funds", 0) > 0, told.refused
            assert (await setup.snapshot()).snapshot() == ledger.snapshot()
            print(f"seed {seed}: {events}, ok {told.kinds}, refused {told.refused}")


@pytest.mark.timeout(60)
async def test_a_vickrey_auction_pays_through_the_replicated_ledger(tmp_path: Path) -> None:
    """The auction core's ledger requests answered by ``RaftLedger.answer`` (the
    replicated ledger instead of the in-process ``LedgerNode``), with the leader
    killed between two bids and restarted after the close: every bid escrowed
    once, the winner pays the second price to the seller, the losers get their
    escrow back, and every member holds the same conserved ledger."""
    ledger_node = 0
    bids = {1: 300, 2: 700, 3: 500, 4: 100}
    config = AuctionConfig(
        "lot-1",
        "second_price",
        1.0,
        tuple((b, f"bidder{b}") for b in bids),
        "seller",
        ledger_node,
    )
    core = Auctioneer(config)
    with trio.fail_after(45):
        async with cluster(tmp_path) as c, open_raft_ledger(c.url) as ledger:
            await ledger.open("seller")
            for b in bids:
                await ledger.open(f"bidder{b}")
                await ledger.mint(f"bidder{b}", 1_000)

            async def run(effects: list[Any]) -> None:
                queue = list(effects)
                while queue:
                    effect = queue.pop(0)
                    if isinstance(effect, Send) and effect.to == ledger_node:
                        answer = await ledger.answer(effect.msg)
                        queue.extend(core.on_message(0.5, ledger_node, answer))

            await run(core.on_start(0.0, random.Random(1)))
            killed = 0
            for k, (b, amount) in enumerate(bids.items()):
                if k == 2:
                    killed = await c.leader()
                    await c.kill(killed)
                await run(core.on_message(0.5, b, Bid("lot-1", amount)))
            await run(core.on_timer(1.0, "deadline"))
            await c.start(killed)  # it catches up from its data dir and the leader
            assert core.state == "closed" and core.winners == [2] and core.prices == {2: 500}
            await c.settled()
            machines = [c.machines[i] for i in c.nodes]
            assert len({m.ledger.snapshot() for m in machines}) == 1
            final = machines[0].ledger
            assert final.balances() == {
                "seller": 500,
                "bidder1": 1_000,
                "bidder2": 500,
                "bidder3": 1_000,
                "bidder4": 1_000,
            }
            assert final.holds() == {} and final.supply == 4_000
            assert [e.kind for e in final.journal].count("hold") == 4
