"""Exact edges of the auctioneer and the ledger node (protocols/auction.py) that the
mutation run of ``protocols/`` found unchecked: the client operations' replies."""

from __future__ import annotations

import random
import re

import pytest

from trio_foundation.protocols.auction import (
    AuctionConfig,
    Auctioneer,
    Bid,
    LedgerNode,
    LedgerRequest,
)
from trio_foundation.protocols.effects import ClientRequest, Reply, Send, SetTimer
from trio_foundation.protocols.ledger import Hold, Ledger, Mint, Open


def _auctioneer() -> Auctioneer:
    config = AuctionConfig("a", "second_price", 5.0, ((2, "acct2"),), "seller", 1)
    core = Auctioneer(config)
    core.on_start(0.0, random.Random(0))
    return core


def test_status_replies_state_winners_and_prices_to_the_asking_client() -> None:
    assert _auctioneer().on_client(1.0, ClientRequest("c7", "status")) == [
        Reply("c7", ("open", (), {}))
    ]


def test_an_unknown_op_is_refused_to_the_asking_client() -> None:
    assert _auctioneer().on_client(1.0, ClientRequest("c7", "bid", 3)) == [
        Reply("c7", "unknown op 'bid'", ok=False)
    ]


def test_the_ledger_node_replies_a_balance_or_names_the_missing_account() -> None:
    ledger = Ledger()
    ledger.apply(Open("alice"))
    ledger.apply(Mint("treasury", "alice", 7))
    node = LedgerNode(ledger)
    assert node.on_client(0.0, ClientRequest("c1", "balance", "alice")) == [Reply("c1", 7)]
    assert node.on_client(0.0, ClientRequest("c2", "balance", "bob")) == [
        Reply("c2", "no account 'bob'", ok=False)
    ]
    # an op other than "balance" is refused too, even for a known account
    assert node.on_client(0.0, ClientRequest("c3", "transfer", "alice")) == [
        Reply("c3", "unknown op 'transfer' (only 'balance')", ok=False)
    ]


def test_a_restart_re_sends_the_hold_of_every_bid_not_yet_answered() -> None:
    core = _auctioneer()
    first = core.on_message(1.0, 2, Bid("a", 7))
    hold = Send(1, LedgerRequest(Hold("a/2", "acct2", 7)))
    assert first[1:] == [hold]
    fresh = Auctioneer(core.config)
    fresh.restore(core.snapshot_persistent())
    # started at 0.0 with a 5 s deadline: 3 s left at 2.0
    assert fresh.on_start(2.0, random.Random(0)) == [SetTimer("deadline", 3.0), hold]


@pytest.mark.parametrize(
    ("field", "value", "error", "text"),
    [
        ("units", 0, ValueError, "units must be >= 1, got 0"),
        ("units", "2", TypeError, "units must be an int, got str"),
        ("reserve", -1, ValueError, "reserve must be >= 0, got -1"),
    ],
)
def test_bad_units_and_reserve_are_named(
    field: str, value: object, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(text)}$"):
        AuctionConfig("a", "second_price", 5.0, ((2, "acct2"),), "seller", 1, **{field: value})  # type: ignore[arg-type]


def test_a_zero_bid_is_recorded_as_zero_without_a_hold() -> None:
    core = _auctioneer()
    effects = core.on_message(1.0, 2, Bid("a", 0))
    assert not [e for e in effects if isinstance(e, Send) and e.to == 1]  # no hold
    assert core.bids == {2: (0, 1)}
    fresh = Auctioneer(core.config)
    fresh.restore(core.snapshot_persistent())
    assert fresh.bids == {2: (0, 1)}


def test_a_restart_at_or_after_the_deadline_fires_it_at_once() -> None:
    core = _auctioneer()  # started at 0.0, deadline 5.0
    for now, delay in ((4.5, 0.5), (5.0, 0.0), (9.0, 0.0)):
        fresh = Auctioneer(core.config)
        fresh.restore(core.snapshot_persistent())
        assert fresh.on_start(now, random.Random(0)) == [SetTimer("deadline", delay)]


@pytest.mark.parametrize(
    ("fmt", "fields", "text"),
    [
        ("first_price", {"deadline": 0}, "deadline must be > 0 seconds (finite), got 0"),
        ("uniform", {"deadline": float("nan")}, "deadline must be > 0 seconds (finite), got nan"),
        ("second_price", {"units": 2}, "second_price sells one unit, got units=2"),
        ("first_price", {"units": 3}, "first_price sells one unit, got units=3"),
    ],
)
def test_sealed_config_errors_are_exact(fmt: str, fields: dict[str, object], text: str) -> None:
    args: dict[str, object] = {
        "auction": "a",
        "format": fmt,
        "deadline": 5.0,
        "bidders": ((2, "acct2"),),
        "seller": "seller",
        "ledger": 1,
        **fields,
    }
    with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
        AuctionConfig(**args)  # type: ignore[arg-type]
    assert AuctionConfig("a", "uniform", 5.0, ((2, "acct2"),), "s", 1, units=3).units == 3
