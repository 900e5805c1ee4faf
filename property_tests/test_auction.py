"""The real Auctioneer and LedgerNode under lossy bidders, with specs/Auction.tla's invariants.

The harness is the spec's world: bidders (registered ones, and one unknown) send
bids that the network delivers, duplicates, reorders or drops; bidders may bid
twice, bid late, or crash (stop sending: a rule never chosen); the deadline
fires; the auctioneer crashes and restarts from its persisted state (answers in
flight to it are lost; the ledger link is otherwise reliable and FIFO). An
observer records every bid delivered (with whether the deadline had fired),
every message sent to a bidder and every ledger result, and checks after every
step ``OneWinnerPerUnit``, ``WinnerHasBestBid``, ``PriceRule``, ``NoLateBid``,
``LosersReleased``, ``Sealed`` (nothing about bids before the close) and the
ledger's ``Conservation``.

The search is biased towards the states the invariants are about, without
knowing any broken variant: swarm testing (each run enables a random subset of
the fault rules), a rule delivering a registered bidder's positive bid at once
(rival escrowed bids and ties), and an early deadline on one draw in four.
Broken auctioneers must be caught by fresh random searches:
``test_broken_variant_is_caught`` (one search each, in CI) and
``test_broken_variant_catch_rate`` (slow: ``CATCH_RUNS`` searches each, the rate
and its Wilson interval printed).
"""

from __future__ import annotations

import os
import random
from collections import deque
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from trio_foundation.protocols.auction import (
    AuctionConfig,
    Auctioneer,
    Bid,
    BidAccepted,
    BidRefused,
    LedgerAnswer,
    LedgerNode,
    LedgerRequest,
    Outcome,
    clear,
)
from trio_foundation.protocols.effects import Persist, Send, SetTimer
from trio_foundation.protocols.ledger import Hold, Ledger, Mint, Ok, Open, Settle
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

AUCTIONEER, LEDGER = 0, 1
BIDDERS = (2, 3, 4)
UNKNOWN = 9
FAULTS = ("drop", "duplicate", "crash")
SETTINGS = settings(max_examples=100, stateful_step_count=30)


def machine(cls: type[Auctioneer] = Auctioneer) -> type[RuleBasedStateMachine]:
    class AuctionMachine(RuleBasedStateMachine):
        @initialize(
            fmt=st.sampled_from(["first_price", "second_price", "uniform"]),
            reserve=st.integers(0, 1),
            funds=st.lists(st.integers(1, 4), min_size=3, max_size=3),
            slow_ledger=st.booleans(),
            faults=st.sets(st.sampled_from(FAULTS)),
        )
        def setup(
            self, fmt: str, reserve: int, funds: list[int], slow_ledger: bool, faults: set[str]
        ) -> None:
            # slow_ledger: the ledger's steps are rules of their own (holds may be pending
            # at the close); else every ledger request is answered at once.
            # faults: swarm testing (Groce et al. 2012) — each run enables a random subset
            # of the fault rules, so some runs are calm enough to reach rival escrowed bids
            # and ties at the close, others are stormy.
            self.slow_ledger = slow_ledger
            self.faults = frozenset(faults)
            units = 2 if fmt == "uniform" else 1
            self.config = AuctionConfig(
                auction="a1",
                format=fmt,  # type: ignore[arg-type]
                deadline=10.0,
                bidders=tuple((b, f"acct{b}") for b in BIDDERS),
                seller="seller",
                ledger=LEDGER,
                units=units,
                reserve=reserve,
            )
            ledger = Ledger()
            for account in ["seller", *(f"acct{b}" for b in BIDDERS)]:
                ledger.apply(Open(account))
            for b, amount in zip(BIDDERS, funds, strict=True):
                if amount:
                    ledger.apply(Mint("treasury", f"acct{b}", amount))
            self.supply = ledger.supply
            self.ledger = LedgerNode(ledger)
            self.core = cls(self.config)
            self.net: list[tuple[int, Bid]] = []  # bidder -> auctioneer, unordered
            self.to_ledger: deque[LedgerRequest] = deque()
            self.to_core: deque[LedgerAnswer] = deque()
            self.closed = False  # the deadline fired (observer)
            self.delivered: list[tuple[int, Any, bool]] = []  # (bidder, amount, after close)
            self.late_accepted: list[int] = []
            self.inbox: list[tuple[int, Any, bool]] = []  # (bidder, msg, sent after close)
            self.ledger_log: list[tuple[Any, Any]] = []
            self._run(self.core.on_start(0.0, random.Random(0)))

        # ------------------------------------------------------------ plumbing

        def _run(self, effects: list[Any], delivered_late: bool = False) -> None:
            for effect in effects:
                if isinstance(effect, Send) and effect.to == LEDGER:
                    self.to_ledger.append(effect.msg)
                    if delivered_late and isinstance(effect.msg.command, Hold):
                        self.late_accepted.append(-1)
                elif isinstance(effect, Send):
                    if delivered_late and isinstance(effect.msg, BidAccepted):
                        self.late_accepted.append(effect.to)
                    self.inbox.append((effect.to, effect.msg, self.core.state == "closed"))
                else:
                    assert isinstance(effect, Persist | SetTimer)
            while not self.slow_ledger and (self.to_ledger or self.to_core):
                if self.to_ledger:
                    self.LedgerStep()
                else:
                    self.AnswerArrives()

        # ------------------------------------------------------------ rules

        @rule(bidder=st.sampled_from((*BIDDERS, UNKNOWN)), amount=st.integers(-1, 2))
        def SendBid(self, bidder: int, amount: int) -> None:
            self.net.append((bidder, Bid("a1", amount)))

        @rule(bidder=st.sampled_from(BIDDERS), amount=st.integers(1, 2))
        def BidArrives(self, bidder: int, amount: int) -> None:
            """A registered bidder's positive bid is sent and delivered at once (rival
            escrowed bids and ties among them are common: three bidders, two amounts)."""
            self._deliver(bidder, Bid("a1", amount))

        def _deliver(self, bidder: int, bid: Bid) -> None:
            self.delivered.append((bidder, bid.amount, self.closed))
            self._run(self.core.on_message(1.0, bidder, bid), delivered_late=self.closed)

        @precondition(lambda self: self.net)
        @rule(data=st.data(), keep=st.booleans())
        def Receive(self, data: st.DataObject, keep: bool) -> None:
            """Deliver one bid in any order; ``keep`` leaves a duplicate in flight."""
            i = data.draw(st.integers(0, len(self.net) - 1))
            keep = keep and "duplicate" in self.faults
            bidder, bid = self.net[i] if keep else self.net.pop(i)
            self._deliver(bidder, bid)

        @precondition(lambda self: self.net and "drop" in self.faults)
        @rule(data=st.data())
        def Drop(self, data: st.DataObject) -> None:
            self.net.pop(data.draw(st.integers(0, len(self.net) - 1)))

        @precondition(lambda self: self.to_ledger)
        @rule()
        def LedgerStep(self) -> None:
            request = self.to_ledger.popleft()
            for effect in self.ledger.on_message(1.0, AUCTIONEER, request):
                if isinstance(effect, Send):
                    self.ledger_log.append((effect.msg.command, effect.msg.result))
                    self.to_core.append(effect.msg)

        @precondition(lambda self: self.to_core)
        @rule()
        def AnswerArrives(self) -> None:
            self._run(self.core.on_message(1.0, LEDGER, self.to_core.popleft()))

        @precondition(lambda self: not self.closed)
        @rule(now=st.integers(0, 3))
        def Close(self, now: int) -> None:
            """The deadline fires; before more registered bidders than units were heard only
            on draw 3 (so most auctions see rival bids, some close with too few)."""
            rivals = {b for b, _, _ in self.delivered if b in BIDDERS}
            if len(rivals) <= self.config.units and now != 3:
                return
            self.closed = True
            self._run(self.core.on_timer(10.0, "deadline"))

        @precondition(lambda self: "crash" in self.faults)
        @rule()
        def CrashAuctioneer(self) -> None:
            """Restart from the persisted state; answers in flight to it are lost."""
            fresh = cls(self.config)
            fresh.restore(self.core.snapshot_persistent())
            self.core = fresh
            self.to_core.clear()
            now = 10.0 if self.closed else 1.0
            effects = fresh.on_start(now, random.Random(0))
            if self.closed:  # the re-armed deadline fires at once
                effects += fresh.on_timer(now, "deadline")
            self._run(effects)

        # ------------------------------------------------------------ observer

        def _valid(self) -> dict[int, tuple[int, int]]:
            """Per bidder, the first bid delivered before the close, escrowed (ledger Ok)."""
            holds_ok = {
                c.hold for c, r in self.ledger_log if isinstance(c, Hold) and isinstance(r, Ok)
            }
            valid: dict[int, tuple[int, int]] = {}
            for receipt, (b, amount, late) in enumerate(self.delivered):
                if late or b not in BIDDERS or b in valid:
                    continue
                if not isinstance(amount, int) or amount < self.config.reserve:
                    continue
                if amount == 0 or f"a1/{b}" in holds_ok:
                    valid[b] = (amount, receipt)
                else:
                    valid[b] = (-1, receipt)  # its hold was refused or is pending
            return {b: v for b, v in valid.items() if v[0] >= 0}

        def _outcomes(self) -> dict[int, Outcome]:
            return {b: m for b, m, _ in self.inbox if isinstance(m, Outcome)}

        def _decided(self) -> bool:
            return self.core.state == "closed" and not self.to_ledger and not self.to_core

        @invariant()
        def checks(self) -> None:
            if not hasattr(self, "core"):
                return
            self.NoLateBid()
            self.OneWinnerPerUnit()
            self.PriceRule()
            self.WinnerHasBestBid()
            self.LosersReleased()
            self.Sealed()
            self.Conservation()

        def NoLateBid(self) -> None:
            assert not self.late_accepted, (
                f"NoLateBid: accepted after the close: {self.late_accepted}"
            )

        def OneWinnerPerUnit(self) -> None:
            winners = [b for b, o in self._outcomes().items() if o.won]
            assert len(winners) <= self.config.units, f"OneWinnerPerUnit: {winners}"
            assert len(self.core.winners) == len(set(self.core.winners)) <= self.config.units, (
                f"OneWinnerPerUnit: {self.core.winners}"
            )

        def PriceRule(self) -> None:
            if self.core.state != "closed":
                return
            valid = self._valid()
            _, expected = clear(valid, self.config.format, self.config.units, self.config.reserve)
            for b, o in self._outcomes().items():
                if o.won:
                    assert o.price <= valid[b][0], f"PriceRule: {b} pays {o.price} > its bid"
                    assert o.price == expected.get(b), (
                        f"PriceRule: {b} pays {o.price}, the {self.config.format} rule says"
                        f" {expected.get(b)} (bids {valid})"
                    )

        def WinnerHasBestBid(self) -> None:
            if self.core.state != "closed":
                return
            valid = self._valid()
            best, _ = clear(valid, self.config.format, self.config.units, self.config.reserve)
            assert sorted(self.core.winners) == sorted(best), (
                f"WinnerHasBestBid: winners {self.core.winners}, best valid bids {best} of {valid}"
            )

        def LosersReleased(self) -> None:
            if not self._decided():
                return
            open_holds = self.ledger.ledger.holds()
            assert not open_holds, f"LosersReleased: holds still open at the close: {open_holds}"
            for c, r in self.ledger_log:
                if isinstance(c, Settle) and isinstance(r, Ok):
                    assert c.amount == self.core.prices[int(c.hold.split("/")[1])]

        def Sealed(self) -> None:
            for b, msg, after in self.inbox:
                if not after:
                    assert isinstance(msg, BidAccepted | BidRefused), f"Sealed: {b} got {msg}"
                    if isinstance(msg, BidAccepted):
                        own = [a for x, a, _ in self.delivered if x == b]
                        assert msg.amount in own, f"Sealed: {b} was told of a bid it never sent"

        def Conservation(self) -> None:
            ledger = self.ledger.ledger
            total = sum(ledger.balances().values()) + sum(n for _, n in ledger.holds().values())
            assert total == self.supply, f"Conservation: {total} != {self.supply}"

    return AuctionMachine


def test_auction_invariants_hold() -> None:
    run_state_machine_as_test(machine(), settings=SETTINGS)


# ------------------------------------------------------------------------ broken variants


class LateBidAccepted(Auctioneer):  # type: ignore[misc]
    def _refusal(self, bidder: int, amount: Any) -> str | None:
        state, self.state = self.state, "open"  # ignores the deadline
        try:
            return super()._refusal(bidder, amount)
        finally:
            self.state = state


class FirstPriceInVickrey(Auctioneer):  # type: ignore[misc]
    def _clear(self) -> tuple[list[int], dict[int, int]]:
        winners, _ = super()._clear()
        return winners, {w: self.bids[w][0] for w in winners}


class LoserKeptInEscrow(Auctioneer):  # type: ignore[misc]
    def _to_ledger(self, command: Any) -> Send:
        if type(command).__name__ == "Release":
            return Send(AUCTIONEER, None)  # never reaches the ledger
        return super()._to_ledger(command)


class TwoWinners(Auctioneer):  # type: ignore[misc]
    def _clear(self) -> tuple[list[int], dict[int, int]]:
        winners, prices = super()._clear()
        if winners:
            last = self.bids[winners[-1]][0]
            tied = [b for b in sorted(self.bids) if self.bids[b][0] == last and b not in winners]
            winners = winners + tied  # a tie for the last unit: both win
            prices.update({b: prices[winners[0]] for b in tied})
        return winners, prices


BROKEN: dict[str, tuple[type[Auctioneer], tuple[str, ...]]] = {
    "late_bid_accepted": (LateBidAccepted, ("NoLateBid",)),
    "first_price_in_vickrey": (FirstPriceInVickrey, ("PriceRule",)),
    "loser_kept_in_escrow": (LoserKeptInEscrow, ("LosersReleased",)),
    "two_winners": (TwoWinners, ("OneWinnerPerUnit",)),
}


def _caught(name: str) -> bool:
    """One fresh search (random seed, no database, no shrinking); True if caught as expected."""
    cls, expected = BROKEN[name]
    return caught_by_fresh_search(
        machine(cls), SETTINGS, expected, name=name, max_examples=300, stateful_step_count=50
    )


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_is_caught(name: str) -> None:
    """Up to two fresh searches per broken auctioneer (each caught in >= 95 % of searches,
    measured: docs/auctions.md): a second fresh search after a miss (a new random seed,
    not a remembered one) squares CI's miss rate; one search missed `two_winners` once."""
    assert _caught(name) or _caught(name), f"two fresh searches missed the {name} auctioneer"


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_catch_rate(name: str) -> None:
    """``CATCH_RUNS`` (default 40) fresh searches each; the rate and its Wilson 95 %
    interval are printed (docs/auctions.md has the figures)."""
    runs = int(os.environ.get("CATCH_RUNS", "40"))
    rate = measure_catch_rate(lambda: _caught(name), runs)
    print(f"\n{name}: {rate}")
    assert rate.rate >= 0.95
