"""Unit tests of the English and Dutch auctioneers (protocols/auction.py) and their examples."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from trio_foundation.protocols.auction import (
    AuctionConfig,
    Auctioneer,
    Bid,
    BidAccepted,
    BidRefused,
    BidStood,
    LedgerNode,
    OpenStarted,
    Outcome,
    PriceClock,
    Standing,
    Started,
)
from trio_foundation.protocols.effects import Persist, Send, SetTimer
from trio_foundation.protocols.ledger import Ledger, Mint, Open

DOC = Path(__file__).resolve().parent.parent / "docs" / "auctions.md"
LEDGER = 1
BIDDERS = ((2, "acct2"), (3, "acct3"), (4, "acct4"))


def world(fmt: str, **fields: Any) -> tuple[Auctioneer, LedgerNode]:
    ledger = Ledger()
    for account in ("seller", "acct2", "acct3", "acct4"):
        ledger.apply(Open(account))
    for account in ("acct2", "acct3", "acct4"):
        ledger.apply(Mint("treasury", account, 10))
    config = AuctionConfig("a", fmt, 100.0, BIDDERS, "seller", LEDGER, **fields)  # type: ignore[arg-type]
    return Auctioneer(config), LedgerNode(ledger)


def pump(core: Auctioneer, node: LedgerNode, effects: list[Any], now: float = 0.0) -> list[Send]:
    """Run ledger round trips to completion; return the messages sent to bidders."""
    out: list[Send] = []
    queue = list(effects)
    while queue:
        effect = queue.pop(0)
        if isinstance(effect, Send) and effect.to == LEDGER:
            for answer in node.on_message(now, 0, effect.msg):
                if isinstance(answer, Send):
                    queue.extend(core.on_message(now, LEDGER, answer.msg))
        elif isinstance(effect, Send):
            out.append(effect)
    return out


def timers(effects: list[Any]) -> dict[str, float]:
    return {e.name: e.delay for e in effects if isinstance(e, SetTimer)}


# ------------------------------------------------------------------------ English


def test_english_outbid_is_released_and_the_winner_pays_its_bid() -> None:
    core, node = world("english", quiet=3.0, min_increment=2, reserve=1)
    assert timers(core.on_start(0.0, random.Random(0))) == {"deadline": 100.0, "quiet": 3.0}
    out = pump(core, node, core.on_message(1.0, 2, Bid("a", 4)), 1.0)
    assert next(s.msg for s in out if s.to == 2) == BidAccepted("a", 4)
    assert {s.to for s in out if isinstance(s.msg, Standing)} == {2, 3, 4}  # open: all hear
    assert node.ledger.holds() == {"a/2/1": ("acct2", 4)}
    assert pump(core, node, core.on_message(2.0, 3, Bid("a", 5)))[0].msg == BidRefused(
        "a", "too_low"
    )  # 4 + 2 > 5
    step = core.on_message(2.5, 3, Bid("a", 6))
    out = pump(core, node, step, 2.5)
    assert Standing("a", 3, 6) in [s.msg for s in out]
    assert node.ledger.holds() == {"a/3/2": ("acct3", 6)}  # 2's hold released: one live hold
    assert core.standing == (3, 6, 2)
    # the quiet period restarts at each standing bid
    step = core.on_message(3.0, 2, Bid("a", 8))
    stood = [e for e in step if isinstance(e, SetTimer)]
    assert not stood  # the hold is being placed: nothing stands yet
    out = pump(core, node, step, 3.5)
    assert core.standing == (2, 8, 3)
    out = pump(core, node, core.on_timer(6.5, "quiet"), 6.5)
    assert {s.to: s.msg for s in out} == {
        2: Outcome("a", True, 8),
        3: Outcome("a", False, 0),
        4: Outcome("a", False, 0),
    }
    assert node.ledger.balances() == {"seller": 8, "acct2": 2, "acct3": 10, "acct4": 10}
    assert node.ledger.holds() == {}
    assert pump(core, node, core.on_message(7.0, 4, Bid("a", 9)))[0].msg == BidRefused("a", "late")


def test_english_refusals_name_the_reason() -> None:
    core, node = world("english", quiet=3.0, reserve=2, max_bids=3)
    core.on_start(0.0, random.Random(0))

    def bid(bidder: int, amount: Any) -> Any:
        return pump(core, node, core.on_message(1.0, bidder, Bid("a", amount)))[0].msg

    assert bid(9, 5) == BidRefused("a", "unknown_bidder")
    assert bid(2, -1) == BidRefused("a", "bad_bid")
    assert bid(2, 1) == BidRefused("a", "below_reserve")
    assert bid(4, 11) == BidRefused("a", "insufficient_funds")  # taken 1
    assert bid(4, 3) == BidAccepted("a", 3)  # an unfunded bidder may bid again; taken 2
    assert bid(4, 5) == BidRefused("a", "duplicate")  # it stands: one live hold
    assert bid(2, 3) == BidRefused("a", "too_low")  # equal: ties are impossible
    assert bid(2, 4) == BidAccepted("a", 4)  # taken 3
    assert bid(3, 9) == BidRefused("a", "limit")  # max_bids taken


def test_english_restart_keeps_the_quiet_period_and_the_deadline() -> None:
    core, node = world("english", quiet=3.0)
    effects = core.on_start(10.0, random.Random(0))
    assert effects[0] == Persist(OpenStarted(10.0, 110.0))
    pump(core, node, core.on_message(11.0, 2, Bid("a", 4)), 11.0)
    records = core.snapshot_persistent()
    assert BidStood(2, 11.0) in records
    again = Auctioneer(core.config)
    again.restore(records)
    assert again.standing == (2, 4, 1)
    assert timers(again.on_start(13.0, random.Random(0))) == {"deadline": 97.0, "quiet": 1.0}
    assert timers(Auctioneer(core.config).on_start(5.0, random.Random(0)))["quiet"] == 3.0
    with pytest.raises(TypeError, match="Started is not a record of a english auction"):
        Auctioneer(core.config).restore((Started(1.0),))


def test_english_close_waits_for_the_hold_being_placed() -> None:
    core, node = world("english", quiet=3.0)
    core.on_start(0.0, random.Random(0))
    hold = core.on_message(1.0, 3, Bid("a", 5))  # the hold is in flight
    assert [
        type(e.data).__name__ for e in core.on_timer(4.0, "quiet") if isinstance(e, Persist)
    ] == ["Closing"]
    assert pump(core, node, core.on_message(4.0, 2, Bid("a", 9)))[0].msg == BidRefused("a", "late")
    out = pump(core, node, hold, 4.5)
    assert Outcome("a", True, 5) in [s.msg for s in out] and core.winners == [3]
    assert node.ledger.balances()["seller"] == 5 and node.ledger.holds() == {}


# ------------------------------------------------------------------------ Dutch


def test_dutch_clock_falls_and_the_first_accept_wins_at_the_clock_price() -> None:
    core, node = world("dutch", start_price=9, decrement=2, tick=1.0, reserve=3)
    start = core.on_start(0.0, random.Random(0))
    assert timers(start) == {"deadline": 100.0, "tick": 1.0}
    assert {s.msg for s in start if isinstance(s, Send)} == {PriceClock("a", 9)}
    tick = core.on_timer(1.0, "tick")
    assert PriceClock("a", 7) in [s.msg for s in tick if isinstance(s, Send)]
    assert core.clock_price(2.5) == 5 and core.clock_price(50.0) == 3
    out = pump(core, node, core.on_message(1.2, 3, Bid("a", 9)), 1.2)
    assert out[0].msg == BidRefused("a", "stale_price")  # the clock has left 9
    assert pump(core, node, core.on_message(1.3, 3, Bid("a", 5)))[0].msg == BidRefused(
        "a", "stale_price"
    )  # nor has it reached 5
    out = pump(core, node, core.on_message(1.5, 4, Bid("a", 7)), 1.5)
    assert core.state == "closed" and core.winners == [4] and core.prices == {4: 7}
    assert Outcome("a", True, 7) in [s.msg for s in out]
    assert node.ledger.balances() == {"seller": 7, "acct2": 10, "acct3": 10, "acct4": 3}
    assert pump(core, node, core.on_message(1.6, 2, Bid("a", 7)))[0].msg == BidRefused("a", "late")


def test_dutch_earliest_funded_accept_wins_and_the_others_are_released() -> None:
    core, node = world("dutch", start_price=12, tick=1.0)
    core.on_start(0.0, random.Random(0))
    first = core.on_message(0.1, 2, Bid("a", 12))  # 2 has only 10: its hold will be refused
    second = core.on_message(0.2, 3, Bid("a", 12))  # 3 has only 10 too
    core.on_timer(1.0, "tick")
    third = core.on_message(1.1, 4, Bid("a", 11))
    assert core.state == "open"
    out = pump(core, node, first + second + third, 1.2)
    assert [s.msg for s in out if s.to in (2, 3)][:2] == [
        BidRefused("a", "insufficient_funds"),
        BidRefused("a", "insufficient_funds"),
    ]
    assert core.winners == [] and core.state == "open"  # 4's accept costs 11: refused too
    core2, node2 = world("dutch", start_price=8, tick=1.0)
    core2.on_start(0.0, random.Random(0))
    a = core2.on_message(0.1, 2, Bid("a", 8))
    b = core2.on_message(0.2, 3, Bid("a", 8))
    out = pump(core2, node2, b + a, 0.3)  # the later accept's hold is answered first
    assert core2.winners == [2] and core2.prices == {2: 8}  # the earlier receipt wins
    assert node2.ledger.holds() == {} and node2.ledger.balances()["acct3"] == 10


def test_dutch_closes_unsold_at_the_floor_and_restart_keeps_the_price() -> None:
    core, node = world("dutch", start_price=4, decrement=3, tick=2.0, reserve=2)
    core.on_start(10.0, random.Random(0))
    assert core.clock_price(12.0) == 2  # 4 - 3 < 2: the floor
    again = Auctioneer(core.config)
    again.restore(core.snapshot_persistent())
    effects = again.on_start(13.0, random.Random(0))  # a restart mid-tick
    assert PriceClock("a", 2) in [e.msg for e in effects if isinstance(e, Send)]
    assert timers(effects)["tick"] == pytest.approx(1.0)
    out = pump(again, node, again.on_timer(14.0, "tick"))  # one tick at the reserve: closed
    assert again.state == "closed" and again.winners == []
    assert {s.msg for s in out} == {Outcome("a", False, 0)}


def test_open_formats_refuse_bad_config() -> None:
    base = ("a", "english", 10.0, BIDDERS, "s", 1)
    with pytest.raises(ValueError, match="a english auction needs quiet"):
        AuctionConfig(*base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_increment must be >= 1, got -1"):
        AuctionConfig(*base, quiet=1.0, min_increment=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quiet must be > 0 seconds"):
        AuctionConfig(*base, quiet=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deadline must be > 0 seconds"):
        AuctionConfig("a", "english", float("inf"), BIDDERS, "s", 1, quiet=1.0)
    with pytest.raises(ValueError, match="tick is for dutch auctions"):
        AuctionConfig(*base, quiet=1.0, tick=1.0)  # type: ignore[arg-type]
    dutch = ("a", "dutch", 10.0, BIDDERS, "s", 1)
    with pytest.raises(ValueError, match="tick must be > 0 seconds"):
        AuctionConfig(*dutch, start_price=5, tick=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decrement must be >= 1, got -2"):
        AuctionConfig(*dutch, start_price=5, tick=1.0, decrement=-2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("start_price must be >= reserve (6), got 5")):
        AuctionConfig(*dutch, start_price=5, tick=1.0, reserve=6)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="english sells one unit"):
        AuctionConfig(*base, quiet=1.0, units=2)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="clock_price is for dutch"):
        Auctioneer(AuctionConfig(*base, quiet=1.0)).clock_price(0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("section", ["## English ascending", "## Dutch descending"])
def test_the_docs_examples_print_what_the_doc_says(
    section: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DOC.read_text(encoding="utf-8")
    part = text[text.index(section) :]
    code = re.search(r"```python\n(.*?)```", part, re.S)
    shown = re.search(r"prints\n\n```\n(.*?)```", part, re.S)
    assert code is not None and shown is not None, f"docs/auctions.md lost {section}'s example"
    exec(compile(code.group(1), str(DOC), "exec"), {})
    assert capsys.readouterr().out == shown.group(1)


def test_english_one_live_hold_per_bidder_whatever_the_ledger_order() -> None:
    core, node = world("english", quiet=3.0, max_bids=4)
    core.on_start(0.0, random.Random(0))
    pump(core, node, core.on_message(1.0, 2, Bid("a", 2)))
    step = core.on_message(1.0, 3, Bid("a", 3))
    hold = [e for e in step if isinstance(e, Send)]
    release = [e for e in pump_hold_only(core, node, hold) if isinstance(e, Send)]
    assert [type(e.msg.command).__name__ for e in release if e.to == LEDGER] == ["Release"]
    # 2 is outbid but its release is not answered yet: a new hold could overtake it
    assert core.on_message(1.5, 2, Bid("a", 5)) == [Send(2, BidRefused("a", "duplicate"))]
    pump(core, node, release)
    assert node.ledger.holds() == {"a/3/2": ("acct3", 3)}
    out = pump(core, node, core.on_message(2.0, 2, Bid("a", 5)))
    assert BidAccepted("a", 5) in [s.msg for s in out]
    pump(core, node, core.on_timer(5.0, "quiet"))
    records = core.snapshot_persistent()
    assert len(records) <= 3 * core.config.max_bids + 3
    assert [type(r).__name__ for r in records] == [
        "OpenStarted",
        "BidTaken",
        "BidStood",
        "BidTaken",
        "BidStood",
        "CloseAnswered",
        "BidTaken",
        "BidStood",
        "CloseAnswered",
        "Decided",
        "CloseAnswered",
    ]


def pump_hold_only(core: Auctioneer, node: LedgerNode, effects: list[Any]) -> list[Any]:
    """Apply the holds in ``effects`` at the ledger; return what the auctioneer answered."""
    out: list[Any] = []
    for effect in effects:
        for answer in node.on_message(0.0, 0, effect.msg):
            if isinstance(answer, Send):
                out.extend(core.on_message(0.0, LEDGER, answer.msg))
    return out
