"""Exact edges of the English and Dutch auctioneers (protocols/auction.py) for the
mutation run of ``protocols/``: every configuration and restore error's whole text,
the Dutch clock's arithmetic at its boundaries, and the exact effects of the steps
whose details the scenario tests leave open (who is told what, in which order, which
ledger command goes out, which timers are armed)."""

from __future__ import annotations

import math
import random
import re
from typing import Any

import pytest

from trio_foundation.protocols.auction import (
    AuctionConfig,
    Auctioneer,
    Bid,
    BidAccepted,
    BidRefused,
    BidStood,
    BidTaken,
    Closing,
    Decided,
    HoldAnswered,
    LedgerAnswer,
    LedgerRequest,
    OpenStarted,
    Outcome,
    PriceClock,
    Standing,
    Started,
)
from trio_foundation.protocols.effects import Persist, Send, SetTimer
from trio_foundation.protocols.ledger import (
    ErrorResult,
    Hold,
    Ok,
    Release,
    Settle,
    Transfer,
)

LEDGER = 1
BIDDERS = ((2, "acct2"), (3, "acct3"), (4, "acct4"))


def config(fmt: str, **fields: Any) -> AuctionConfig:
    return AuctionConfig("a", fmt, 100.0, BIDDERS, "seller", LEDGER, **fields)  # type: ignore[arg-type]


def english(**fields: Any) -> Auctioneer:
    core = Auctioneer(config("english", quiet=3.0, **fields))
    core.on_start(0.0, random.Random(0))
    return core


def dutch(**fields: Any) -> Auctioneer:
    fields.setdefault("tick", 1.0)
    core = Auctioneer(config("dutch", **fields))
    core.on_start(0.0, random.Random(0))
    return core


def ledger(command: Any) -> Send:
    return Send(LEDGER, LedgerRequest(command))


def placed(core: Auctioneer, now: float, command: Any) -> list[Any]:
    """The auctioneer's step for the ledger's Ok to ``command``."""
    return core.on_message(now, LEDGER, LedgerAnswer(command, Ok(1)))


def to_all(msg: Any) -> list[Send]:
    return [Send(b, msg) for b, _ in BIDDERS]


# ------------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("fmt", "fields", "error", "text"),
    [
        ("english", {}, ValueError, "a english auction needs quiet"),
        ("dutch", {"tick": 1.0}, ValueError, "a dutch auction needs start_price"),
        ("dutch", {"start_price": 5}, ValueError, "a dutch auction needs tick"),
        (
            "english",
            {"quiet": 1.0, "start_price": 5},
            ValueError,
            "start_price is for dutch auctions, got start_price=5",
        ),
        (
            "dutch",
            {"quiet": 1.5, "start_price": 5, "tick": 1.0},
            ValueError,
            "quiet is for english auctions, got quiet=1.5",
        ),
        ("first_price", {"tick": 2.0}, ValueError, "tick is for dutch auctions, got tick=2.0"),
        ("english", {"quiet": 0}, ValueError, "quiet must be > 0 seconds (finite), got 0"),
        ("english", {"quiet": True}, ValueError, "quiet must be > 0 seconds (finite), got True"),
        ("english", {"quiet": "3"}, ValueError, "quiet must be > 0 seconds (finite), got '3'"),
        ("english", {"quiet": math.nan}, ValueError, "quiet must be > 0 seconds (finite), got nan"),
        ("english", {"quiet": math.inf}, ValueError, "quiet must be > 0 seconds (finite), got inf"),
        (
            "dutch",
            {"start_price": 5, "tick": -1.0},
            ValueError,
            "tick must be > 0 seconds (finite), got -1.0",
        ),
        ("dutch", {"start_price": -1, "tick": 1.0}, ValueError, "start_price must be >= 0, got -1"),
        (
            "dutch",
            {"start_price": 5.0, "tick": 1.0},
            TypeError,
            "start_price must be an int, got float",
        ),
        (
            "dutch",
            {"start_price": True, "tick": 1.0},
            TypeError,
            "start_price must be an int, got bool",
        ),
        (
            "dutch",
            {"start_price": 5, "tick": 1.0, "reserve": 6},
            ValueError,
            "start_price must be >= reserve (6), got 5",
        ),
        (
            "dutch",
            {"start_price": 5, "tick": 1.0, "decrement": 0},
            ValueError,
            "decrement must be >= 1, got 0",
        ),
        ("english", {"quiet": 1.0, "max_bids": 0}, ValueError, "max_bids must be >= 1, got 0"),
        (
            "english",
            {"quiet": 1.0, "min_increment": 0},
            ValueError,
            "min_increment must be >= 1, got 0",
        ),
        ("english", {"quiet": 1.0, "units": 2}, ValueError, "english sells one unit, got units=2"),
        (
            "dutch",
            {"start_price": 5, "tick": 1.0, "units": 3},
            ValueError,
            "dutch sells one unit, got units=3",
        ),
        (
            "vickrey",
            {},
            ValueError,
            "format must be one of ('first_price', 'second_price', 'uniform', 'english',"
            " 'dutch'), got 'vickrey'",
        ),
    ],
)
def test_open_config_errors_are_exact(
    fmt: str, fields: dict[str, Any], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(text)}$"):
        config(fmt, **fields)


def test_open_config_bounds_are_inclusive() -> None:
    c = config("dutch", start_price=6, tick=1.0, reserve=6, decrement=1)  # start at the floor
    assert (c.start_price, c.reserve, c.decrement) == (6, 6, 1)
    c = config("english", quiet=1e-3, min_increment=1, max_bids=1)
    assert (c.quiet, c.min_increment, c.max_bids, c.units) == (1e-3, 1, 1, 1)


def test_bidder_ids_errors_are_exact() -> None:
    twice = ((2, "x"), (2, "y"))
    with pytest.raises(
        ValueError, match="^" + re.escape("bidder ids must be unique, got [2, 2]") + "$"
    ):
        AuctionConfig("a", "english", 10.0, twice, "s", 1, quiet=1.0)
    with pytest.raises(
        ValueError, match="^" + re.escape("bidder id 3 is the ledger's node id (ledger=3)") + "$"
    ):
        AuctionConfig("a", "dutch", 10.0, BIDDERS, "s", 3, start_price=5, tick=1.0)


@pytest.mark.parametrize("fmt", ["english", "first_price"])
def test_clock_price_of_another_format_is_refused_by_name(fmt: str) -> None:
    core = Auctioneer(config(fmt, quiet=1.0) if fmt == "english" else config(fmt))
    with pytest.raises(
        RuntimeError, match=f"^clock_price is for dutch auctions, this one is {fmt}$"
    ):
        core.clock_price(0.0)


# ------------------------------------------------------------------------ the Dutch clock


def test_the_clock_before_the_start_and_before_the_start_time_asks_the_start_price() -> None:
    fresh = Auctioneer(config("dutch", start_price=10, tick=1.0))
    assert fresh.clock_price(50.0) == 10  # not started: no tick has elapsed
    core = Auctioneer(config("dutch", start_price=10, tick=1.0))
    core.on_start(20.0, random.Random(0))
    assert core.clock_price(19.0) == 10  # a time before the start counts as the start
    assert core.clock_price(21.0) == 9


def test_a_time_at_a_tick_boundary_counts_as_the_boundary() -> None:
    core = Auctioneer(config("dutch", start_price=10, tick=0.1))
    core.on_start(0.0, random.Random(0))
    # 0.3 / 0.1 is 2.9999999999999996 in floats: the third tick has come
    assert core.clock_price(0.3) == 7
    assert core.clock_price(0.3 - 1e-6) == 8  # just before it: not yet
    assert core.clock_price(0.5) == 5  # an exact quotient: not one tick more


@pytest.mark.parametrize(
    ("start", "reserve", "decrement", "prices"),
    [
        (10, 3, 3, [10, 7, 4, 3]),  # the last step lands below the reserve: the floor
        (9, 3, 3, [9, 6, 3]),  # it lands on the reserve
        (5, 5, 2, [5]),  # starts at the floor
    ],
)
def test_the_clock_falls_to_the_floor_stays_one_tick_and_closes_unsold(
    start: int, reserve: int, decrement: int, prices: list[int]
) -> None:
    core = Auctioneer(
        config("dutch", start_price=start, tick=2.0, reserve=reserve, decrement=decrement)
    )
    assert core.on_start(0.0, random.Random(0)) == [
        Persist(OpenStarted(0.0, 100.0)),
        SetTimer("deadline", 100.0),
        *to_all(PriceClock("a", start)),
        SetTimer("tick", 2.0),
    ]
    for step, price in enumerate(prices[1:], start=1):
        assert core.on_timer(2.0 * step, "tick") == [
            *to_all(PriceClock("a", price)),
            SetTimer("tick", 2.0),
        ]
    closing = core.on_timer(2.0 * len(prices), "tick")
    assert closing == [Persist(Decided((), ())), *to_all(Outcome("a", False, 0))]
    assert core.state == "closed"
    assert core.on_timer(2.0 * len(prices) + 2.0, "tick") == []  # closed: no more ticks


def test_a_late_tick_arms_the_next_one_from_the_start_not_from_now() -> None:
    core = dutch(start_price=10)
    late: list[Any] = core.on_timer(1.4, "tick")
    assert late[:-1] == to_all(PriceClock("a", 9))
    assert late[-1].name == "tick" and late[-1].delay == pytest.approx(0.6)
    # a spurious early one: the same price, the same boundary
    early: list[Any] = core.on_timer(1.75, "tick")
    assert early[:-1] == to_all(PriceClock("a", 9))
    assert early[-1].name == "tick" and early[-1].delay == pytest.approx(0.25)


def test_timers_of_the_other_format_and_unknown_timers_do_nothing() -> None:
    d = dutch(start_price=10)
    assert d.on_timer(1.0, "quiet") == [] and d.on_timer(1.0, "lazy") == []
    e = english()
    assert e.on_timer(1.0, "tick") == [] and e.on_timer(1.0, "lazy") == []
    assert d.state == e.state == "open"


# ------------------------------------------------------------------------ Dutch accepts


def test_dutch_refusals_in_their_order() -> None:
    core = dutch(start_price=10, reserve=4)
    assert core.on_message(0.5, 9, Bid("a", 10)) == [Send(9, BidRefused("a", "unknown_bidder"))]
    assert core.on_message(0.5, 2, Bid("a", "10")) == [Send(2, BidRefused("a", "bad_bid"))]
    assert core.on_message(0.5, 2, Bid("a", 3)) == [Send(2, BidRefused("a", "below_reserve"))]
    assert core.on_message(0.5, 2, Bid("a", 9)) == [Send(2, BidRefused("a", "stale_price"))]
    assert core.on_message(0.5, 2, Bid("b", 10)) == []  # another auction's bid
    assert core.on_message(0.5, 2, Bid("a", 10)) == [
        Persist(BidTaken(2, 10, 1)),
        ledger(Hold("a/2", "acct2", 10)),
    ]
    assert core.on_message(0.6, 2, Bid("a", 10)) == [Send(2, BidRefused("a", "duplicate"))]


def test_a_dutch_bidder_whose_hold_was_refused_has_spent_its_accept() -> None:
    core = dutch(start_price=10)
    core.on_message(0.5, 2, Bid("a", 10))
    refused = ErrorResult("insufficient_funds", "short", "acct2", 10)
    answer = core.on_message(0.6, LEDGER, LedgerAnswer(Hold("a/2", "acct2", 10), refused))
    assert answer == [
        Persist(HoldAnswered(2, False)),
        Send(2, BidRefused("a", "insufficient_funds")),
    ]
    assert core.on_message(0.7, 2, Bid("a", 10)) == [Send(2, BidRefused("a", "duplicate"))]
    assert core.state == "open"


def test_a_later_funded_accept_waits_and_the_earliest_one_wins_at_once() -> None:
    core = dutch(start_price=8)
    core.on_message(0.1, 2, Bid("a", 8))
    core.on_message(0.2, 3, Bid("a", 8))
    # 3's hold is placed first: 2's, received earlier, is still being placed
    assert placed(core, 0.3, Hold("a/3", "acct3", 8)) == [
        Persist(HoldAnswered(3, True)),
        Send(3, BidAccepted("a", 8)),
    ]
    assert core.state == "open"
    won = placed(core, 0.4, Hold("a/2", "acct2", 8))
    assert won == [
        Persist(HoldAnswered(2, True)),
        Send(2, BidAccepted("a", 8)),
        Persist(Decided((2,), ((2, 8),))),
        ledger(Settle("a/2", "seller", 8)),  # the bidders in id order
        ledger(Release("a/3")),
        Send(2, Outcome("a", True, 8)),
        Send(3, Outcome("a", False, 0)),
        Send(4, Outcome("a", False, 0)),
    ]


def test_the_dutch_winner_is_the_earliest_receipt_not_the_lowest_bidder_id() -> None:
    core = dutch(start_price=8)
    core.on_message(0.1, 4, Bid("a", 8))  # receipt 1, the highest id
    core.on_message(0.2, 2, Bid("a", 8))  # receipt 2
    assert placed(core, 0.3, Hold("a/2", "acct2", 8)) == [
        Persist(HoldAnswered(2, True)),
        Send(2, BidAccepted("a", 8)),
    ]
    # a funded accept waiting for an earlier one is still its bidder's one accept
    assert core.on_message(0.35, 2, Bid("a", 8)) == [Send(2, BidRefused("a", "duplicate"))]
    won = placed(core, 0.4, Hold("a/4", "acct4", 8))
    assert won[:3] == [
        Persist(HoldAnswered(4, True)),
        Send(4, BidAccepted("a", 8)),
        Persist(Decided((4,), ((4, 8),))),
    ]
    assert (core.winners, core.prices) == ([4], {4: 8})


def test_an_accept_placed_after_the_win_is_released_without_an_accepted_reply() -> None:
    core = dutch(start_price=8)
    core.on_message(0.1, 2, Bid("a", 8))
    core.on_message(0.2, 3, Bid("a", 8))
    placed(core, 0.3, Hold("a/2", "acct2", 8))  # the earliest: decided at once
    assert core.state == "closed" and core.winners == [2]
    assert placed(core, 0.4, Hold("a/3", "acct3", 8)) == [
        Persist(HoldAnswered(3, True)),
        ledger(Release("a/3")),
    ]
    # the release's answer, then a duplicate of it
    assert core.on_message(0.5, LEDGER, LedgerAnswer(Release("a/3"), Ok(2))) != []
    assert core.on_message(0.6, LEDGER, LedgerAnswer(Release("a/3"), Ok(2))) == []


# ------------------------------------------------------------------------ English bids


def test_english_bar_counts_the_bids_being_placed() -> None:
    core = english(reserve=3, min_increment=2)
    assert core.on_message(1.0, 2, Bid("a", 2)) == [Send(2, BidRefused("a", "below_reserve"))]
    assert core.on_message(1.0, 2, Bid("a", 3)) == [  # the reserve itself is enough
        Persist(BidTaken(2, 3, 1)),
        ledger(Hold("a/2/1", "acct2", 3)),
    ]
    # 2's bid of 3 is not standing yet, but the bar is already 3 + 2
    assert core.on_message(1.1, 3, Bid("a", 4)) == [Send(3, BidRefused("a", "too_low"))]
    assert core.on_message(1.1, 3, Bid("a", 5)) == [
        Persist(BidTaken(3, 5, 2)),
        ledger(Hold("a/3/2", "acct3", 5)),
    ]
    assert core.standing is None


def test_english_a_bid_of_zero_stands_at_once_without_a_hold() -> None:
    core = english()
    assert core.on_message(1.0, 2, Bid("a", 0)) == [
        Persist(BidTaken(2, 0, 1)),
        Persist(BidStood(2, 1.0)),
        Send(2, BidAccepted("a", 0)),
        *to_all(Standing("a", 2, 0)),
        SetTimer("quiet", 3.0),
    ]
    step = core.on_message(1.5, 3, Bid("a", 1))
    assert step == [Persist(BidTaken(3, 1, 2)), ledger(Hold("a/3/2", "acct3", 1))]
    # 2 is outbid, but a bid of 0 holds nothing: no release
    assert placed(core, 2.0, Hold("a/3/2", "acct3", 1)) == [
        Persist(BidStood(3, 2.0)),
        Send(3, BidAccepted("a", 1)),
        *to_all(Standing("a", 3, 1)),
        SetTimer("quiet", 3.0),
    ]


def test_english_a_bid_outbid_before_its_hold_came_back_is_released_at_once() -> None:
    core = english()
    core.on_message(1.0, 2, Bid("a", 4))
    core.on_message(1.1, 3, Bid("a", 5))
    stood = placed(core, 1.5, Hold("a/3/2", "acct3", 5))
    assert stood == [
        Persist(BidStood(3, 1.5)),
        Send(3, BidAccepted("a", 5)),
        *to_all(Standing("a", 3, 5)),
        SetTimer("quiet", 3.0),
    ]
    # 2's hold comes back after 3's bid stood: 2 is told its bid was taken, and its
    # hold goes back at once; nobody hears of a new standing bid, no timer moves
    assert placed(core, 2.0, Hold("a/2/1", "acct2", 4)) == [
        Persist(BidStood(2, 2.0)),
        Send(2, BidAccepted("a", 4)),
        ledger(Release("a/2/1")),
    ]
    assert core.standing == (3, 5, 2)


def test_english_refused_hold_and_stray_ledger_answers() -> None:
    core = english()
    core.on_message(1.0, 2, Bid("a", 4))
    refused = ErrorResult("unknown_account", "no account 'acct2'", "acct2")
    assert core.on_message(1.2, LEDGER, LedgerAnswer(Hold("a/2/1", "acct2", 4), refused)) == [
        Persist(HoldAnswered(2, False)),
        Send(2, BidRefused("a", "unknown_account")),
    ]
    # the same answer again, an answer from another node, a command it never sends
    assert core.on_message(1.3, LEDGER, LedgerAnswer(Hold("a/2/1", "acct2", 4), refused)) == []
    assert core.on_message(1.3, 3, LedgerAnswer(Hold("a/2/1", "acct2", 4), Ok(1))) == []
    assert core.on_message(1.3, LEDGER, LedgerAnswer(Transfer("x", "y", 1), Ok(1))) == []
    assert core.on_message(1.3, LEDGER, LedgerAnswer(Release("a/2/1"), Ok(1))) == []
    assert core.standing is None and core.snapshot_persistent()[-1] == HoldAnswered(2, False)
    # an unfunded English bidder may bid again: a new receipt, a new hold id
    assert core.on_message(1.4, 2, Bid("a", 3)) == [
        Persist(BidTaken(2, 3, 2)),
        ledger(Hold("a/2/2", "acct2", 3)),
    ]


def test_english_max_bids_counts_every_bid_taken() -> None:
    core = english(max_bids=2)
    core.on_message(1.0, 2, Bid("a", 1))
    core.on_message(1.0, 3, Bid("a", 2))
    assert core.on_message(1.0, 4, Bid("a", 9)) == [Send(4, BidRefused("a", "limit"))]


def test_english_close_with_a_hold_in_flight_decides_when_it_comes_back() -> None:
    core = english()
    core.on_message(1.0, 2, Bid("a", 4))
    assert core.on_timer(4.0, "quiet") == [Persist(Closing())]
    assert core.state == "closing"
    assert core.on_timer(5.0, "deadline") == []  # closing already
    assert placed(core, 5.0, Hold("a/2/1", "acct2", 4)) == [
        Persist(BidStood(2, 5.0)),
        Send(2, BidAccepted("a", 4)),
        *to_all(Standing("a", 2, 4)),  # no quiet timer: the auction is closing
        Persist(Decided((2,), ((2, 4),))),
        ledger(Settle("a/2/1", "seller", 4)),
        *[Send(b, Outcome("a", b == 2, 4 if b == 2 else 0)) for b, _ in BIDDERS],
    ]


def test_english_close_with_no_bid_tells_every_bidder_it_lost() -> None:
    core = english()
    assert core.on_timer(3.0, "quiet") == [
        Persist(Decided((), ())),
        *to_all(Outcome("a", False, 0)),
    ]
    assert core.state == "closed" and core.winners == [] and core.prices == {}


# ------------------------------------------------------------------------ restarts


def test_english_restart_sends_releases_before_holds_then_the_timers() -> None:
    core = english()
    core.on_message(1.0, 2, Bid("a", 4))
    placed(core, 1.0, Hold("a/2/1", "acct2", 4))
    core.on_message(2.0, 3, Bid("a", 6))
    placed(core, 2.0, Hold("a/3/2", "acct3", 6))  # 2 outbid: its release is owed
    core.on_message(3.0, 4, Bid("a", 7))  # 4's hold is being placed
    again = Auctioneer(core.config)
    again.restore(list(core.snapshot_persistent()))  # a list does too
    assert again.on_start(4.0, random.Random(0)) == [
        ledger(Release("a/2/1")),
        ledger(Hold("a/4/3", "acct4", 7)),
        SetTimer("deadline", 96.0),
        SetTimer("quiet", 1.0),  # 3's bid stood at 2.0
    ]


def test_dutch_restart_while_closing_decides_on_start() -> None:
    core = dutch(start_price=8)
    core.on_message(0.5, 2, Bid("a", 8))
    core.on_timer(100.0, "deadline")
    assert core.state == "closing"
    records = core.snapshot_persistent()
    assert records[-1] == Closing()
    again = Auctioneer(core.config)
    again.restore((*records, HoldAnswered(2, False)))  # refused while it was down
    assert again.on_start(101.0, random.Random(0)) == [
        Persist(Decided((), ())),
        *to_all(Outcome("a", False, 0)),
    ]


def test_restore_errors_are_exact() -> None:
    e = config("english", quiet=1.0)
    used = Auctioneer(e)
    used.on_start(0.0, random.Random(0))
    cases: list[tuple[Auctioneer, Any, type[Exception], str]] = [
        (used, (), RuntimeError, "restore() needs a fresh Auctioneer (it already has records)"),
        (Auctioneer(e), {"a": 1}, TypeError, "expected a tuple of auction records, got dict"),
        (Auctioneer(e), (OpenStarted(0.0, 1.0), 5), TypeError, "not an auction record: int"),
        (
            Auctioneer(e),
            (Started(1.0),),
            TypeError,
            "Started is not a record of a english auction",
        ),
        (
            Auctioneer(config("first_price")),
            (OpenStarted(0.0, 1.0),),
            TypeError,
            "OpenStarted is not a record of a first_price auction",
        ),
        (
            Auctioneer(config("dutch", start_price=5, tick=1.0)),
            (OpenStarted(0.0, 1.0), BidTaken(2, 5, 1), BidStood(2, 0.5)),
            TypeError,
            "BidStood is not a record of a dutch auction",
        ),
        (
            Auctioneer(e),
            (OpenStarted(0.0, 1.0), Decided((9,), ((9, 1),))),
            ValueError,
            "Decided names bidder 9, not a bidder of auction 'a': records of another configuration",
        ),
        (
            Auctioneer(config("dutch", start_price=5, tick=1.0)),
            (OpenStarted(0.0, 1.0), HoldAnswered(7, True)),
            ValueError,
            "HoldAnswered names bidder 7, not a bidder of auction 'a': records of another"
            " configuration",
        ),
    ]
    for core, snapshot, error, text in cases:
        with pytest.raises(error, match=f"^{re.escape(text)}$"):
            core.restore(snapshot)
    assert used.snapshot_persistent() == (OpenStarted(0.0, 100.0),)


def test_a_restart_after_the_quiet_period_or_the_deadline_fires_them_at_once() -> None:
    core = english()  # started at 0.0: quiet 3 s, deadline 100 s
    records = core.snapshot_persistent()
    for now, quiet, deadline in ((2.0, 1.0, 98.0), (3.0, 0.0, 97.0), (150.0, 0.0, 0.0)):
        again = Auctioneer(core.config)
        again.restore(records)
        assert again.on_start(now, random.Random(0)) == [
            SetTimer("deadline", deadline),
            SetTimer("quiet", quiet),
        ]


def test_a_dutch_deadline_with_an_accept_being_placed_waits_for_its_hold() -> None:
    core = dutch(start_price=8)
    core.on_message(0.5, 2, Bid("a", 8))
    assert core.on_timer(100.0, "deadline") == [Persist(Closing())]
    assert core.on_message(100.1, 3, Bid("a", 8)) == [Send(3, BidRefused("a", "late"))]
    won = placed(core, 100.2, Hold("a/2", "acct2", 8))
    assert won[:3] == [
        Persist(HoldAnswered(2, True)),
        Send(2, BidAccepted("a", 8)),
        Persist(Decided((2,), ((2, 8),))),
    ]


@pytest.mark.parametrize(
    ("auction", "error", "text"),
    [
        (7, TypeError, "auction must be a str, got int"),
        (" \t", ValueError, "auction id must not be empty or blank, got ' \\t'"),
        ("", ValueError, "auction id must not be empty or blank, got ''"),
    ],
)
def test_a_bad_auction_id_is_refused_in_full(
    auction: object, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(text)}$"):
        AuctionConfig(auction, "first_price", 1.0, BIDDERS, "s", LEDGER)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "fields", "text"),
    [
        (
            "first_price",
            {"min_increment": 2},
            "min_increment is for english auctions, got min_increment=2 in a first_price auction",
        ),
        (
            "dutch",
            {"start_price": 5, "tick": 1.0, "max_bids": 5},
            "max_bids is for english auctions, got max_bids=5 in a dutch auction",
        ),
        (
            "english",
            {"quiet": 1.0, "decrement": 2},
            "decrement is for dutch auctions, got decrement=2 in a english auction",
        ),
    ],
)
def test_a_defaulted_parameter_of_another_format_is_refused_in_full(
    fmt: str, fields: dict[str, Any], text: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
        config(fmt, **fields)


def test_the_defaults_of_another_formats_parameters_are_accepted() -> None:
    c = config("first_price", min_increment=1, max_bids=1000, decrement=1)
    assert (c.min_increment, c.max_bids, c.decrement) == (1, 1000, 1)
    d = config("dutch", start_price=5, tick=1.0, min_increment=1, max_bids=1000)
    assert (d.min_increment, d.max_bids) == (1, 1000)
    e = config("english", quiet=1.0, decrement=1)
    assert e.decrement == 1


def test_the_english_hold_id_of_a_bidder_is_that_of_its_last_bid() -> None:
    core = english()
    core.on_message(1.0, 3, Bid("a", 4))
    core.on_message(1.0, 2, Bid("a", 6))
    assert (core.hold_id(3), core.hold_id(2), core.hold_id(2, 7)) == ("a/3/1", "a/2/2", "a/2/7")
