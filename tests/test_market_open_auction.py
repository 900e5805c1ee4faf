"""coordination/market.py: English and Dutch auctions among registered agents (Market.auction)."""

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


def raising(value: int, calls: list[CallForBids] | None = None, delay: float = 0.1) -> Any:
    """English: bid the least amount that can be taken while it is within ``value``."""

    async def bid(call: CallForBids) -> int | None:
        if calls is not None:
            calls.append(call)
        await trio.sleep(delay)
        return call.minimum if call.minimum <= value else None

    return bid


def accepting(value: int, once: bool = False, skew: int = 0, delay: float = 0.1) -> Any:
    """Dutch: accept the price (bid it, plus ``skew``) once it is within ``value``."""
    tried = False

    async def bid(call: CallForBids) -> int | None:
        nonlocal tried
        await trio.sleep(delay)
        assert call.price is not None and call.minimum == call.price
        if call.price > value or (once and tried):
            return None
        tried = True
        return call.price + skew

    return bid


async def no_proposal(cfp: Any) -> None:
    return None


def work(seconds: float = 1.0) -> Any:
    async def perform(payload: Any) -> Any:
        await trio.sleep(seconds)
        return ("did", payload)

    return perform


async def serve(
    nursery: trio.Nursery, market: Market, name: str, bid: Any, perform: Any = None
) -> None:
    await nursery.start(
        lambda task_status: market.serve_contractor(
            name, capabilities={"gpu"}, account=name, propose=no_proposal,
            perform=perform or work(), bid=bid, task_status=task_status,
        )
    )  # fmt: skip


def conserved(market: Market) -> None:
    ledger = market.ledger
    total = sum(ledger.balances().values()) + sum(n for _, n in ledger.holds().values())
    assert total == ledger.supply
    assert not ledger.holds()
    assert all(v >= 0 for v in ledger.balances().values())


async def test_english_the_highest_value_wins_one_increment_above_the_second(
    autojump_clock: Any,
) -> None:
    market = make_market(a=20, b=20, c=20, poor=3)
    calls: list[CallForBids] = []
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", raising(10, calls))
        await serve(nursery, market, "b", raising(7))
        await serve(nursery, market, "c", raising(4))
        await serve(nursery, market, "poor", raising(9))  # cannot cover more than 3
        outcome = await market.auction(
            "render", seller="owner", format="english", deadline=60.0, quiet=5.0,
            execution_timeout=3.0, reserve=1, min_increment=1,
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    # b stays in up to 7: a wins at 7 (it reached 7 first) or 8, within one increment
    assert (outcome.state, outcome.winner) == ("done", "a") and outcome.price in (7, 8)
    price = outcome.price
    assert outcome.method == "english" and outcome.result == ("did", "render")
    # closed as soon as everybody but the standing bidder passed, long before the quiet period
    assert outcome.time_to_award is not None and outcome.time_to_award < 5.0
    assert set(outcome.refused.values()) <= {"too_low", "insufficient_funds"}
    assert outcome.refused.get("poor") == "insufficient_funds"
    balances = market.ledger.balances()
    assert (balances["owner"], balances["a"], balances["b"], balances["c"]) == (
        price, 20 - price, 20, 20,
    )  # fmt: skip
    # a's calls: the first (version 0, the reserve), then one per standing bid it did not hold
    assert calls[0].version == 0 and calls[0].standing is None and calls[0].minimum == 1
    assert all(c.minimum == c.standing + 1 for c in calls[1:] if c.standing is not None)
    assert [c.version for c in calls] == sorted({c.version for c in calls})
    stats = market.statistics()
    assert (stats.allocated, stats.auctioned, stats.credits_paid, stats.active) == (1, 1, price, 0)
    conserved(market)


async def test_english_closes_after_the_quiet_period_and_a_bid_after_it_is_late(
    autojump_clock: Any,
) -> None:
    market = make_market(a=10, slow=10)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", raising(5, delay=0.0), perform=work(5.0))
        await serve(nursery, market, "slow", raising(9, delay=3.5))  # thinks too long
        outcome = await market.auction(
            "job", seller="owner", format="english", deadline=60.0, quiet=3.0,
            execution_timeout=10.0,
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert (outcome.state, outcome.winner, outcome.price) == ("done", "a", 0)  # reserve 0
    assert outcome.time_to_award == pytest.approx(3.0)  # quiet after a stood at t=0
    assert outcome.refused == {"slow": "late"}  # answered at 3.5, during a's execution
    assert market.ledger.balance("slow") == 10
    conserved(market)


async def test_english_takes_at_most_max_bids_then_refuses_limit(autojump_clock: Any) -> None:
    market = make_market(a=100, b=100)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", raising(1000))
        await serve(nursery, market, "b", raising(1000))
        outcome = await market.auction(
            "job", seller="owner", format="english", deadline=60.0, quiet=5.0,
            execution_timeout=3.0, max_bids=6, min_increment=2,
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert outcome.state == "done" and outcome.price == 10  # bids 0, 2, 4, 6, 8, 10 stood
    assert "limit" in outcome.refused.values()
    assert market.ledger.balance("owner") == 10
    conserved(market)


async def test_english_the_hard_deadline_closes_an_endless_bidding_war(
    autojump_clock: Any,
) -> None:
    market = make_market(a=1000, b=1000)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", raising(1000, delay=1.0))
        await serve(nursery, market, "b", raising(1000, delay=1.0))
        outcome = await market.auction(
            "job", seller="owner", format="english", deadline=10.0, quiet=5.0,
            execution_timeout=3.0,
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert outcome.state == "done" and outcome.time_to_award == pytest.approx(10.0)
    assert 5 <= outcome.price <= 10  # about one raise a second
    assert market.ledger.balance("owner") == outcome.price
    conserved(market)


async def test_dutch_the_first_accept_wins_at_the_clock_price(autojump_clock: Any) -> None:
    market = make_market(a=20, b=20, liar=20, poor=2)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", accepting(6))
        await serve(nursery, market, "b", accepting(8))
        await serve(nursery, market, "liar", accepting(9, once=True, skew=-2))  # a stale price
        await serve(nursery, market, "poor", accepting(10, once=True))
        outcome = await market.auction(
            "job", seller="owner", format="dutch", deadline=60.0, start_price=10,
            decrement=1, tick=1.0, reserve=3, execution_timeout=3.0,
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert (outcome.state, outcome.winner, outcome.price) == ("done", "b", 8)
    assert outcome.method == "dutch" and outcome.time_to_award == pytest.approx(2.1)
    assert outcome.refused == {"liar": "stale_price", "poor": "insufficient_funds"}
    balances = market.ledger.balances()
    assert (balances["owner"], balances["b"], balances["a"], balances["liar"]) == (8, 12, 20, 20)
    conserved(market)


async def test_dutch_nobody_accepts_and_the_clock_closes_unsold(autojump_clock: Any) -> None:
    market = make_market(a=20)
    async with trio.open_nursery() as nursery:
        await serve(nursery, market, "a", accepting(1))
        outcome = await market.auction(
            "job", seller="owner", format="dutch", deadline=60.0, start_price=5,
            tick=1.0, reserve=3, execution_timeout=3.0,
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    # 5, 4, 3 at t = 0, 1, 2; one tick at the reserve, then closed unsold
    assert (outcome.state, outcome.reason, outcome.elapsed) == ("failed", "no_bid", 3.0)
    assert market.statistics().failed == 1
    conserved(market)


@pytest.mark.parametrize("fmt", ["english", "dutch"])
async def test_an_open_auction_with_nobody_invited_closes_at_once(fmt: str) -> None:
    market = make_market()
    fields: dict[str, Any] = {"quiet": 1.0} if fmt == "english" else {"start_price": 9, "tick": 1.0}
    with trio.fail_after(1.0):  # real time: closed at once, not by a timer
        outcome = await market.auction(
            "job", seller="s", format=fmt, deadline=100.0, execution_timeout=1.0, **fields
        )
    assert (outcome.state, outcome.reason, outcome.winner) == ("failed", "no_bid", None)


@pytest.mark.parametrize("fmt", ["english", "dutch"])
async def test_a_caller_that_leaves_an_open_auction_holds_nothing(
    autojump_clock: Any, fmt: str
) -> None:
    market = make_market(a=50, b=50)
    fields: dict[str, Any] = (
        {"quiet": 30.0} if fmt == "english" else {"start_price": 9, "tick": 1.0}
    )
    async with trio.open_nursery() as nursery:
        if fmt == "english":
            await serve(nursery, market, "a", raising(40, delay=1.0))
            await serve(nursery, market, "b", raising(40, delay=1.5))
        else:  # a accepts at t = 4.1, after the caller left; b never accepts
            await serve(nursery, market, "a", accepting(5))
            await serve(nursery, market, "b", accepting(0))
        held: list[dict[str, Any]] = []

        async def watch() -> None:
            while True:
                held.append(market.ledger.holds())
                await trio.sleep(0.25)

        nursery.start_soon(watch)
        with trio.move_on_after(2.6 if fmt == "dutch" else 4.2):
            await market.auction(
                "job", seller="owner", format=fmt, deadline=60.0, execution_timeout=1.0,
                **fields,
            )  # fmt: skip
        stats = market.statistics()
        assert (stats.abandoned, stats.active, stats.credits_paid) == (1, 0, 0)
        assert not market.ledger.holds(), market.ledger.holds()
        assert market.ledger.balances() == {"a": 50, "b": 50, "owner": 0}
        if fmt == "english":
            assert any(held), "no bid was ever held: the test proves nothing"
        await trio.sleep(10.0)  # the agents' late answers are dropped: nothing is held again
        assert not market.ledger.holds()
        nursery.cancel_scope.cancel()
    conserved(market)


async def test_open_parameters_are_refused_by_name() -> None:
    market = make_market()
    args: dict[str, Any] = {"seller": "s", "deadline": 9.0, "execution_timeout": 1.0}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"min_increment": 2}, "min_increment is for english auctions, not second_price"),
        ({"format": "first_price", "tick": 1.0}, "tick is for dutch auctions, not first_price"),
        ({"format": "dutch", "start_price": 5, "tick": 1.0, "quiet": 2.0},
         "quiet is for english auctions, not dutch"),
        ({"format": "english", "quiet": 2.0, "decrement": 2},
         "decrement is for dutch auctions, not english"),
        ({"format": "english"}, "quiet is required for english auctions"),
        ({"format": "dutch", "tick": 1.0}, "start_price is required for dutch auctions"),
        ({"format": "dutch", "start_price": 5}, "tick is required for dutch auctions"),
        ({"format": "dutch", "start_price": 2, "tick": 1.0, "reserve": 3},
         "start_price must be >= reserve"),
        ({"format": "english", "quiet": -1.0}, "quiet must be > 0"),
        ({"format": "english", "quiet": 1.0, "min_increment": 0}, "min_increment must be >= 1"),
        ({"format": "uniform"}, "format must be one of"),
    ]  # fmt: skip
    for fields, message in cases:
        with pytest.raises(ValueError, match=message):
            await market.auction("x", **{**args, **fields})
    assert market.statistics().active == 0 and "s" not in market.ledger.balances()
