"""The market's async API under injected cancellations (``verify.cancellation``).

Three contractors (fast, slow, failing) serve while three callers allocate tasks (by
contract-net in one test, by sealed-bid auction in another: each contractor also bids,
the slow one near the deadline; by English and Dutch auctions in the third: each
contractor raises the standing bid up to its value, or accepts the clock's price once
it is within it, the slow one thinking for about a second); every contractor and every
caller is an attackable scope (a cancelled contractor is a crashed one). After every
step of the scheduler: a task whose caller has left holds no escrow (the task's hold,
or a bid's hold ``task/node``, or an English bid's ``task/node/receipt``) and no
allocation, no balance is negative, and the ledger's total is conserved. At the end:
nothing is left — no hold, no allocation, no registered contractor.
"""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given, settings

from trio_foundation.coordination.market import Market
from trio_foundation.protocols.contract_net import CallForProposals
from trio_foundation.protocols.ledger import Ledger, Mint, Open
from trio_foundation.registry import Registry
from trio_foundation.verify.cancellation import Injector, injection_plans, run_injected

SETTINGS = settings(max_examples=min(40, settings().max_examples), deadline=None)
CONTRACTORS = (("fast", 3, 1.0, False), ("slow", 2, 20.0, False), ("flaky", 1, 0.5, True))


def _scenario(state: dict[str, Any], auction: bool = False, open_: bool = False) -> Any:
    async def scenario(inj: Injector) -> None:
        ledger = Ledger()
        ledger.apply(Open("buyer"))
        ledger.apply(Mint("treasury", "buyer", 1000))
        for name, *_ in CONTRACTORS:
            ledger.apply(Open(f"acct-{name}"))
            # enough for one bid at a time (open auctions: for a bidding war)
            ledger.apply(Mint("treasury", f"acct-{name}", 12 if open_ else 4))
        market = Market(Registry(), ledger)
        inside: set[str] = set()  # tasks whose caller is inside allocate()
        state["market"], state["inside"] = market, inside

        async def contractor(
            name: str, price: int, seconds: float, fails: bool, task_status: Any
        ) -> None:
            async def propose(cfp: CallForProposals) -> int:
                await trio.sleep(0.1)
                return price

            async def bid(call: Any) -> int | None:
                if open_:  # English: raise while within the value; Dutch: accept at it
                    await trio.sleep(0.1 if seconds < 10 else 0.9)
                    return call.minimum if call.minimum <= price + 3 else None
                await trio.sleep(0.1 if seconds < 10 else 1.9)
                return price

            async def perform(payload: Any) -> str:
                await trio.sleep(seconds)
                if fails:
                    raise RuntimeError("tool broke")
                return name

            started = False

            def ready() -> None:
                nonlocal started
                started = True
                task_status.started()

            with inj.scope(f"contractor-{name}"):
                await market.serve_contractor(
                    name, capabilities={"code"}, account=f"acct-{name}", propose=propose,
                    perform=perform, bid=bid, task_status=_Status(ready),
                )  # fmt: skip
            if not started:
                task_status.started()

        async def caller(i: int) -> None:
            await trio.sleep(i * 0.7)
            task = f"t{i}"
            with inj.scope(f"caller{i}"):
                inside.add(task)
                try:
                    if open_:
                        fields: dict[str, Any] = (
                            {"quiet": 0.5, "min_increment": 1, "reserve": 1}
                            if i % 2
                            else {"start_price": 7, "tick": 0.2, "decrement": 1, "reserve": 1}
                        )
                        await market.auction(
                            i, seller="seller", format="english" if i % 2 else "dutch",
                            deadline=2.0, execution_timeout=3.0, task=task, **fields,
                        )  # fmt: skip
                    elif auction:
                        await market.auction(
                            i, seller="seller", format=("first_price", "second_price")[i % 2],
                            deadline=2.0, execution_timeout=3.0, task=task,
                        )  # fmt: skip
                    else:
                        await market.allocate(
                            i, budget=5, buyer="buyer", deadline=1.0, execution_timeout=3.0,
                            max_rounds=2, task=task,
                        )  # fmt: skip
                finally:
                    inside.discard(task)

        async with trio.open_nursery() as outer:
            for name, price, seconds, fails in CONTRACTORS:
                await outer.start(contractor, name, price, seconds, fails)
            async with trio.open_nursery() as callers:
                for i in range(3):
                    callers.start_soon(caller, i)
            outer.cancel_scope.cancel()

    return scenario


class _Status:
    """A task_status that records the call (serve_contractor's is passed through)."""

    def __init__(self, ready: Any) -> None:
        self._ready = ready

    def started(self, value: Any = None) -> None:
        self._ready()


def _check(state: dict[str, Any]) -> None:
    market: Market | None = state.get("market")
    if market is None:
        return
    ledger = market.ledger
    total = sum(ledger.balances().values()) + sum(n for _, n in ledger.holds().values())
    assert total == ledger.supply, "the ledger's total changed"
    assert all(v >= 0 for v in ledger.balances().values()), "a negative balance"
    for hold in ledger.holds():
        task = hold.split("/")[0]
        assert task in state["inside"], f"escrow {hold!r} held for a caller that left"
    for task in market._managers:
        assert task in state["inside"], f"allocation of {task!r} runs for a caller that left"


@SETTINGS
@given(plan=injection_plans(max_step=150, max_opened=6))
def test_market_under_injected_cancellation(plan: Any) -> None:
    _run(plan, auction=False)


@SETTINGS
@given(plan=injection_plans(max_step=150, max_opened=6))
def test_market_auction_under_injected_cancellation(plan: Any) -> None:
    _run(plan, auction=True)


@SETTINGS
@given(plan=injection_plans(max_step=150, max_opened=6))
def test_market_open_auction_under_injected_cancellation(plan: Any) -> None:
    _run(plan, auction=True, open_=True)


def _run(plan: Any, auction: bool, open_: bool = False) -> None:
    state: dict[str, Any] = {}
    run_injected(_scenario(state, auction, open_), plan, check=lambda: _check(state))
    market: Market = state["market"]
    stats = market.statistics()
    assert stats.active == 0 and stats.contractors == 0
    assert not market.ledger.holds() and len(market.registry) == 0
    assert stats.allocated + stats.failed + stats.abandoned == 3
