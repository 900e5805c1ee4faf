"""The Market paying through the replicated ledger (``RaftLedger``), in one process.

Three ``open_lock_node`` members on loopback (the cluster of
``tests/test_raft_ledger_cluster.py``); the market's agents bid, propose and work as
with the in-process ledger; every ledger command goes through Raft. Checked: a
Vickrey auction, an English auction and a contract-net allocation pay the right
accounts; a caller that leaves an English auction in the middle of its bidding war
leaves no hold; the members hold the same conserved ledger. A second test runs the
English auction on a ledger that answers 50 ms late (the state machine in-process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from test_raft_ledger import Recorder
from test_raft_ledger_cluster import cluster

from trio_foundation.coordination import CallForBids, Market
from trio_foundation.coordination.raft_ledger import RaftLedger, open_raft_ledger
from trio_foundation.protocols.contract_net import CallForProposals
from trio_foundation.registry import Registry


async def test_the_market_pays_through_the_replicated_ledger(tmp_path: Path) -> None:
    values = {"ann": 9, "bob": 6, "cy": 4}
    with trio.fail_after(90):
        async with cluster(tmp_path) as c, open_raft_ledger(c.url) as ledger:
            for name in (*values, "buyer"):
                await ledger.open(name)
                await ledger.mint(name, 50)
            market = Market(Registry(), ledger)
            held: list[dict[str, Any]] = []

            def agent(name: str, value: int, think: float) -> Any:
                async def bid(call: CallForBids) -> int | None:
                    await trio.sleep(think)
                    if call.format == "english":
                        return call.minimum if call.minimum <= value else None
                    return value

                async def propose(cfp: CallForProposals) -> int:
                    return value

                async def perform(payload: Any) -> str:
                    return f"{payload} by {name}"

                async def serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                    await market.serve_contractor(
                        name, capabilities={"gpu"}, account=name, propose=propose,
                        perform=perform, bid=bid, task_status=task_status,
                    )  # fmt: skip

                return serve

            async with trio.open_nursery() as nursery:
                for i, (name, value) in enumerate(values.items()):
                    await nursery.start(agent(name, value, 0.05 * (i + 1)))
                vickrey = await market.auction(
                    "v1", seller="studio", format="second_price", deadline=5.0,
                    execution_timeout=5.0,
                )  # fmt: skip
                # a long quiet period: it closes when everybody but the leader passed
                english = await market.auction(
                    "e1", seller="studio", format="english", quiet=30.0, deadline=60.0,
                    execution_timeout=5.0, reserve=1,
                )  # fmt: skip
                contract = await market.allocate(
                    "c1", budget=8, buyer="buyer", deadline=1.0, execution_timeout=5.0
                )

                with trio.CancelScope() as caller:  # it leaves during the bidding war

                    async def watch() -> None:
                        while True:
                            holds = (await ledger.snapshot()).holds()
                            if any(h.startswith("e2/") for h in holds):
                                held.append(holds)
                                caller.cancel()
                            await trio.sleep(0.02)

                    async with trio.open_nursery() as inner:
                        inner.start_soon(watch)
                        await market.auction(
                            "e2", seller="studio", format="english", quiet=30.0,
                            deadline=60.0, execution_timeout=5.0, reserve=1, task="e2",
                        )  # fmt: skip
                        inner.cancel_scope.cancel()  # it ended before a hold was seen
                nursery.cancel_scope.cancel()
            final = await ledger.snapshot()
            await c.settled()
            members = [m.ledger.snapshot() for m in c.machines.values()]
    assert (vickrey.state, vickrey.winner, vickrey.price) == ("done", "ann", 6)
    assert english.state == "done" and english.winner == "ann" and english.price in (6, 7), english
    assert (contract.state, contract.winner) == ("done", "cy")  # the cheapest proposal
    assert contract.price == 4
    assert held, "the abandoned auction never held a bid: the test proves nothing"
    assert final.holds() == {}
    balances = final.balances()
    assert balances["studio"] == 6 + english.price
    assert balances["ann"] == 50 - 6 - english.price
    assert (balances["bob"], balances["cy"], balances["buyer"]) == (50, 54, 46)
    assert sum(balances.values()) == final.supply == 200
    assert len(set(members)) == 1  # every member holds the same ledger
    stats = market.statistics()
    assert (stats.allocated, stats.auctioned, stats.abandoned) == (3, 2, 1)


class _SlowMachine(Recorder):
    """The replicated ledger's state machine in-process, each write taking 50 ms."""

    async def submit(self, command: Any) -> Any:
        await trio.sleep(0.05)
        return await super().submit(command)


@pytest.mark.parametrize("think", [0.05, 0.0])
async def test_an_english_auction_on_a_late_ledger_closes_only_when_all_passed(
    autojump_clock: Any, think: float
) -> None:
    # Found building the Raft path: with a ledger that answers later, (1) an outbid
    # bidder's next bid reached the core before its old hold's release was answered
    # and was refused "duplicate" (one live hold per bidder); the market counted that
    # as a pass and closed: bob won at 6 although ann, worth 9, bid 7; (2) bids
    # refused "too_low" because of a bid whose hold was still being placed counted as
    # passes, and the auction closed at the first bid (think=0: everybody bids at once).
    ledger = RaftLedger(_SlowMachine())
    values = {"ann": 9, "bob": 6, "cy": 4}
    for name in values:
        await ledger.open(name)
        await ledger.mint(name, 50)
    market = Market(Registry(), ledger)

    def agent(name: str, value: int, think: float) -> Any:
        async def bid(call: CallForBids) -> int | None:
            await trio.sleep(think)
            return call.minimum if call.minimum <= value else None

        async def serve(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            await market.serve_contractor(
                name, capabilities={"gpu"}, account=name, propose=_no_proposal,
                perform=_work, bid=bid, task_status=task_status,
            )  # fmt: skip

        return serve

    async with trio.open_nursery() as nursery:
        for i, (name, value) in enumerate(values.items()):
            await nursery.start(agent(name, value, think * (i + 1)))
        outcome = await market.auction(
            "e", seller="studio", format="english", quiet=30.0, deadline=60.0,
            execution_timeout=5.0, reserve=1,
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    # ann (worth 9) wins within one increment of bob's 6, whoever reached 6 first
    assert (outcome.state, outcome.winner) == ("done", "ann") and outcome.price in (6, 7)
    price = outcome.price
    assert "ann" not in outcome.refused
    assert outcome.time_to_award is not None and outcome.time_to_award < 30.0  # all passed
    final = await ledger.snapshot()
    assert final.holds() == {} and final.balance("studio") == price
    assert final.balance("bob") == 50 and final.balance("ann") == 50 - price


async def _no_proposal(cfp: Any) -> None:
    return None


async def _work(payload: Any) -> str:
    return "done"
