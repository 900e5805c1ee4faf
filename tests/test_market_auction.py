"""coordination/market.py: sealed-bid auctions among registered agents (Market.auction)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.coordination import CallForBids, Market
from trio_foundation.protocols.ledger import Ledger, Mint, Open
from trio_foundation.protocols.reputation import Reputation
from trio_foundation.registry import Registry


def make_market(**funds: int) -> Market:
    ledger = Ledger()
    for account, amount in funds.items():
        ledger.apply(Open(account))
        if amount:
            ledger.apply(Mint("treasury", account, amount))
    return Market(Registry(), ledger, reputation=Reputation(600.0))


def bidding(amount: Any, delay: float = 0.0) -> Any:
    async def bid(call: CallForBids) -> Any:
        await trio.sleep(delay)
        return amount

    return bid


async def no_proposal(cfp: Any) -> None:
    return None


def work(seconds: float = 1.0, fail: bool = False) -> Any:
    async def perform(payload: Any) -> Any:
        await trio.sleep(seconds)
        if fail:
            raise RuntimeError("broken tool")
        return ("did", payload)

    return perform


async def serve(
    nursery: trio.Nursery,
    market: Market,
    name: str,
    bid: Any,
    *,
    capabilities: frozenset[str] = frozenset({"gpu"}),
    perform: Any = None,
) -> None:
    await nursery.start(
        lambda task_status: market.serve_contractor(
            name, capabilities=capabilities, account=name, propose=no_proposal,
            perform=perform or work(), bid=bid, task_status=task_status,
        )
    )  # fmt: skip


def conserved(market: Market) -> None:
    ledger = market.ledger
    total = sum(ledger.balances().values()) + sum(n for _, n in ledger.holds().values())
    assert total == ledger.supply
    assert not ledger.holds()
    assert all(v >= 0 for v in ledger.balances().values())


@pytest.mark.parametrize(("fmt", "price"), [("second_price", 5), ("first_price", 7)])
async def test_the_best_bid_wins_and_pays_the_formats_price(
    autojump_clock: Any, fmt: str, price: int
) -> None:
    market = make_market(a=10, b=10, c=10, poor=2, cpu=50, shy=10)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", bidding(7))
        await serve(nursery, market, "b", bidding(5))
        await serve(nursery, market, "c", bidding(3))
        await serve(nursery, market, "poor", bidding(9))  # cannot cover it
        await serve(nursery, market, "cpu", bidding(40), capabilities=frozenset({"cpu"}))
        await serve(nursery, market, "shy", bidding(None))  # abstains
        outcome = await market.auction(
            "render", seller="owner", format=fmt, deadline=5.0, execution_timeout=3.0,
            required={"gpu"},
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert (outcome.state, outcome.winner, outcome.price) == ("done", "a", price)
    assert outcome.method == fmt and outcome.rounds == 1
    assert outcome.result == ("did", "render")
    assert outcome.refused == {"poor": "insufficient_funds"}
    assert outcome.time_to_award == 0.0  # every invited agent answered: closed at once
    assert outcome.elapsed == pytest.approx(1.0)
    balances = market.ledger.balances()
    assert balances["owner"] == price and balances["a"] == 10 - price
    assert (balances["b"], balances["c"], balances["poor"], balances["cpu"]) == (10, 10, 2, 50)
    stats = market.statistics()
    assert (stats.allocated, stats.auctioned, stats.credits_paid, stats.active) == (1, 1, price, 0)
    assert market.reputation.score("a", trio.current_time()) > 0.5
    conserved(market)


async def test_the_deadline_closes_the_auction_and_a_late_bid_is_refused(
    autojump_clock: Any,
) -> None:
    market = make_market(a=10, slow=10)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", bidding(4))
        await serve(nursery, market, "slow", bidding(9, delay=2.5))
        outcome = await market.auction(
            "job", seller="owner", deadline=2.0, execution_timeout=5.0
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert (outcome.state, outcome.winner, outcome.price) == ("done", "a", 0)  # no rival: reserve
    assert outcome.time_to_award == pytest.approx(2.0)
    assert outcome.refused == {"slow": "late"}  # arrived during the winner's execution
    assert market.ledger.balance("slow") == 10
    conserved(market)


async def test_below_the_reserve_and_bad_bids_are_refused_and_nobody_wins(
    autojump_clock: Any,
) -> None:
    market = make_market(a=10, b=10, c=10)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", bidding(2))
        await serve(nursery, market, "b", bidding(-1))
        await serve(nursery, market, "c", bidding(2.5))
        outcome = await market.auction(
            "job", seller="owner", deadline=2.0, execution_timeout=5.0, reserve=3
        )
        nursery.cancel_scope.cancel()
    assert (outcome.state, outcome.reason, outcome.winner, outcome.price) == (
        "failed", "no_bid", None, 0,
    )  # fmt: skip
    assert outcome.refused == {"a": "below_reserve", "b": "bad_bid", "c": "bad_bid"}
    assert market.statistics().failed == 1
    conserved(market)
    assert market.ledger.balance("a") == 10


async def test_a_failed_execution_keeps_the_payment_and_the_reputation_drops(
    autojump_clock: Any,
) -> None:
    market = make_market(a=10, b=10)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", bidding(6), perform=work(0.5, fail=True))
        await serve(nursery, market, "b", bidding(4))
        outcome = await market.auction("job", seller="owner", deadline=2.0, execution_timeout=5.0)
        hung = make_market(h=10)
        await serve(nursery, hung, "h", bidding(1), perform=work(100.0))
        timed_out = await hung.auction("job", seller="o", deadline=2.0, execution_timeout=5.0)
        nursery.cancel_scope.cancel()
    assert (outcome.state, outcome.reason, outcome.winner, outcome.price) == (
        "failed", "failure", "a", 4,
    )  # fmt: skip
    assert market.ledger.balance("owner") == 4 and market.ledger.balance("a") == 6
    assert market.reputation.score("a", trio.current_time()) < 0.5
    assert (timed_out.state, timed_out.reason, timed_out.price) == ("failed", "timeout", 0)
    assert hung.ledger.balance("o") == 0  # Vickrey, no rival, reserve 0
    conserved(market)
    conserved(hung)


async def test_no_bidder_and_agents_without_a_bid_function_are_not_invited(
    autojump_clock: Any,
) -> None:
    market = make_market(x=10)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "x", None)  # serves contract-net only
        outcome = await market.auction("job", seller="owner", deadline=2.0, execution_timeout=1.0)
        nursery.cancel_scope.cancel()
    assert (outcome.state, outcome.reason, outcome.elapsed) == ("failed", "no_bid", 0.0)
    conserved(market)


async def test_a_caller_that_leaves_before_the_close_holds_nothing(autojump_clock: Any) -> None:
    market = make_market(a=10, b=10, late=10)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", bidding(6))
        await serve(nursery, market, "b", bidding(3))
        await serve(nursery, market, "late", bidding(1, delay=50.0))  # keeps it open
        with trio.move_on_after(5.0):
            await market.auction("job", seller="owner", deadline=20.0, execution_timeout=1.0)
        assert sorted(market.ledger.balances().items()) == [
            ("a", 10), ("b", 10), ("late", 10), ("owner", 0),
        ]  # fmt: skip
        stats = market.statistics()
        assert (stats.abandoned, stats.active, stats.allocated, stats.credits_paid) == (1, 0, 0, 0)
        nursery.cancel_scope.cancel()
    conserved(market)


async def test_bad_input_is_refused_by_name() -> None:
    market = make_market()
    args: dict[str, Any] = {"seller": "s", "deadline": 1.0, "execution_timeout": 1.0}
    with pytest.raises(ValueError, match="deadline is required"):
        await market.auction("x", **{**args, "deadline": None})
    with pytest.raises(ValueError, match="reserve must be >= 0"):
        await market.auction("x", **args, reserve=-1)
    with pytest.raises(ValueError, match="format must be one of"):
        await market.auction("x", **args, format="uniform")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deadline must be > 0"):
        await market.auction("x", **{**args, "deadline": -1.0})
    with pytest.raises(ValueError, match="execution_timeout must be > 0"):
        await market.auction("x", **{**args, "execution_timeout": 0})
    with pytest.raises(ValueError, match="seller must be a non-empty str"):
        await market.auction("x", **{**args, "seller": ""})
    assert market.statistics().active == 0 and "s" not in market.ledger.balances()


async def test_a_bad_task_id_is_refused_naming_task() -> None:
    # Market.auction's parameter is `task`: its errors name it (they said "auction id")
    market = make_market()
    args: dict[str, Any] = {"seller": "s", "deadline": 1.0, "execution_timeout": 1.0}
    with pytest.raises(ValueError, match=r"^task must not contain '/'"):
        await market.auction("x", **args, task="a/b")
    with pytest.raises(ValueError, match=r"^task must not be empty or blank"):
        await market.auction("x", **args, task=" ")
    with pytest.raises(TypeError, match=r"^task must be a str, got int"):
        await market.auction("x", **args, task=5)  # type: ignore[arg-type]
    assert market.statistics().active == 0 and "s" not in market.ledger.balances()


async def test_a_caller_that_leaves_after_the_close_leaves_the_payment_and_stops_the_job(
    autojump_clock: Any,
) -> None:
    market = make_market(a=10, b=10)
    stopped = trio.Event()

    async def perform(payload: Any) -> Any:
        try:
            await trio.sleep(50.0)
        finally:
            stopped.set()

    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", bidding(6), perform=perform)
        await serve(nursery, market, "b", bidding(4))
        with trio.move_on_after(3.0):
            await market.auction("job", seller="owner", deadline=2.0, execution_timeout=30.0)
        with trio.fail_after(1.0):
            await stopped.wait()  # the winner was told to stop
        stats = market.statistics()
        assert (stats.abandoned, stats.active, stats.credits_paid) == (1, 0, 4)
        nursery.cancel_scope.cancel()
    assert market.ledger.balance("owner") == 4 and market.ledger.balance("b") == 10
    conserved(market)


async def test_both_allocations_are_checkpoints_even_with_nobody_to_invite() -> None:
    market = make_market(buyer=10)
    for call in (
        lambda: market.auction("x", seller="s", deadline=1.0, execution_timeout=1.0),
        lambda: market.allocate("x", budget=5, buyer="buyer", deadline=1.0, execution_timeout=1),
    ):
        with trio.CancelScope() as scope:
            scope.cancel()
            await call()
        assert scope.cancelled_caught
    # each call is counted once: cancelled at its first checkpoint, it was abandoned
    assert market.statistics() == market.statistics().__class__(0, 0, 2, 0, 0, 0, 0)
    assert not market.ledger.holds() and market.ledger.balance("buyer") == 10
