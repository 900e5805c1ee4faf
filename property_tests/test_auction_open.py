"""The real English and Dutch Auctioneer under lossy bidders, with AuctionOpen.tla's invariants.

The harness is the spec's world with a clock: bidders (registered ones, and one
unknown) send bids (Dutch: accepts of a price) that the network delivers,
duplicates, reorders or drops; bidders bid twice, bid late, or crash (stop
sending: a rule never chosen); time advances and fires the auctioneer's timers
when they are due (deadline, quiet period, clock ticks); the ledger answers at
once or as a rule of its own; the auctioneer crashes and restarts from its
persisted records (answers in flight to it and its armed timers are lost).

The observer keeps its own clock and its own view: when the auction must be
closed (English: the deadline, or ``quiet`` seconds after the last standing
bid it saw broadcast before that; Dutch: the deadline, one tick at the reserve,
or the first ``Outcome``), the price the clock must show at any time (from the
start time, ``start_price``, ``decrement`` and ``tick``), every message sent to
a bidder, every ledger result. After every step it checks ``OneWinner``,
``NoLateBid``, ``WinnerPaysStanding``, ``WinnerHasBestBid``, ``StandingRises``,
``OutbidReleased``, ``QuietRespected``, ``DutchPriceRule``, ``FirstAcceptWins``,
``PriceNeverRises``, ``LosersReleased`` (the spec's names) and the ledger's
``Conservation``.

The search is biased towards the states the invariants are about, without
knowing any broken variant: swarm testing (each run enables a random subset of
the fault rules); a rule ``BidArrives`` in which a registered bidder bids what
it would from what it heard (English: the last standing bid it saw plus the
increment, one less or one more; Dutch: the last price it heard) and the bid is
delivered at once; ``BidInFlight``, the same bid sent into the network (it
arrives by ``Receive``); ``BidCrossesTick``, the same bid arriving after time
passed (the race of a bid with the clock's tick, the quiet period or the
deadline); a Dutch rule ``RivalsAccept`` in which two or three bidders do so
in a row (a race at one price). The ledger applies requests, and its answers
reach the auctioneer, in any order (the link reorders, never loses); a slow
ledger catches up oldest or newest request first, its answers arriving in the
order it gave them.
Broken auctioneers, one per mutant of specs/broken/ (same names), must be
caught by fresh random searches over auctions of the format whose code they
break (the search knows the format, not the bug):
``test_broken_variant_is_caught`` (one search each, in CI) and
``test_broken_variant_catch_rate`` (slow: ``CATCH_RUNS`` searches each).
"""

from __future__ import annotations

import itertools
import math
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
    Closing,
    Decided,
    LedgerAnswer,
    LedgerNode,
    LedgerRequest,
    Outcome,
    PriceClock,
    Standing,
)
from trio_foundation.protocols.effects import CancelTimer, Persist, Send, SetTimer
from trio_foundation.protocols.ledger import Hold, Ledger, Mint, Ok, Open, Settle
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

AUCTIONEER, LEDGER = 0, 1
BIDDERS = (2, 3, 4)
UNKNOWN = 9
FAULTS = ("drop", "duplicate", "crash")
SETTINGS = settings(max_examples=100, stateful_step_count=30)
DEADLINE, QUIET, TICK = 10.0, 2.0, 1.0


def machine(
    cls: type[Auctioneer] = Auctioneer, formats: tuple[str, ...] = ("english", "dutch")
) -> type[RuleBasedStateMachine]:
    class OpenAuctionMachine(RuleBasedStateMachine):
        @initialize(
            fmt=st.sampled_from(formats),
            reserve=st.integers(0, 2),
            increment=st.integers(1, 2),
            start=st.integers(0, 4),
            decrement=st.integers(1, 2),
            funds=st.lists(st.integers(1, 6), min_size=3, max_size=3),
            slow_ledger=st.integers(0, 3).map(bool),  # slow on 3 draws in 4
            faults=st.sets(st.sampled_from(FAULTS)),
        )
        def setup(
            self,
            fmt: str,
            reserve: int,
            increment: int,
            start: int,
            decrement: int,
            funds: list[int],
            slow_ledger: bool,
            faults: set[str],
        ) -> None:
            # swarm testing (Groce et al. 2012): a random subset of the fault rules
            self.fmt = fmt
            self.slow_ledger = slow_ledger
            self.faults = frozenset(faults)
            common = {
                "auction": "a1",
                "format": fmt,
                "deadline": DEADLINE,
                "bidders": tuple((b, f"acct{b}") for b in BIDDERS),
                "seller": "seller",
                "ledger": LEDGER,
                "reserve": reserve,
            }
            if fmt == "english":
                extra: dict[str, Any] = {"quiet": QUIET, "min_increment": increment}
            else:
                extra = {"start_price": reserve + start, "decrement": decrement, "tick": TICK}
            self.config = AuctionConfig(**common, **extra)
            ledger = Ledger()
            for account in ["seller", *(f"acct{b}" for b in BIDDERS)]:
                ledger.apply(Open(account))
            for b, amount in zip(BIDDERS, funds, strict=True):
                ledger.apply(Mint("treasury", f"acct{b}", amount))
            self.supply = ledger.supply
            self.ledger = LedgerNode(ledger)
            self.core = cls(self.config)
            self.now = 0.0
            self.timers: dict[str, float] = {}
            self.net: list[tuple[int, Bid]] = []  # bidder -> auctioneer, unordered
            self.to_ledger: deque[LedgerRequest] = deque()
            self.to_core: deque[LedgerAnswer] = deque()
            # observer
            self.delivered: list[tuple[int, Any, float, bool]] = []  # (bidder, amount, t, late)
            self.late_accepted: list[tuple[int, Any]] = []
            self.inbox: list[tuple[int, Any, float]] = []  # (bidder, msg, t)
            self.ledger_log: list[tuple[Any, Any]] = []
            self.stands: list[tuple[int, int, float]] = []  # distinct Standing, in order
            self.prices: list[int] = []  # every PriceClock broadcast, in order
            self.last_open_stand = 0.0
            self.closed_at: float | None = None  # first Closing or Decided persisted
            self.won_at: float | None = None  # Dutch: the first Outcome
            self._run(self.core.on_start(0.0, random.Random(0)))

        # ------------------------------------------------------------ the observer's clock

        def must_close_at(self) -> float:
            """When the auction must have closed, from what the observer saw."""
            if self.fmt == "english":
                return min(DEADLINE, self.last_open_stand + QUIET)
            c = self.config
            assert c.start_price is not None
            floor_step = -(-(c.start_price - c.reserve) // c.decrement) + 1
            due = min(DEADLINE, floor_step * TICK)
            return due if self.won_at is None else min(due, self.won_at)

        def clock(self, t: float) -> int:
            """Dutch: the price the clock must show at time ``t``."""
            c = self.config
            assert c.start_price is not None
            return max(c.reserve, c.start_price - c.decrement * math.floor(t / TICK))

        # ------------------------------------------------------------ plumbing

        def _run(self, effects: list[Any], late: tuple[int, Any] | None = None) -> None:
            for effect in effects:
                if isinstance(effect, Send) and effect.to == LEDGER:
                    self.to_ledger.append(effect.msg)
                    if late is not None and isinstance(effect.msg.command, Hold):
                        self.late_accepted.append(late)
                elif isinstance(effect, Send):
                    self._observe(effect.to, effect.msg, late)
                elif isinstance(effect, SetTimer):
                    self.timers[effect.name] = self.now + effect.delay
                elif isinstance(effect, CancelTimer):
                    self.timers.pop(effect.name, None)
                elif isinstance(effect, Persist):
                    if isinstance(effect.data, Closing | Decided) and self.closed_at is None:
                        self.closed_at = self.now
            while not self.slow_ledger and (self.to_ledger or self.to_core):
                if self.to_ledger:
                    self.LedgerStep()
                else:
                    self.AnswerArrives()

        def _observe(self, to: int, msg: Any, late: tuple[int, Any] | None) -> None:
            self.inbox.append((to, msg, self.now))
            if late is not None and isinstance(msg, BidAccepted):
                self.late_accepted.append(late)
            if isinstance(msg, Standing) and (
                not self.stands or self.stands[-1][:2] != (msg.bidder, msg.amount)
            ):
                if self.now < self.must_close_at():
                    self.last_open_stand = self.now
                self.stands.append((msg.bidder, msg.amount, self.now))
            if isinstance(msg, PriceClock) and to == BIDDERS[0]:
                self.prices.append(msg.price)
            if isinstance(msg, Outcome) and self.won_at is None and self.fmt == "dutch":
                self.won_at = self.now

        def _fire(self, until: float) -> None:
            """Fire every timer due by ``until``, in time order, then stop the clock there."""
            while True:
                due = [(t, name) for name, t in self.timers.items() if t <= until]
                if not due:
                    break
                t, name = min(due)
                del self.timers[name]
                self.now = max(self.now, t)
                self._run(self.core.on_timer(self.now, name))
            self.now = until

        # ------------------------------------------------------------ rules

        @rule(bidder=st.sampled_from((*BIDDERS, UNKNOWN)), amount=st.integers(-1, 7))
        def SendBid(self, bidder: int, amount: int) -> None:
            self.net.append((bidder, Bid("a1", amount)))

        def _would_bid(self, bidder: int, more: int) -> int:
            """What a registered bidder bids from what it heard (English: the increment
            over the standing bid, ``more`` added; Dutch: the last price it heard)."""
            heard = [m for b, m, _ in self.inbox if b == bidder]
            if self.fmt == "english":
                stands = [m.amount for m in heard if isinstance(m, Standing)]
                inc = self.config.min_increment
                base = stands[-1] + inc if stands else self.config.reserve
                return max(0, base + more)
            prices = [m.price for m in heard if isinstance(m, PriceClock)]
            return prices[-1] if prices else 0

        @rule(bidder=st.sampled_from(BIDDERS), more=st.integers(-1, 1))
        def BidArrives(self, bidder: int, more: int) -> None:
            """A registered bidder bids from what it heard and the bid arrives at once
            (English: the increment over the standing bid, one less or one more)."""
            self._deliver(bidder, Bid("a1", self._would_bid(bidder, more)))

        @rule(bidder=st.sampled_from(BIDDERS), more=st.integers(-1, 1))
        def BidInFlight(self, bidder: int, more: int) -> None:
            """A registered bidder bids from what it heard, but the bid is in flight: it
            arrives by ``Receive``, perhaps after the clock moved or the auction closed."""
            self.net.append((bidder, Bid("a1", self._would_bid(bidder, more))))

        @rule(
            bidder=st.sampled_from(BIDDERS), more=st.integers(-1, 1), dt=st.sampled_from((0.5, 1.0))
        )
        def BidCrossesTick(self, bidder: int, more: int, dt: float) -> None:
            """A registered bidder bids from what it heard; time passes (the timers due
            fire) while the bid is in flight, then it arrives: the race of a bid with the
            clock's tick, the quiet period or the deadline."""
            bid = Bid("a1", self._would_bid(bidder, more))
            self._fire(self.now + dt)
            self._deliver(bidder, bid)

        @precondition(lambda self: self.fmt == "dutch")
        @rule(rivals=st.lists(st.sampled_from(BIDDERS), min_size=2, max_size=3, unique=True))
        def RivalsAccept(self, rivals: list[int]) -> None:
            """Dutch: the clock reaches several bidders' values at once; each accepts the
            price it heard, their accepts arriving one after the other."""
            for bidder in rivals:
                self.BidArrives(bidder, 0)

        def _deliver(self, bidder: int, bid: Bid) -> None:
            late = self.now >= self.must_close_at()
            self.delivered.append((bidder, bid.amount, self.now, late))
            marker = (bidder, bid.amount) if late else None
            self._run(self.core.on_message(self.now, bidder, bid), late=marker)
            self._fire(self.now)

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
        @rule(data=st.data())
        def LedgerStep(self, data: st.DataObject | None = None) -> None:
            """The ledger applies one request, any one (the link may reorder, not lose)."""
            i = data.draw(st.integers(0, len(self.to_ledger) - 1)) if data is not None else 0
            request = self.to_ledger[i]
            del self.to_ledger[i]
            for effect in self.ledger.on_message(self.now, AUCTIONEER, request):
                if isinstance(effect, Send):
                    self.ledger_log.append((effect.msg.command, effect.msg.result))
                    self.to_core.append(effect.msg)

        @precondition(lambda self: self.to_core)
        @rule(data=st.data())
        def AnswerArrives(self, data: st.DataObject | None = None) -> None:
            """One ledger answer reaches the auctioneer, any one (reordered, never lost)."""
            i = data.draw(st.integers(0, len(self.to_core) - 1)) if data is not None else 0
            answer = self.to_core[i]
            del self.to_core[i]
            self._run(self.core.on_message(self.now, LEDGER, answer))
            self._fire(self.now)

        @precondition(lambda self: self.to_ledger or self.to_core)
        @rule(newest_first=st.booleans())
        def LedgerCatchesUp(self, newest_first: bool = False) -> None:
            """The ledger and the link to the auctioneer drain (a slow ledger catches up),
            oldest or newest request first; the answers arrive in the order the ledger
            gave them (reversing them too would give the auctioneer its requests' order
            back)."""
            while self.to_ledger or self.to_core:
                if self.to_ledger:
                    if newest_first:
                        self.to_ledger.rotate(1)  # the newest request goes first
                    self.LedgerStep()
                else:
                    self.AnswerArrives()

        def teardown(self) -> None:
            """Every run ends with the ledger caught up, checked once more."""
            if hasattr(self, "core"):
                self.LedgerCatchesUp()
                self.checks()

        @rule(dt=st.sampled_from((0.5, 1.0)))
        def Tick(self, dt: float) -> None:
            """Time passes; the timers due fire at their time."""
            self._fire(self.now + dt)

        @precondition(lambda self: "crash" in self.faults)
        @rule()
        def CrashAuctioneer(self) -> None:
            """Restart from the persisted records; answers in flight and timers are lost."""
            fresh = cls(self.config)
            fresh.restore(self.core.snapshot_persistent())
            self.core = fresh
            self.to_core.clear()
            self.timers.clear()
            self._run(fresh.on_start(self.now, random.Random(0)))
            self._fire(self.now)

        # ------------------------------------------------------------ observer

        def _outcomes(self) -> dict[int, Outcome]:
            return {b: m for b, m, _ in self.inbox if isinstance(m, Outcome)}

        def _drained(self) -> bool:
            return not self.to_ledger and not self.to_core

        def _open_holds(self) -> dict[str, tuple[str, int]]:
            return self.ledger.ledger.holds()

        @invariant()
        def checks(self) -> None:
            if not hasattr(self, "core"):
                return
            self.OneWinner()
            self.NoLateBid()
            self.QuietRespected()
            self.Conservation()
            self.LosersReleased()
            if self.fmt == "english":
                self.WinnerPaysStanding()
                self.WinnerHasBestBid()
                self.StandingRises()
                self.OutbidReleased()
            else:
                self.DutchPriceRule()
                self.FirstAcceptWins()
                self.PriceNeverRises()

        def OneWinner(self) -> None:
            winners = [b for b, o in self._outcomes().items() if o.won]
            assert len(winners) <= 1, f"OneWinner: {winners}"
            assert len(self.core.winners) <= 1, f"OneWinner: {self.core.winners}"

        def NoLateBid(self) -> None:
            assert not self.late_accepted, (
                f"NoLateBid: taken after the close (at {self.must_close_at()}):"
                f" {self.late_accepted}"
            )

        def QuietRespected(self) -> None:
            if self.closed_at is None:
                return
            if self.fmt == "english":
                assert self.closed_at >= self.must_close_at(), (
                    f"QuietRespected: closed at {self.closed_at}, the last standing bid"
                    f" before it was at {self.last_open_stand} (quiet {QUIET})"
                )

        def WinnerPaysStanding(self) -> None:
            for b, o in self._outcomes().items():
                if o.won:
                    assert self.stands, f"WinnerPaysStanding: {b} won with no standing bid"
                    assert self.stands[-1][:2] == (b, o.price), (
                        f"WinnerPaysStanding: {b} pays {o.price}, the standing bid was"
                        f" {self.stands[-1][:2]}"
                    )

        def _funded(self) -> list[tuple[str, int]]:
            return [
                (c.hold, c.amount)
                for c, r in self.ledger_log
                if isinstance(c, Hold) and isinstance(r, Ok)
            ]

        def WinnerHasBestBid(self) -> None:
            if self.core.state != "closed" or not self._drained():
                return
            funded = self._funded()
            outcomes = self._outcomes()
            won = [o.price for o in outcomes.values() if o.won]
            if funded:
                best = max(a for _, a in funded)
                assert won == [best], f"WinnerHasBestBid: paid {won}, best funded bid {best}"

        def StandingRises(self) -> None:
            c = self.config
            amounts = [a for _, a, _ in self.stands]
            assert all(a >= c.reserve for a in amounts), f"StandingRises: {amounts}"
            for x, y in itertools.pairwise(amounts):
                assert y >= x + c.min_increment, (
                    f"StandingRises: {y} follows {x} (increment {c.min_increment}): {amounts}"
                )

        def OutbidReleased(self) -> None:
            holds = self._open_holds()
            accounts = [account for account, _ in holds.values()]
            assert len(accounts) == len(set(accounts)), f"OutbidReleased: {holds}"
            if self._drained() and self.core.state == "open" and self.stands:
                bidder, amount, _ = self.stands[-1]
                assert set(holds.values()) <= {(f"acct{bidder}", amount)}, (
                    f"OutbidReleased: open holds {holds}, standing bid {self.stands[-1][:2]}"
                )

        def LosersReleased(self) -> None:
            if self.core.state != "closed" or not self._drained():
                return
            assert not self._open_holds(), (
                f"LosersReleased: open at the close: {self._open_holds()}"
            )
            for c, r in self.ledger_log:
                if isinstance(c, Settle) and isinstance(r, Ok):
                    winner = [b for b, o in self._outcomes().items() if o.won]
                    assert winner and c.amount == self._outcomes()[winner[0]].price

        def _first_taken(self) -> dict[int, tuple[int, int, float]]:
            """Dutch: per bidder, its first accept at the observer's clock price before the
            close: (index of delivery, amount, time)."""
            first: dict[int, tuple[int, int, float]] = {}
            for i, (b, amount, t, late) in enumerate(self.delivered):
                if b in BIDDERS and b not in first and not late and amount == self.clock(t):
                    if amount >= self.config.reserve:
                        first[b] = (i, amount, t)
            return first

        def DutchPriceRule(self) -> None:
            for b, o in self._outcomes().items():
                if o.won:
                    taken = self._first_taken().get(b)
                    assert taken is not None and taken[1] == o.price, (
                        f"DutchPriceRule: {b} pays {o.price}; its accepts"
                        f" {[(a, t, self.clock(t)) for x, a, t, _ in self.delivered if x == b]}"
                    )

        def FirstAcceptWins(self) -> None:
            winners = [b for b, o in self._outcomes().items() if o.won]
            if not winners:
                return
            first = self._first_taken()
            funded = {int(h.split("/")[1]) for h, _ in self._funded()}
            mine = first.get(winners[0], (-1, 0, 0.0))[0]
            for b in funded:
                if b in first:
                    assert first[b][0] >= mine, (
                        f"FirstAcceptWins: {winners[0]} won, {b} accepted before it and was funded"
                    )

        def PriceNeverRises(self) -> None:
            for x, y in itertools.pairwise(self.prices):
                assert y <= x, f"PriceNeverRises: {self.prices}"

        def Conservation(self) -> None:
            ledger = self.ledger.ledger
            total = sum(ledger.balances().values()) + sum(n for _, n in ledger.holds().values())
            assert total == self.supply, f"Conservation: {total} != {self.supply}"

    return OpenAuctionMachine


def test_open_auction_invariants_hold() -> None:
    run_state_machine_as_test(machine(), settings=SETTINGS)


# ------------------------------------------------------------------------ broken variants
# One per mutant of specs/broken/AuctionOpen.*.cfg, same names.


class OutbidHoldKept(Auctioneer):  # type: ignore[misc]
    def _release(self, bidder: int, receipt: int, amount: int) -> None:
        if self.config.format != "english":
            super()._release(bidder, receipt, amount)


class BelowIncrement(Auctioneer):  # type: ignore[misc]
    def _bar(self) -> int:
        return min(super()._bar(), max(self.config.reserve, super()._bar() - 1))


class BidAfterClose(Auctioneer):  # type: ignore[misc]
    def _open_refusal(self, now: float, bidder: int, amount: Any) -> str | None:
        state, self.state = self.state, "open"  # ignores the close
        try:
            return super()._open_refusal(now, bidder, amount)
        finally:
            self.state = state


class QuietNotRearmed(Auctioneer):  # type: ignore[misc]
    def _quiet_timer(self, now: float) -> SetTimer:
        stood, self._stood_at = self._stood_at, None  # counts from the start
        try:
            return super()._quiet_timer(now)
        finally:
            self._stood_at = stood


class StalePriceAccepted(Auctioneer):  # type: ignore[misc]
    def _open_refusal(self, now: float, bidder: int, amount: Any) -> str | None:
        reason = super()._open_refusal(now, bidder, amount)
        return None if reason == "stale_price" else reason


class ClockReset(Auctioneer):  # type: ignore[misc]
    def _open_start(self, now: float) -> list[Any]:
        if self._started_at is not None and self.config.format == "dutch":
            self._started_at = now  # the clock's origin is not taken from the records
        return super()._open_start(now)


class NoWaitForEarlier(Auctioneer):  # type: ignore[misc]
    def _maybe_decide(self) -> list[Any]:
        if self.config.format == "dutch" and self.state == "open" and self.bids:
            return self._decide()
        return super()._maybe_decide()

    def _open_clear(self) -> tuple[list[int], dict[int, int]]:
        if self.config.format == "dutch" and self.bids:
            winner = min(self.bids, key=lambda b: self.bids[b][1])
            return [winner], {winner: self.bids[winner][0]}
        return super()._open_clear()


class DutchLoserKept(Auctioneer):  # type: ignore[misc]
    def _release(self, bidder: int, receipt: int, amount: int) -> None:
        if self.config.format != "dutch":
            super()._release(bidder, receipt, amount)


# name -> (broken core, the format whose code it breaks, invariants that may catch it).
# A clock reset at a restart also keeps the auction open past its floor (NoLateBid) when
# the clock is already at the reserve, where no price can rise.
BROKEN: dict[str, tuple[type[Auctioneer], str, tuple[str, ...]]] = {
    "outbid_hold_kept": (OutbidHoldKept, "english", ("OutbidReleased", "LosersReleased")),
    "below_increment": (BelowIncrement, "english", ("StandingRises",)),
    "bid_after_close": (BidAfterClose, "english", ("NoLateBid",)),
    "quiet_not_rearmed": (QuietNotRearmed, "english", ("QuietRespected", "NoLateBid")),
    "stale_price_accepted": (StalePriceAccepted, "dutch", ("DutchPriceRule", "FirstAcceptWins")),
    "clock_reset": (ClockReset, "dutch", ("PriceNeverRises", "DutchPriceRule", "NoLateBid")),
    "no_wait_for_earlier": (NoWaitForEarlier, "dutch", ("FirstAcceptWins",)),
    "dutch_loser_kept": (DutchLoserKept, "dutch", ("LosersReleased",)),
}


def _caught(name: str) -> bool:
    """One fresh search (random seed, no database, no shrinking) over auctions of the format
    the broken core breaks; True if caught as expected."""
    cls, fmt, expected = BROKEN[name]
    return caught_by_fresh_search(
        machine(cls, (fmt,)),
        SETTINGS,
        expected,
        name=name,
        max_examples=600,
        stateful_step_count=50,
    )


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_is_caught(name: str) -> None:
    """Up to two fresh searches per broken auctioneer (the catch rates are measured:
    docs/auctions.md). Each core was caught by 200 of 200 measured searches (Wilson
    95 % interval from 98.1 %); before, with 40 of 40 each, one CI run saw a search
    miss ``stale_price_accepted``. A second fresh search after a miss bounds CI's
    miss rate by the square of the per-search miss rate (under 0.04 % from the
    interval's low end), where one search bounds it only by 1.9 %."""
    assert _caught(name) or _caught(name), f"two fresh searches missed the {name} auctioneer"


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_catch_rate(name: str) -> None:
    """``CATCH_RUNS`` (default 40) fresh searches each; the rate and its Wilson 95 %
    interval are printed (docs/auctions.md has the figures of ``CATCH_RUNS=200``)."""
    runs = int(os.environ.get("CATCH_RUNS", "40"))
    rate = measure_catch_rate(lambda: _caught(name), runs)
    print(f"\n{name}: {rate}")
    assert rate.rate >= 0.95
