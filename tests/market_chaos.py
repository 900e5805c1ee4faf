"""Chaos harness for the market's cores: auctions (sealed, English, Dutch) and contract-net.

What runs: the real :class:`~trio_foundation.protocols.auction.Auctioneer` (or the
real contract-net :class:`~trio_foundation.protocols.contract_net.Manager`) on node
0, the real :class:`~trio_foundation.protocols.auction.LedgerNode` on node 1, and
agents on nodes 2.. — bidders (or contractors), each a small core of this module
with a *behaviour* drawn from the seed, plus one *stranger* (a node that is not
registered: not in the core's configuration) — in
:class:`~trio_foundation.runtime.sim.Simulation` under a fault schedule drawn from
the same seed.

**Attacks.** Agents that are honest (re-send until answered: at-least-once),
*slow* (bid or propose at the deadline, so the bid races the close; contractors
whose work outlasts the execution timeout and who then report anyway),
*duplicating* (every message sent two or three times), *failing* (contractors
that report a failure), *silent*, and lying: a bid above the bidder's funds, two
bids (or proposals) with different amounts, non-int and negative amounts, a bid
for another auction, a contractor that lacks the required capability and
proposes anyway, results for tasks or rounds it was not awarded, and the
stranger's bids, proposals and results. Messages carry no sender id (the cores
take the sender from the transport), so impersonating another agent is not
expressible: a lying agent can only speak as itself, and the stranger is
refused by identity. The network duplicates, delays and reorders every message
(``SetDuplicateRate``, ``SetDelay``, ``SetReorderRate``); the links between the
core and the agents are also cut for a while (``Cut``/``Heal``), and a lossy
agent drops a share of what it sends and receives. Agents crash and restart
(forgetting everything: a restarted bidder bids again, often another amount),
are paused, and run on skewed, drifting clocks. The auctioneer (manager)
crashes, is paused and restarts from its persisted records (the auctioneer's
incremental records are appended by :class:`JournaledAuctioneer`, as the
module doc of ``protocols/auction.py`` asks of a storage adapter). The ledger
node and the link between it and the core are never attacked except by
duplication, delay and reordering: the cores require a ledger link that does
not lose messages (a replicated ledger behind a retrying client provides one).

**Checks**, by an observer that reads the simulator's trace hook (what each
core received and emitted, in order) and the ledger, never the core's private
state: after every ledger step, ``Conservation`` (balances plus open holds
equal the supply) and ``NonNegative``; after the run, for auctions
``OneWinnerPerUnit``, ``WinnerHasBestBid`` (the winners are the best valid
bids *received before the close* — ranked by amount, then receipt, then
bidder id —, recomputed by the observer from the deliveries and the ledger's
answers to the holds), ``PriceRule`` (first price, second price — the highest
losing valid bid or the reserve — or the uniform price; never above the
winner's bid; what the ledger settled equals what the winner was told),
``NoLateBid`` (no bid delivered after the close got a hold or an acceptance),
``LosersReleased`` (no hold of the auction open at the end, every escrowed
loser released), ``Sealed`` (before the close a bidder hears only about its
own bid) and ``Decided`` (the auction closed); for contract-net
``AtMostOnePaid`` (at most one contractor told it is paid, one payee settled),
``PaidOnlyForLiveAward`` (the payee's award was for the round current when it was
paid, never revoked), ``PriceRule`` (the settled price is the award's, no
more than its proposal and the budget), ``AwardedToValidProposal`` (each award
is the best valid proposal of its round received before the evaluation, by
:func:`~trio_foundation.protocols.contract_net.rank`), ``EscrowReleasedOnFailure`` and
``Terminates`` (the task ends done or failed, and the buyer paid exactly the
settled price).

**Open formats** (``--protocol english`` / ``dutch``, :class:`OpenAuctionChaos`):
the same world (3 to 6 bidders, a stranger, the same fault schedule, the auctioneer
crashing and restored from its journal), with :class:`OpenBidder` agents that
follow the broadcasts (``Standing``, ``PriceClock``): honest, slow (racing the quiet
close or the clock), duplicating, overbidding (their holds fail), lowballing (a bid
one below the bar, a Dutch accept of the previous price), late (bidding after the
outcome), twice (two bids at once, two Dutch accepts), garbage and silent. The
observer reads the deliveries, the broadcasts, the core's journal (a ``Closing`` or
``Decided`` record is the close) and the ledger, and checks ``Conservation`` and
``NonNegative`` after every ledger step; ``NoLateBid`` (no hold and no acceptance
for a bid delivered after the close); Dutch ``DutchPriceRule`` (every accept taken is
of the price the clock asks at its reception, recomputed from the first start);
after the run ``Decided``, ``OneWinner``, ``PriceRule`` (the settled price is the
one the winner was told); English ``StandingRises`` (each new standing bid beats the
last by ``min_increment``), ``WinnerHasBestBid`` (the winner is the highest bid the
ledger placed, and the last standing one, and pays it), ``OutbidReleased`` (no hold
open at the end); Dutch ``PriceNeverRises`` (the broadcast prices never rise, across
restarts), ``FirstAcceptWins`` (the winner is the earliest received valid accept whose
hold was placed, at its price), ``LosersReleased``.

**Broken variants** (defined here, never in the library): ``late-bid`` (the
auctioneer accepts bids after the close), ``first-price-vickrey`` (the winner
pays its own bid whatever the format), ``loser-hold-kept`` (the release of a
loser's hold never reaches the ledger), ``double-award`` (the manager pays a
contractor whose award was revoked and re-announced, when its late result
arrives), ``two-winners``, ``unqualified-award``, ``escrow-kept``; open:
``outbid-hold-kept`` (an outbid hold's release never reaches the ledger),
``english-late-bid`` and ``dutch-late-bid`` (the close ignored when a bid is
checked), ``below-increment`` (a bid one credit short of the increment is taken),
``stale-price-accepted`` (a Dutch accept of any price is taken), ``clock-reset``
(a restart starts the Dutch clock again). A *search* runs fresh seeds until one
is caught (at most ``SEARCH_SEEDS``); ``--measure N`` runs ``N`` searches and
prints the share that caught the variant.

Replay: everything derives from the seed. ``python tests/market_chaos.py
--protocol auction --seed S [--variant V]`` reruns one run and prints its
verdict and the digest of its event log.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
import time
from collections import Counter
from typing import Any, Final, Literal

import attrs

from trio_foundation.protocols.auction import (
    TICK_EPSILON,
    AuctionConfig,
    Auctioneer,
    Bid,
    BidAccepted,
    BidRefused,
    Closing,
    Decided,
    LedgerAnswer,
    LedgerNode,
    LedgerRequest,
    Outcome,
    PriceClock,
    Standing,
)
from trio_foundation.protocols.contract_net import (
    AcceptProposal,
    CallForProposals,
    Cancel,
    ContractorInfo,
    Failure,
    InformDone,
    Manager,
    Paid,
    Proposal,
    Propose,
    Refuse,
    RejectProposal,
    TaskConfig,
    rank,
)
from trio_foundation.protocols.effects import (
    ClientRequest,
    Effect,
    Persist,
    Reply,
    Send,
    SetTimer,
)
from trio_foundation.protocols.ledger import Hold, Ledger, Mint, Ok, Open, Release, Settle
from trio_foundation.runtime.driver import Start, TimerFired, Transition
from trio_foundation.runtime.faults import (
    ClockSkew,
    Crash,
    Cut,
    FaultEvent,
    Heal,
    Pause,
    Restart,
    Resume,
    SetDelay,
    SetDuplicateRate,
    SetReorderRate,
    UniformDelay,
)
from trio_foundation.runtime.sim import SimConfig, Simulation
from trio_foundation.runtime.transport import Envelope

CORE: Final = 0
LEDGER: Final = 1
FIRST_AGENT: Final = 2
AUCTION: Final = "lot-1"
TASK: Final = "task-1"
DEADLINE: Final = 2.0  # seconds of the core's clock
BUDGET: Final = 10
EXECUTION_TIMEOUT: Final = 1.5
HORIZON: Final = 40.0  # simulated seconds: every fault is undone long before
SEARCH_SEEDS: Final = 40  # fresh seeds one search may use

OPEN_DEADLINE: Final = 6.0  # the open formats' hard close, seconds of the core's clock

Protocol = Literal["auction", "contract_net", "english", "dutch"]
PROTOCOLS: Final = ("auction", "contract_net", "english", "dutch")
VARIANTS: Final = {
    "auction": ("correct", "late-bid", "first-price-vickrey", "loser-hold-kept", "two-winners"),
    "contract_net": ("correct", "double-award", "unqualified-award", "escrow-kept"),
    "english": ("correct", "outbid-hold-kept", "english-late-bid", "below-increment"),
    "dutch": ("correct", "stale-price-accepted", "dutch-late-bid", "clock-reset"),
}
BIDDER_BEHAVIOURS: Final = (
    "honest", "honest", "slow", "duplicating", "overbidding", "twice", "garbage",
    "wrong-auction", "silent",
)  # fmt: skip
OPEN_BEHAVIOURS: Final = (
    "honest", "honest", "honest", "slow", "duplicating", "overbidding", "lowballing",
    "lowballing", "late", "twice", "garbage", "silent",
)  # fmt: skip
CONTRACTOR_BEHAVIOURS: Final = (
    "honest", "honest", "slow", "slow", "failing", "duplicating", "over-budget",
    "unqualified", "twice", "late", "fake-result", "refusing",
)  # fmt: skip


# =========================================================================== broken cores


class LateBidAccepted(Auctioneer):  # type: ignore[misc]
    """Broken: ignores the close when it checks a bid."""

    def _refusal(self, bidder: int, amount: Any) -> str | None:
        state, self.state = self.state, "open"
        try:
            return super()._refusal(bidder, amount)
        finally:
            self.state = state


class FirstPriceInVickrey(Auctioneer):  # type: ignore[misc]
    """Broken: every winner pays its own bid, whatever the format."""

    def _clear(self) -> tuple[list[int], dict[int, int]]:
        winners, _ = super()._clear()
        return winners, {w: self.bids[w][0] for w in winners}


class LoserHoldKept(Auctioneer):  # type: ignore[misc]
    """Broken: the release of a loser's hold is never sent to the ledger."""

    def _to_ledger(self, command: Any) -> Send:
        if isinstance(command, Release):
            return Send(CORE, None)  # to itself: ignored
        return super()._to_ledger(command)


class DoubleAward(Manager):  # type: ignore[misc]
    """Broken: a late result of a revoked (re-announced) award is accepted and paid."""

    def _on_done(self, src: int, msg: InformDone) -> list[Effect]:
        if (msg.round, src) in self.revoked and self.state != "done":
            self.state, self.winner = "done", src
            price = self.price or self.config.budget // 2
            self.price = price
            settle = Settle(self.config.task, self._info[src].account, price)
            self._unanswered["settle"] = settle
            return [
                self._persist(),
                self._to_ledger(settle),
                Send(src, Paid(TASK, msg.round, price)),
            ]
        return super()._on_done(src, msg)


class TwoWinners(Auctioneer):  # type: ignore[misc]
    """Broken: a tie for the last unit makes every tied bidder a winner."""

    def _clear(self) -> tuple[list[int], dict[int, int]]:
        winners, prices = super()._clear()
        if winners:
            last = self.bids[winners[-1]][0]
            tied = [b for b in sorted(self.bids) if self.bids[b][0] == last and b not in winners]
            prices.update({b: prices[winners[0]] for b in tied})
            winners = winners + tied
        return winners, prices


class UnqualifiedAward(Manager):  # type: ignore[misc]
    """Broken: the required capabilities are not checked (every contractor is invited
    and its proposals are valid)."""

    def __init__(self, config: TaskConfig) -> None:
        super().__init__(attrs.evolve(config, required=frozenset()))


class EscrowKeptOnFailure(Manager):  # type: ignore[misc]
    """Broken: a task that fails after its last round never releases its escrow."""

    def _to_ledger(self, command: Any) -> Send:
        if isinstance(command, Release):
            return Send(CORE, None)  # to itself: ignored
        return super()._to_ledger(command)


class OpenBidAfterClose(Auctioneer):  # type: ignore[misc]
    """Broken (English, Dutch): ignores the close when it checks a bid."""

    def _open_refusal(self, now: float, bidder: int, amount: Any) -> str | None:
        state, self.state = self.state, "open"
        try:
            return super()._open_refusal(now, bidder, amount)
        finally:
            self.state = state


class OutbidHoldKept(Auctioneer):  # type: ignore[misc]
    """Broken (English): the release of an outbid bidder's hold never reaches the ledger."""

    def _to_ledger(self, command: Any) -> Send:
        if isinstance(command, Release):
            return Send(CORE, None)  # to itself: ignored
        return super()._to_ledger(command)


class BelowIncrement(Auctioneer):  # type: ignore[misc]
    """Broken (English): a bid one credit short of the increment is taken."""

    def _bar(self) -> int:
        bar: int = super()._bar()
        return bar - 1 if self.standing is not None or self._pending else bar


class StalePriceAccepted(Auctioneer):  # type: ignore[misc]
    """Broken (Dutch): an accept of a price the clock is not at is taken."""

    def _open_refusal(self, now: float, bidder: int, amount: Any) -> str | None:
        reason = super()._open_refusal(now, bidder, amount)
        return None if reason == "stale_price" else reason


class ClockReset(Auctioneer):  # type: ignore[misc]
    """Broken (Dutch): a restart starts the clock again from ``start_price``."""

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        if self._started_at is not None:
            self._started_at = now
        return super().on_start(now, rng)


AUCTIONEERS: Final[dict[str, type[Auctioneer]]] = {
    "correct": Auctioneer,
    "late-bid": LateBidAccepted,
    "first-price-vickrey": FirstPriceInVickrey,
    "loser-hold-kept": LoserHoldKept,
    "two-winners": TwoWinners,
    "outbid-hold-kept": OutbidHoldKept,
    "english-late-bid": OpenBidAfterClose,
    "below-increment": BelowIncrement,
    "stale-price-accepted": StalePriceAccepted,
    "dutch-late-bid": OpenBidAfterClose,
    "clock-reset": ClockReset,
}
MANAGERS: Final[dict[str, type[Manager]]] = {
    "correct": Manager,
    "double-award": DoubleAward,
    "unqualified-award": UnqualifiedAward,
    "escrow-kept": EscrowKeptOnFailure,
}


# =========================================================================== adapters


class JournaledAuctioneer:
    """An :class:`Auctioneer` whose storage appends its records.

    The auctioneer persists one record per change; the simulator's storage keeps
    the last ``Persist`` only, so this adapter persists the whole journal so far
    (O(records) per step: fine for a test, not a storage engine) and hands it
    back to :meth:`Auctioneer.restore` after a crash.
    """

    def __init__(self, inner: Auctioneer) -> None:
        self.inner = inner

    def _journal(self, effects: list[Effect]) -> list[Effect]:
        journal = self.inner.snapshot_persistent()
        return [Persist(journal) if isinstance(e, Persist) else e for e in effects]

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        return self._journal(self.inner.on_start(now, rng))

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        return self._journal(self.inner.on_message(now, src, msg))

    def on_timer(self, now: float, name: str) -> list[Effect]:
        return self._journal(self.inner.on_timer(now, name))

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        return self._journal(self.inner.on_client(now, request))

    def snapshot_persistent(self) -> Any:
        return self.inner.snapshot_persistent()

    def restore(self, snapshot: Any) -> None:
        self.inner.restore(snapshot)


class _Agent:
    """Base of the agents: lossy sends and receipts, timers by name, no persistence."""

    def __init__(self, node: int, behaviour: str, loss: float) -> None:
        self.node = node
        self.behaviour = behaviour
        self.loss = loss
        self.rng = random.Random(0)

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        self.rng = rng  # per incarnation: a restarted agent draws anew
        return self.start(now)

    def start(self, now: float) -> list[Effect]:
        return []

    def send(self, msg: Any, copies: int = 1) -> list[Effect]:
        if self.behaviour == "duplicating":
            copies = max(copies, self.rng.randint(2, 3))
        return [Send(CORE, msg) for _ in range(copies) if self.rng.random() >= self.loss]

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        if self.rng.random() < self.loss:
            return []  # lost on the way in
        return self.receive(now, msg)

    def receive(self, now: float, msg: Any) -> list[Effect]:
        return []

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        return [Reply(request.client, "agents take no requests", ok=False)]

    def snapshot_persistent(self) -> Any:
        return None

    def restore(self, snapshot: Any) -> None:
        raise AssertionError("agents persist nothing")


class Bidder(_Agent):
    """A bidder of one auction; its ``behaviour`` says how it bids (module doc)."""

    def __init__(self, node: int, behaviour: str, loss: float, value: int, funds: int) -> None:
        super().__init__(node, behaviour, loss)
        self.value = value
        self.funds = funds
        self.answered = False
        self.resends = 0
        self.amount: Any = None  # drawn at the first send of this incarnation

    def _amount(self) -> Any:
        if self.behaviour == "overbidding":
            return self.funds + self.rng.randint(1, 3)
        return self.value if self.rng.random() < 0.7 else self.rng.randint(0, 8)

    def start(self, now: float) -> list[Effect]:
        b = self.behaviour
        if b == "silent":
            return []
        if b == "slow":  # races the close (the clocks may be skewed too)
            return [SetTimer("bid", max(0.0, DEADLINE - now + self.rng.uniform(-0.15, 0.1)))]
        effects: list[Effect] = [SetTimer("bid", self.rng.uniform(0.0, 0.9 * DEADLINE))]
        if b in ("twice", "garbage", "wrong-auction"):
            effects.append(SetTimer("other", self.rng.uniform(0.0, DEADLINE * 1.1)))
        return effects

    def on_timer(self, now: float, name: str) -> list[Effect]:
        if name == "other":
            if self.behaviour == "twice":
                return self.send(Bid(AUCTION, self.value + self.rng.choice((-2, -1, 1, 2, 3))))
            if self.behaviour == "garbage":
                junk = self.rng.choice((-1, "7", 2.5, True, None))
                return self.send(Bid(AUCTION, junk))
            return self.send(Bid("lot-0", self.value + 5))  # wrong-auction
        if name == "bid" or (name == "resend" and not self.answered and self.resends < 6):
            self.resends += name == "resend"
            if self.amount is None:
                self.amount = self._amount()
            return [*self.send(Bid(AUCTION, self.amount)), SetTimer("resend", 0.3)]
        return []

    def receive(self, now: float, msg: Any) -> list[Effect]:
        if isinstance(msg, BidAccepted | BidRefused | Outcome):
            self.answered = True
        return []


class OpenBidder(_Agent):
    """A bidder of one English or Dutch auction; its ``behaviour`` says how it bids.

    Honest: English, it opens at the reserve and, whenever another bid stands, raises
    by the increment while that is within its value; Dutch, it accepts the price it
    heard once the price is within its value. It re-sends a bid until answered.
    ``slow`` raises about a quiet period late (racing the close) or accepts about a
    tick late (racing the clock: a stale price); ``overbidding`` bids above its
    funds; ``lowballing`` bids one below the bar (English) or the previous price
    (Dutch); ``late`` keeps bidding after it heard the outcome; ``twice`` sends two
    bids (English: two amounts at once; Dutch: accepts two prices); ``garbage``
    sends junk amounts now and then; ``silent`` never bids.
    """

    def __init__(
        self, node: int, behaviour: str, loss: float, value: int, funds: int, config: AuctionConfig
    ) -> None:
        super().__init__(node, behaviour, loss)
        self.value, self.funds, self.config = value, funds, config
        self.standing: tuple[int, int] | None = None  # (bidder, amount) last heard
        self.price: int | None = None  # Dutch: the last price heard
        self.pending: Any = None  # the amount of the bid awaiting an answer
        self.resends = 0
        self.accepts = 0  # Dutch: accepts sent
        self.lates = 0

    def start(self, now: float) -> list[Effect]:
        b = self.behaviour
        if b == "silent":
            return []
        effects: list[Effect] = []
        if self.config.format == "english":
            effects.append(SetTimer("raise", self.rng.uniform(0.0, 0.5)))
        if b in ("garbage", "twice", "late"):
            effects.append(SetTimer("other", self.rng.uniform(0.0, OPEN_DEADLINE)))
        return effects

    def _bid(self, amount: Any) -> list[Effect]:
        self.pending, self.resends = amount, 0
        return [*self.send(Bid(AUCTION, amount)), SetTimer("resend", 0.3)]

    def receive(self, now: float, msg: Any) -> list[Effect]:
        b, c = self.behaviour, self.config
        if isinstance(msg, BidAccepted | BidRefused):
            self.pending = None
        elif isinstance(msg, Outcome):
            self.pending = None
            if b == "late" and self.lates == 0:
                return [SetTimer("other", self.rng.uniform(0.0, 0.5))]
        elif isinstance(msg, Standing) and b != "silent":
            self.standing = (msg.bidder, msg.amount)
            if msg.bidder != self.node:
                delay = self.rng.uniform(0.0, 0.3)
                if b == "slow":
                    assert c.quiet is not None
                    delay = c.quiet * self.rng.uniform(0.8, 1.2)
                return [SetTimer("raise", delay)]
        elif isinstance(msg, PriceClock) and b != "silent":
            self.price = msg.price
            if msg.price <= self.value and (self.accepts == 0 or b == "twice"):
                assert c.tick is not None
                delay = self.rng.uniform(0.0, 0.05)
                if b == "slow":
                    delay = c.tick * self.rng.uniform(0.5, 1.5)
                return [SetTimer("accept", delay)]
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        b, c = self.behaviour, self.config
        if name == "resend":
            if self.pending is None or self.resends >= 4:
                return []
            self.resends += 1
            return [*self.send(Bid(AUCTION, self.pending)), SetTimer("resend", 0.3)]
        if name == "raise":
            bar = c.reserve if self.standing is None else self.standing[1] + c.min_increment
            if self.standing is not None and self.standing[0] == self.node:
                return []  # it stands
            amount = bar
            if b == "lowballing":
                amount = bar - 1
            elif b == "overbidding":
                amount = max(bar, self.funds + self.rng.randint(1, 3))
            elif bar > self.value:
                return []  # out
            return self._bid(amount)
        if name == "accept":
            if self.price is None or (self.accepts and b != "twice") or self.accepts >= 2:
                return []
            self.accepts += 1
            amount = self.price
            if b == "lowballing":
                amount = self.price + c.decrement  # the previous price: stale
            elif b == "overbidding":
                amount = self.funds + self.rng.randint(1, 3)
            return self._bid(amount)
        if name == "other":
            self.lates += 1
            if b == "garbage":
                effects = self.send(Bid(AUCTION, self.rng.choice((-1, "7", 2.5, True, None))))
            elif b == "twice" and c.format == "english":
                low = c.reserve if self.standing is None else self.standing[1]
                effects = self.send(Bid(AUCTION, low + 1)) + self.send(Bid(AUCTION, low + 3))
            else:  # late (or a Dutch "twice"): the value, whatever the state
                effects = self.send(Bid(AUCTION, self.price or self.value))
            if self.lates < 4:
                effects.append(SetTimer("other", self.rng.uniform(0.2, 1.5)))
            return effects
        return []


class Stranger(_Agent):
    """Not registered: bids, proposes and reports results all the same."""

    def start(self, now: float) -> list[Effect]:
        return [SetTimer("act", self.rng.uniform(0.0, DEADLINE))]

    def on_timer(self, now: float, name: str) -> list[Effect]:
        msgs: list[Any] = [
            Bid(AUCTION, 1000),
            Propose(TASK, self.rng.randint(1, 3), 0),
            InformDone(TASK, self.rng.randint(1, 3), "forged"),
        ]
        effects = self.send(self.rng.choice(msgs))
        if now < 4 * DEADLINE:
            effects.append(SetTimer("act", self.rng.uniform(0.1, 1.0)))
        return effects


class Contractor(_Agent):
    """A contractor for one task; its ``behaviour`` says how it answers (module doc)."""

    def __init__(self, node: int, behaviour: str, loss: float, price: int) -> None:
        super().__init__(node, behaviour, loss)
        self.price = price
        self.closed: set[int] = set()  # rounds whose award was answered Paid or Cancel
        self.heard: set[int] = set()  # rounds whose proposal was answered (accept/reject)
        self.proposed: dict[int, Any] = {}  # round -> price proposed
        self.resends: Counter[str] = Counter()

    def start(self, now: float) -> list[Effect]:
        if self.behaviour == "fake-result":
            return [SetTimer("fake", self.rng.uniform(0.0, 3 * DEADLINE))]
        if self.behaviour == "unqualified":  # not invited: proposes all the same
            return [SetTimer("propose:1", self.rng.uniform(0.0, DEADLINE))]
        return []

    def _price(self) -> Any:
        b = self.behaviour
        if b == "over-budget":
            return BUDGET + self.rng.randint(1, 5)
        if self.rng.random() < 0.1:
            return self.rng.choice((-1, "3", 2.5))  # garbage now and then
        return self.price

    def receive(self, now: float, msg: Any) -> list[Effect]:
        b = self.behaviour
        if isinstance(msg, CallForProposals) and msg.round not in self.proposed:
            self.proposed[msg.round] = None
            if b == "silent":
                return []
            if b == "late":
                delay = max(0.0, msg.window + self.rng.uniform(-0.1, 0.1))
            else:
                delay = self.rng.uniform(0.0, 0.8 * msg.window)
            return [SetTimer(f"propose:{msg.round}", delay)]
        if isinstance(msg, RejectProposal):
            self.heard.add(msg.round)
        elif isinstance(msg, AcceptProposal):
            self.heard.add(msg.round)
            if f"work:{msg.round}" in self.resends:
                return []  # a duplicated award: the work is running
            self.resends[f"work:{msg.round}"] = 0
            factor = self.rng.uniform(1.1, 2.5) if b == "slow" else self.rng.uniform(0.1, 0.8)
            return [SetTimer(f"work:{msg.round}", factor * EXECUTION_TIMEOUT)]
        elif isinstance(msg, Paid | Cancel):
            self.closed.add(msg.round)
            if isinstance(msg, Cancel) and b == "slow" and msg.round + 1 not in self.proposed:
                # pushy: proposes for the next round, though it is not invited again
                self.proposed[msg.round + 1] = None
                return [SetTimer(f"propose:{msg.round + 1}", self.rng.uniform(0.05, 0.5))]
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        kind, _, arg = name.partition(":")
        if kind == "fake":
            fake = InformDone(TASK, self.rng.randint(1, 3), "forged")
            if self.rng.random() < 0.3:
                fake = InformDone("task-0", 1, "forged")
            effects = self.send(fake)
            if now < 5 * DEADLINE:
                effects.append(SetTimer("fake", self.rng.uniform(0.2, 1.5)))
            return effects
        round_ = int(arg)
        if kind == "propose":
            if self.behaviour == "refusing":
                return self.send(Refuse(TASK, round_, "busy"))
            price = self.proposed.get(round_)
            if price is None:
                price = self.proposed[round_] = self._price()
            effects = self.send(Propose(TASK, round_, price))
            if self.behaviour == "twice" and self.resends[name] == 0:
                effects += self.send(Propose(TASK, round_, self.price + self.rng.choice((-1, 1))))
            self.resends[name] += 1
            if round_ not in self.heard and self.resends[name] < 5:
                effects.append(SetTimer(name, 0.3))
            return effects
        if kind in ("work", "report"):
            if round_ in self.closed and not (kind == "work" and self.behaviour == "slow"):
                return []  # a slow contractor, busy working, reports once after a Cancel
            msg: Any = InformDone(TASK, round_, f"done by {self.node}")
            if self.behaviour == "failing":
                msg = Failure(TASK, round_, "broken tool")
            self.resends[name] += 1
            effects = self.send(msg)
            if self.resends[name] < 6:
                effects.append(SetTimer(f"report:{round_}", 0.3))
            return effects
        return []


# =========================================================================== runs


@attrs.frozen
class ChaosRun:
    """What one run did and what the observer found.

    Attributes:
        seed: the seed everything derives from.
        protocol: ``"auction"`` or ``"contract_net"``.
        variant: ``"correct"`` or a broken core's name.
        violations: each broken check, named, with the facts; empty if none.
        counters: what happened (for reachability checks).
        fault_counts: the faults applied, by kind.
        digest: the simulator's event-log digest (equal for equal runs).
        events: events processed.
        replay: the command that reruns this run.
    """

    seed: int
    protocol: Protocol
    variant: str
    violations: tuple[str, ...]
    counters: dict[str, int]
    fault_counts: dict[str, int]
    digest: str
    events: int
    replay: str

    def describe(self) -> str:
        return (
            f"seed {self.seed} ({self.protocol}, {self.variant}): "
            f"violations {list(self.violations) or 'none'}\n"
            f"counters {self.counters}\nfaults {self.fault_counts}\nreplay: {self.replay}"
        )


def replay_command(seed: int, protocol: Protocol, variant: str = "correct") -> str:
    command = f"python tests/market_chaos.py --protocol {protocol} --seed {seed}"
    return command if variant == "correct" else f"{command} --variant {variant}"


def _schedule(rng: random.Random, agents: list[int], core_crashes: bool) -> list[FaultEvent]:
    """Faults on the agents, the agent links and the core; never on the ledger."""
    events: list[FaultEvent] = [
        FaultEvent(0.0, SetDelay(UniformDelay(0.001, rng.choice((0.02, 0.1, 0.3))))),
        FaultEvent(0.0, SetDuplicateRate(rng.choice((0.0, 0.1, 0.3)))),
        FaultEvent(0.0, SetReorderRate(rng.choice((0.0, 0.2, 0.5)), 0.4)),
    ]
    for node in agents:
        if rng.random() < 0.3:
            at = rng.uniform(0.0, 3 * DEADLINE)
            events += [FaultEvent(at, Crash(node)), FaultEvent(at + rng.uniform(0.05, 2.0),
                                                               Restart(node))]  # fmt: skip
        if rng.random() < 0.2:
            at = rng.uniform(0.0, 2 * DEADLINE)
            events += [FaultEvent(at, Pause(node)), FaultEvent(at + rng.uniform(0.1, 1.5),
                                                               Resume(node))]  # fmt: skip
        if rng.random() < 0.3:
            events.append(FaultEvent(0.0, ClockSkew(node, rng.uniform(-0.2, 0.2),
                                                    rng.uniform(-0.1, 0.1))))  # fmt: skip
    for _ in range(rng.randint(0, 3)):  # cut agent links for a while, then heal them all
        node = rng.choice(agents)
        at = rng.uniform(0.0, 3 * DEADLINE)
        cut = Cut(node, CORE) if rng.random() < 0.5 else Cut(CORE, node)
        events += [FaultEvent(at, cut), FaultEvent(at + rng.uniform(0.1, 1.5), Heal())]
    if core_crashes:
        at = 0.0
        for _ in range(rng.randint(1, 3)):
            at += rng.uniform(0.0, 2 * DEADLINE)
            if rng.random() < 0.7:
                down = rng.uniform(0.01, 1.5)
                events += [FaultEvent(at, Crash(CORE)), FaultEvent(at + down, Restart(CORE))]
            else:
                events += [FaultEvent(at, Pause(CORE)),
                           FaultEvent(at + rng.uniform(0.05, 1.0), Resume(CORE))]  # fmt: skip
            at += 1.6
    if rng.random() < 0.3:
        events.append(FaultEvent(0.0, ClockSkew(CORE, rng.uniform(0.0, 1.0),
                                                rng.uniform(-0.1, 0.1))))  # fmt: skip
    return sorted(events, key=lambda e: e.at)


class _LedgerWatch:
    """Checks ``Conservation`` and ``NonNegative`` after every ledger step; logs results."""

    def __init__(self, ledger: Ledger, violations: list[str]) -> None:
        self.ledger = ledger
        self.supply = ledger.supply
        self.violations = violations
        self.log: list[tuple[Any, Any]] = []  # (command, result), in the ledger's order

    def step(self, t: Transition) -> None:
        for e in t.effects:
            if isinstance(e, Send) and isinstance(e.msg, LedgerAnswer):
                self.log.append((e.msg.command, e.msg.result))
        ledger = self.ledger
        total = sum(ledger.balances().values()) + sum(n for _, n in ledger.holds().values())
        if total != self.supply and len(self.violations) < 20:
            self.violations.append(f"Conservation: total {total} != supply {self.supply}")
        negative = {a: v for a, v in ledger.balances().items() if v < 0}
        if negative and len(self.violations) < 20:
            self.violations.append(f"NonNegative: {negative}")


# --------------------------------------------------------------------------- auctions


class AuctionChaos:
    """One seeded auction run (module doc)."""

    def __init__(self, seed: int, variant: str = "correct") -> None:
        if variant not in VARIANTS["auction"]:
            raise ValueError(f"unknown auction variant {variant!r}; known: {VARIANTS['auction']}")
        self.seed, self.variant = seed, variant
        rng = random.Random(f"market-auction:{seed}")
        n = rng.randint(4, 7)
        self.bidders = list(range(FIRST_AGENT, FIRST_AGENT + n))
        self.stranger = FIRST_AGENT + n
        fmt = rng.choice(("first_price", "second_price", "second_price", "uniform"))
        self.config = AuctionConfig(
            auction=AUCTION,
            format=fmt,  # type: ignore[arg-type]
            deadline=DEADLINE,
            bidders=tuple((b, f"acct{b}") for b in self.bidders),
            seller="seller",
            ledger=LEDGER,
            units=2 if fmt == "uniform" else 1,
            reserve=rng.choice((0, 0, 1, 2)),
        )
        self.behaviours = {b: rng.choice(BIDDER_BEHAVIOURS) for b in self.bidders}
        self.values = {b: rng.randint(0, 5) for b in self.bidders}
        self.funds = {b: rng.choice((0, 3, 6, 8, 10, 12)) for b in self.bidders}
        loss = rng.choice((0.0, 0.0, 0.1, 0.25))
        ledger = Ledger()
        for account in ["seller", *(a for _, a in self.config.bidders)]:
            ledger.apply(Open(account))
        for b in self.bidders:
            if self.funds[b]:
                ledger.apply(Mint("treasury", f"acct{b}", self.funds[b]))
        self.ledger = ledger
        self.violations: list[str] = []
        self.watch = _LedgerWatch(ledger, self.violations)
        self.closed = False
        self.delivered: list[tuple[int, Any, bool]] = []  # (bidder, amount, after the close)
        self.to_bidders: list[tuple[int, Any, bool]] = []  # (bidder, msg, sent after the close)
        self.late_accepted: list[str] = []
        self.starts = 0
        self.counters: Counter[str] = Counter()
        cls = AUCTIONEERS[variant]
        config = self.config

        def factory(i: int, nodes: int) -> Any:
            if i == CORE:
                return JournaledAuctioneer(cls(config))
            if i == LEDGER:
                return LedgerNode(ledger)
            if i == self.stranger:
                return Stranger(i, "stranger", loss)
            return Bidder(i, self.behaviours[i], loss, self.values[i], self.funds[i])

        schedule = _schedule(rng, [*self.bidders, self.stranger], core_crashes=True)
        self.sim = Simulation(
            factory, nodes=n + 3, seed=seed, config=SimConfig(), schedule=schedule,
            trace=self.trace,
        )  # fmt: skip

    def trace(self, t: Transition) -> None:
        if t.node == LEDGER:
            self.watch.step(t)
            return
        if t.node != CORE:
            return
        if isinstance(t.input, Start):
            self.starts += 1
            if self.starts > 1:
                self.counters["auctioneer restarts"] += 1
        if isinstance(t.input, TimerFired) and t.input.name == "deadline":
            self.closed = True
        late = False
        if isinstance(t.input, Envelope) and isinstance(t.input.msg, Bid):
            bid = t.input.msg
            if bid.auction == AUCTION:
                self.delivered.append((t.input.src, bid.amount, self.closed))
                late = self.closed
        for e in t.effects:
            if not isinstance(e, Send) or e.to == CORE:
                continue
            if e.to == LEDGER:
                if late and isinstance(e.msg, LedgerRequest) and isinstance(e.msg.command, Hold):
                    self.late_accepted.append(f"a hold for a late bid {e.msg.command}")
                continue
            self.to_bidders.append((e.to, e.msg, self.closed))
            if late and isinstance(e.msg, BidAccepted):
                self.late_accepted.append(f"{e.to} accepted after the close: {e.msg}")
            if isinstance(e.msg, BidRefused):
                self.counters[f"refused {e.msg.reason}"] += 1

    def run(self) -> ChaosRun:
        self.sim.run(until=HORIZON)
        self.check()
        return ChaosRun(
            seed=self.seed,
            protocol="auction",
            variant=self.variant,
            violations=tuple(self.violations),
            counters=dict(sorted(self.counters.items())),
            fault_counts=self.sim.fault_counts(),
            digest=self.sim.event_log_digest(),
            events=self.sim.steps,
            replay=replay_command(self.seed, "auction", self.variant),
        )

    # ----------------------------------------------------------------- observer

    def valid_bids(self) -> dict[int, tuple[int, int]]:
        """Per registered bidder, its standing bid received before the close and escrowed."""
        held = {c.hold for c, r in self.watch.log if isinstance(c, Hold) and isinstance(r, Ok)}
        standing: dict[int, tuple[int, int]] = {}
        for receipt, (b, amount, late) in enumerate(self.delivered):
            if late or b not in self.bidders:
                continue
            if b in standing or not isinstance(amount, int) or isinstance(amount, bool):
                continue
            if amount < self.config.reserve:
                continue
            standing[b] = (amount if amount == 0 or f"{AUCTION}/{b}" in held else -1, receipt)
        return {b: v for b, v in standing.items() if v[0] >= 0}

    def expected(self, valid: dict[int, tuple[int, int]]) -> tuple[list[int], dict[int, int]]:
        """The observer's own clearing: best amount, then earliest receipt, then lower id."""
        ranked = sorted(valid, key=lambda b: (-valid[b][0], valid[b][1], b))
        units, reserve = self.config.units, self.config.reserve
        winners, losing = ranked[:units], ranked[units:]
        highest_losing = max(reserve, valid[losing[0]][0]) if losing else reserve
        if self.config.format == "first_price":
            return winners, {w: valid[w][0] for w in winners}
        return winners, {w: highest_losing for w in winners}

    def check(self) -> None:
        v = self.violations
        v.extend(f"NoLateBid: {x}" for x in self.late_accepted[:3])
        outcomes = {b: m for b, m, _ in self.to_bidders if isinstance(m, Outcome)}
        told_won = {b: m.price for b, m in outcomes.items() if m.won}
        settled = {
            int(c.hold.rsplit("/", 1)[1]): c.amount
            for c, r in self.watch.log
            if isinstance(c, Settle) and isinstance(r, Ok)
        }
        core = self.sim.core(CORE)
        state = getattr(getattr(core, "inner", None), "state", None)
        if state != "closed":
            v.append(f"Decided: the auctioneer ends in state {state!r}")
        if len(told_won) > self.config.units or len(settled) > self.config.units:
            v.append(f"OneWinnerPerUnit: told {told_won}, settled {settled}")
        valid = self.valid_bids()
        winners, prices = self.expected(valid)
        decided = bool(outcomes) or bool(settled)
        self.counters["valid bids"] = len(valid)
        if len(valid) > self.config.units:
            self.counters["rival bids"] += 1
        amounts = [a for a, _ in valid.values()]
        if len(amounts) != len(set(amounts)):
            self.counters["ties"] += 1
        if decided or valid:
            if sorted(told_won) != sorted(winners):
                v.append(f"WinnerHasBestBid: told {told_won}, best valid bids {winners} of {valid}")
            for b, price in told_won.items():
                if b in valid and price > valid[b][0]:
                    v.append(f"PriceRule: {b} pays {price} > its bid {valid[b][0]}")
                if price != prices.get(b):
                    v.append(
                        f"PriceRule: {b} told {price}, the {self.config.format} rule says "
                        f"{prices.get(b)} (valid bids {valid})"
                    )
            for b, amount in settled.items():
                if amount != told_won.get(b):
                    v.append(f"PriceRule: {b} settled {amount}, told {told_won.get(b)}")
        open_holds = {h: n for h, n in self.ledger.holds().items() if h.startswith(AUCTION)}
        if open_holds:
            v.append(f"LosersReleased: holds still open at the end: {open_holds}")
        for b, msg, after in self.to_bidders:
            if not after and not isinstance(msg, BidAccepted | BidRefused):
                v.append(f"Sealed: {b} heard {msg} before the close")
            if not after and isinstance(msg, BidAccepted):
                own = [a for x, a, _ in self.delivered if x == b]
                if msg.amount not in own:
                    v.append(f"Sealed: {b} was told of a bid {msg.amount} it never sent")
        if told_won:
            self.counters["won"] += 1


# --------------------------------------------------------------------------- open auctions


class OpenAuctionChaos:
    """One seeded English or Dutch auction run (module doc)."""

    def __init__(self, seed: int, fmt: Literal["english", "dutch"], variant: str = "correct"):
        if variant not in VARIANTS[fmt]:
            raise ValueError(f"unknown {fmt} variant {variant!r}; known: {VARIANTS[fmt]}")
        self.seed, self.variant, self.format = seed, variant, fmt
        rng = random.Random(f"market-{fmt}:{seed}")
        n = rng.randint(3, 6)
        self.bidders = list(range(FIRST_AGENT, FIRST_AGENT + n))
        self.stranger = FIRST_AGENT + n
        reserve = rng.choice((0, 0, 1, 2))
        fields: dict[str, Any]
        if fmt == "english":
            fields = {
                "quiet": rng.choice((0.5, 1.0, 1.5)),
                "min_increment": rng.choice((1, 2, 2, 3)),
                "max_bids": rng.choice((1000, 1000, 3)),
            }
        else:
            fields = {
                "start_price": reserve + rng.randint(4, 12),
                "decrement": rng.choice((1, 1, 2)),
                "tick": rng.choice((0.2, 0.3, 0.4)),
            }
        self.config = AuctionConfig(
            auction=AUCTION,
            format=fmt,
            deadline=OPEN_DEADLINE,
            bidders=tuple((b, f"acct{b}") for b in self.bidders),
            seller="seller",
            ledger=LEDGER,
            reserve=reserve,
            **fields,
        )
        self.behaviours = {b: rng.choice(OPEN_BEHAVIOURS) for b in self.bidders}
        self.values = {b: rng.randint(0, 14) for b in self.bidders}
        self.funds = {b: rng.choice((0, 3, 6, 10, 15, 20)) for b in self.bidders}
        loss = rng.choice((0.0, 0.0, 0.1, 0.25))
        ledger = Ledger()
        for account in ["seller", *(a for _, a in self.config.bidders)]:
            ledger.apply(Open(account))
        for b in self.bidders:
            if self.funds[b]:
                ledger.apply(Mint("treasury", f"acct{b}", self.funds[b]))
        self.ledger = ledger
        self.violations: list[str] = []
        self.watch = _LedgerWatch(ledger, self.violations)
        self.counters: Counter[str] = Counter()
        # observer state, from the trace hook
        self.started_at: float | None = None  # the core's local time at its first start
        self.starts = 0
        self.journal = 0  # records of the core's journal seen so far
        self.closed = False  # a Closing or Decided record was persisted
        self.delivered: list[tuple[int, Any, bool, float]] = []  # (bidder, amount, late, now)
        self.taken: list[tuple[int, Any]] = []  # (bidder, amount) whose hold was requested
        self.standings: list[tuple[int, int]] = []  # distinct Standing broadcasts, in order
        self.prices: list[int] = []  # PriceClock broadcasts, in order
        self.to_bidders: list[tuple[int, Any]] = []
        cls = AUCTIONEERS[variant]
        config = self.config

        def factory(i: int, nodes: int) -> Any:
            if i == CORE:
                return JournaledAuctioneer(cls(config))
            if i == LEDGER:
                return LedgerNode(ledger)
            if i == self.stranger:
                return Stranger(i, "stranger", loss)
            return OpenBidder(i, self.behaviours[i], loss, self.values[i], self.funds[i], config)

        schedule = _schedule(rng, [*self.bidders, self.stranger], core_crashes=True)
        self.sim = Simulation(
            factory, nodes=n + 3, seed=seed, config=SimConfig(), schedule=schedule,
            trace=self.trace,
        )  # fmt: skip

    def clock(self, now: float) -> int:
        """Dutch: the price the clock asks at the core's local time ``now`` (the rule of
        docs/auctions.md, from the first start the observer saw)."""
        c = self.config
        assert c.start_price is not None and c.tick is not None and self.started_at is not None
        steps = max(0, math.floor((now - self.started_at) / c.tick + TICK_EPSILON))
        return max(c.reserve, c.start_price - c.decrement * steps)

    def trace(self, t: Transition) -> None:
        if t.node == LEDGER:
            self.watch.step(t)
            return
        if t.node != CORE:
            return
        if isinstance(t.input, Start):
            self.starts += 1
            if self.started_at is None:
                self.started_at = t.now
            else:
                self.counters["auctioneer restarts"] += 1
        bid: tuple[int, Any] | None = None
        late = self.closed
        if isinstance(t.input, Envelope) and isinstance(t.input.msg, Bid):
            if t.input.msg.auction == AUCTION:
                bid = (t.input.src, t.input.msg.amount)
                self.delivered.append((*bid, late, t.now))
        for e in t.effects:
            if isinstance(e, Persist):
                records = e.data[self.journal :]
                self.journal = len(e.data)
                if any(isinstance(r, Closing | Decided) for r in records):
                    self.closed = True
            if not isinstance(e, Send) or e.to == CORE:
                continue
            msg = e.msg
            if e.to == LEDGER:
                if isinstance(msg, LedgerRequest) and isinstance(msg.command, Hold):
                    if bid is not None:  # a hold for the bid this step received
                        self._taken(bid, late, t.now, f"a hold {msg.command}")
                continue
            self.to_bidders.append((e.to, msg))
            if isinstance(msg, BidAccepted) and bid is not None and msg.amount == 0:
                if bid[0] == e.to and bid[1] == 0:  # a 0 bid is placed without a hold
                    self._taken(bid, late, t.now, f"{e.to} accepted")
            elif isinstance(msg, BidRefused):
                self.counters[f"refused {msg.reason}"] += 1
            elif isinstance(msg, Standing):
                if not self.standings or self.standings[-1] != (msg.bidder, msg.amount):
                    self.standings.append((msg.bidder, msg.amount))
            elif isinstance(msg, PriceClock) and e.to == self.bidders[0]:
                self.prices.append(msg.price)  # each broadcast once (it goes to every bidder)

    def _taken(self, bid: tuple[int, Any], late: bool, now: float, what: str) -> None:
        """A bid delivered in this step was taken (its hold requested, or a 0 placed)."""
        self.taken.append(bid)
        if late:
            self.violations.append(f"NoLateBid: {what} for a bid delivered after the close")
        if self.format == "dutch" and bid[1] != self.clock(now):
            self.violations.append(
                f"DutchPriceRule: {bid[0]}'s accept of {bid[1]} taken at t={now:.3f}, the clock "
                f"asks {self.clock(now)}"
            )

    def run(self) -> ChaosRun:
        self.sim.run(until=HORIZON)
        self.check()
        return ChaosRun(
            seed=self.seed,
            protocol=self.format,
            variant=self.variant,
            violations=tuple(self.violations),
            counters=dict(sorted(self.counters.items())),
            fault_counts=self.sim.fault_counts(),
            digest=self.sim.event_log_digest(),
            events=self.sim.steps,
            replay=replay_command(self.seed, self.format, self.variant),
        )

    # ----------------------------------------------------------------- observer

    def placed(self) -> dict[str, tuple[int, int]]:
        """Hold id -> (bidder, amount) of every hold of this auction the ledger placed."""
        out = {}
        for command, result in self.watch.log:
            if isinstance(command, Hold) and isinstance(result, Ok):
                if command.hold.startswith(f"{AUCTION}/"):
                    out[command.hold] = (int(command.hold.split("/")[1]), command.amount)
        return out

    def check(self) -> None:
        v = self.violations
        outcomes = {b: m for b, m in self.to_bidders if isinstance(m, Outcome)}
        told_won = {b: m.price for b, m in outcomes.items() if m.won}
        settled = {
            int(cmd.hold.split("/")[1]): cmd.amount
            for cmd, r in self.watch.log
            if isinstance(cmd, Settle) and isinstance(r, Ok)
        }
        state = getattr(getattr(self.sim.core(CORE), "inner", None), "state", None)
        if state != "closed":
            v.append(f"Decided: the auctioneer ends in state {state!r}")
        if len(told_won) > 1 or len(settled) > 1:
            v.append(f"OneWinner: told {told_won}, settled {settled}")
        for b, amount in settled.items():
            if amount != told_won.get(b):
                v.append(f"PriceRule: {b} settled {amount}, told {told_won.get(b)}")
        zero = [(b, 0) for b, a in self.taken if a == 0]
        placed = list(self.placed().values()) + zero
        if self.format == "english":
            self._check_english(told_won, placed)
        else:
            self._check_dutch(told_won, placed)
        open_holds = {h: n for h, n in self.ledger.holds().items() if h.startswith(AUCTION)}
        if open_holds:
            name = "OutbidReleased" if self.format == "english" else "LosersReleased"
            v.append(f"{name}: holds still open at the end: {open_holds}")
        if told_won:
            self.counters["won"] += 1
        elif state == "closed":
            self.counters["unsold"] += 1

    def _check_english(self, told_won: dict[int, int], placed: list[tuple[int, int]]) -> None:
        v, c = self.violations, self.config
        for (_, x), (b, y) in itertools.pairwise(self.standings):
            if y < x + c.min_increment:
                v.append(
                    f"StandingRises: {b} stands at {y} after {x} (increment {c.min_increment})"
                )
        if len({b for b, _ in self.standings}) > 1:
            self.counters["outbid"] += 1
        best = max(placed, key=lambda p: p[1], default=None)
        expected = {} if best is None else {best[0]: best[1]}
        if told_won != expected:
            v.append(
                f"WinnerHasBestBid: told {told_won}, the highest placed bid is {best} "
                f"(placed {sorted(placed)})"
            )
        if self.standings and told_won and self.standings[-1] != next(iter(told_won.items())):
            v.append(f"WinnerHasBestBid: told {told_won}, last standing {self.standings[-1]}")

    def _check_dutch(self, told_won: dict[int, int], placed: list[tuple[int, int]]) -> None:
        v, c = self.violations, self.config
        for x, y in itertools.pairwise(self.prices):
            if y > x:
                v.append(f"PriceNeverRises: the clock asked {y} after {x} ({self.prices})")
                break
        funded = {b for b, _ in placed}
        first: dict[int, int] = {}  # bidder -> its first valid accept, in receipt order
        order: list[int] = []
        for b, amount, late, now in self.delivered:
            valid = b in self.bidders and not late and isinstance(amount, int)
            if not valid or isinstance(amount, bool) or b in first:
                continue
            if amount == self.clock(now) and amount >= c.reserve:
                first[b] = amount
                order.append(b)
        winners = [b for b in order if b in funded]
        expected = {winners[0]: first[winners[0]]} if winners else {}
        if told_won != expected:
            v.append(
                f"FirstAcceptWins: told {told_won}, the earliest placed valid accept is "
                f"{expected} (accepts in order {[(b, first[b]) for b in order]}, funded {funded})"
            )
        if len(order) > 1:
            self.counters["rival accepts"] += 1
        if told_won and next(iter(told_won.values())) > c.reserve:
            self.counters["won above the reserve"] += 1


# --------------------------------------------------------------------------- contract-net


class ContractNetChaos:
    """One seeded contract-net run (module doc)."""

    def __init__(self, seed: int, variant: str = "correct") -> None:
        if variant not in VARIANTS["contract_net"]:
            known = VARIANTS["contract_net"]
            raise ValueError(f"unknown contract-net variant {variant!r}; known: {known}")
        self.seed, self.variant = seed, variant
        rng = random.Random(f"market-contract-net:{seed}")
        n = rng.randint(3, 6)
        self.contractors = list(range(FIRST_AGENT, FIRST_AGENT + n))
        self.stranger = FIRST_AGENT + n
        self.behaviours = {c: rng.choice(CONTRACTOR_BEHAVIOURS) for c in self.contractors}
        infos = []
        for c in self.contractors:
            caps = {"code", "test"} if rng.random() < 0.5 else {"code"}
            if self.behaviours[c] == "unqualified":
                caps = {"test"}
            infos.append(ContractorInfo(c, f"acct{c}", caps, round(rng.uniform(0, 1), 2)))
        self.config = TaskConfig(
            task=TASK,
            buyer="buyer",
            budget=BUDGET,
            ledger=LEDGER,
            contractors=tuple(infos),
            deadline=DEADLINE,
            execution_timeout=EXECUTION_TIMEOUT,
            required=frozenset({"code"}),
            preferred=frozenset({"test"}) if rng.random() < 0.5 else frozenset(),
            max_rounds=rng.choice((1, 2, 3, 3, 4)),
        )
        self.prices = {c: rng.randint(0, BUDGET) for c in self.contractors}
        loss = rng.choice((0.0, 0.0, 0.1, 0.25))
        ledger = Ledger()
        for account in ["buyer", *(c.account for c in infos)]:
            ledger.apply(Open(account))
        self.buyer_funds = rng.choice((BUDGET, BUDGET, 3 * BUDGET, BUDGET - 1))
        ledger.apply(Mint("treasury", "buyer", self.buyer_funds))
        self.ledger = ledger
        self.violations: list[str] = []
        self.watch = _LedgerWatch(ledger, self.violations)
        self.counters: Counter[str] = Counter()
        self.manager: Manager | None = None
        # observer state
        self.round = 0  # the highest round announced
        self.open_round: int | None = None  # the round whose proposals are being taken
        self.awards: dict[int, tuple[int, int]] = {}  # round -> (node, price)
        self.cancelled: set[tuple[int, int]] = set()  # (round, node): its award cancelled
        self.proposals: dict[int, dict[int, Any]] = {}  # round -> node -> first valid price
        self.receipts: dict[int, dict[int, int]] = {}  # round -> node -> receipt
        self.refused_round: dict[int, set[int]] = {}  # round -> nodes that sent Refuse
        self.receipt = 0
        self.paid: dict[int, int] = {}  # node -> price told Paid
        self.settles: list[tuple[str, int, int, bool]] = []  # (account, amount, round, live)
        cls = MANAGERS[variant]
        config = self.config

        def factory(i: int, nodes: int) -> Any:
            if i == CORE:
                core = cls(config)
                self.manager = core
                return core
            if i == LEDGER:
                return LedgerNode(ledger)
            if i == self.stranger:
                return Stranger(i, "stranger", loss)
            return Contractor(i, self.behaviours[i], loss, self.prices[i])

        schedule = _schedule(rng, [*self.contractors, self.stranger], core_crashes=True)
        self.sim = Simulation(
            factory, nodes=n + 3, seed=seed, config=SimConfig(), schedule=schedule,
            trace=self.trace,
        )  # fmt: skip

    def _qualified(self, node: int, round_: int) -> bool:
        info = {c.node: c for c in self.config.contractors}.get(node)
        if info is None or not self.config.required <= info.capabilities:
            return False
        return all(n != node for r, (n, _) in self.awards.items() if r < round_)

    def trace(self, t: Transition) -> None:
        if t.node == LEDGER:
            self.watch.step(t)
            return
        if t.node != CORE:
            return
        if isinstance(t.input, Start) and self.round:
            self.counters["manager restarts"] += 1
        if isinstance(t.input, Envelope):
            msg = t.input.msg
            if isinstance(msg, InformDone) and msg.task == TASK:
                node = self.awards.get(msg.round, (None, 0))[0]
                if node == t.input.src and msg.round < self.round:
                    self.counters["late result of a revoked award"] += 1
            if self.open_round is not None:
                self._observe_input(t.input.src, msg, self.open_round)
        for e in t.effects:
            if not isinstance(e, Send) or e.to == LEDGER:
                if isinstance(e, Send) and isinstance(e.msg.command, Settle):
                    self._observe_settle(e.msg.command)
                continue
            msg = e.msg
            if isinstance(msg, CallForProposals) and msg.round > self.round:
                self.round = self.open_round = msg.round
                if msg.round > 1:
                    self.counters["re-announcements"] += 1
            elif isinstance(msg, AcceptProposal):
                if msg.round in self.awards and self.awards[msg.round] != (e.to, msg.price):
                    self.violations.append(
                        f"OneAwardPerRound: round {msg.round} awarded to {self.awards[msg.round]}"
                        f" and {(e.to, msg.price)}"
                    )
                self.awards[msg.round] = (e.to, msg.price)
                if self.open_round == msg.round:
                    self._check_award(msg.round, e.to, msg.price)
                    self.open_round = None
            elif isinstance(msg, Cancel) and msg.task == TASK:
                if self.awards.get(msg.round, (None, 0))[0] == e.to:  # revokes its award
                    self.cancelled.add((msg.round, e.to))
            elif isinstance(msg, Paid):
                self.paid.setdefault(e.to, msg.price)
                if self.paid[e.to] != msg.price:
                    self.violations.append(f"AtMostOnePaid: {e.to} told two prices")
            elif isinstance(msg, RejectProposal):
                self.counters[f"refused {msg.reason}"] += 1
        if self.manager is not None and self.manager.state in ("awarded", "failed", "done"):
            self.open_round = None

    def _observe_input(self, src: int, msg: Any, round_: int) -> None:
        if isinstance(msg, Refuse) and msg.task == TASK and msg.round == round_:
            if self._qualified(src, round_) and src not in self.receipts.get(round_, {}):
                self.refused_round.setdefault(round_, set()).add(src)
            return
        if not (isinstance(msg, Propose) and msg.task == TASK and msg.round == round_):
            return
        price = msg.price
        if not isinstance(price, int) or isinstance(price, bool) or not 0 <= price <= BUDGET:
            return
        if not self._qualified(src, round_) or src in self.refused_round.get(round_, set()):
            return
        seen = self.proposals.setdefault(round_, {})
        if src in seen:
            return  # a duplicate (same price) or a second price (refused "duplicate")
        self.receipt += 1
        seen[src] = price
        self.receipts.setdefault(round_, {})[src] = self.receipt

    def _check_award(self, round_: int, node: int, price: int) -> None:
        seen = self.proposals.get(round_, {})
        valid = [Proposal(n, p, self.receipts[round_][n]) for n, p in seen.items()]
        if len(valid) >= 2:
            self.counters["rival proposals"] += 1
        best = rank(valid, self.config)[:1]
        if not best or (best[0].node, best[0].price) != (node, price):
            self.violations.append(
                f"AwardedToValidProposal: round {round_} awarded {node} at {price}, the best valid "
                f"proposal received before the evaluation is {best or 'none'} of {seen}"
            )

    def _observe_settle(self, settle: Settle) -> None:
        node = next((c.node for c in self.config.contractors if c.account == settle.payee), None)
        award = next(((r, p) for r, (n, p) in sorted(self.awards.items()) if n == node), None)
        rounds = [r for r, (n, _) in self.awards.items() if n == node]
        live = (
            bool(rounds)
            and max(rounds) == self.round
            and (self.round, node) not in {(r, n) for r, n in self.cancelled}
        )
        self.settles.append((settle.payee, settle.amount, max(rounds, default=0), live))
        if award is None:
            self.violations.append(f"PaidOnlyForLiveAward: {settle.payee} settled with no award")
        elif not live:
            self.violations.append(
                f"PaidOnlyForLiveAward: {settle.payee} settled for a revoked award (awards "
                f"{self.awards}, current round {self.round}, cancelled {sorted(self.cancelled)})"
            )

    def run(self) -> ChaosRun:
        self.sim.run(until=HORIZON)
        self.check()
        return ChaosRun(
            seed=self.seed,
            protocol="contract_net",
            variant=self.variant,
            violations=tuple(self.violations),
            counters=dict(sorted(self.counters.items())),
            fault_counts=self.sim.fault_counts(),
            digest=self.sim.event_log_digest(),
            events=self.sim.steps,
            replay=replay_command(self.seed, "contract_net", self.variant),
        )

    def check(self) -> None:
        v = self.violations
        payees = {a for a, _, _, _ in self.settles}
        if len(payees) > 1 or len(self.paid) > 1:
            v.append(f"AtMostOnePaid: settles {self.settles}, told Paid {self.paid}")
        ok_settles = [
            c for c, r in self.watch.log if isinstance(c, Settle) and isinstance(r, Ok)
        ]  # fmt: skip
        if len(ok_settles) > 1:
            v.append(f"AtMostOnePaid: the ledger settled twice: {ok_settles}")
        for settle in ok_settles:
            node = next(c.node for c in self.config.contractors if c.account == settle.payee)
            awarded = [p for r, (n, p) in self.awards.items() if n == node]
            proposed = [p for r, ps in self.proposals.items() for n, p in ps.items() if n == node]
            if settle.amount not in awarded or settle.amount > BUDGET:
                v.append(f"PriceRule: settled {settle.amount}, awards {self.awards}")
            if proposed and settle.amount > max(proposed):
                v.append(f"PriceRule: settled {settle.amount} > proposals {proposed}")
        if TASK in self.ledger.holds():
            v.append(
                f"EscrowReleasedOnFailure: the task's hold is open at the end: "
                f"{self.ledger.holds()}"
            )
        manager = self.sim.core(CORE)
        state = getattr(manager, "state", None)
        if state not in ("done", "failed"):
            v.append(f"Terminates: the manager ends in state {state!r}")
        paid = sum(c.amount for c in ok_settles)
        spent = self.buyer_funds - self.ledger.balance("buyer")
        if spent != paid:
            v.append(f"EscrowReleasedOnFailure: the buyer spent {spent}, contractors got {paid}")
        self.counters[f"ended {state}"] += 1
        if ok_settles:
            self.counters["paid"] += 1


# =========================================================================== entry points


def run_market_chaos(seed: int, protocol: Protocol, variant: str = "correct") -> ChaosRun:
    """One seeded run (see the module doc)."""
    if protocol == "auction":
        return AuctionChaos(seed, variant).run()
    if protocol == "contract_net":
        return ContractNetChaos(seed, variant).run()
    if protocol == "english" or protocol == "dutch":
        return OpenAuctionChaos(seed, protocol, variant).run()
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def protocol_of(variant: str) -> Protocol:
    for protocol, variants in VARIANTS.items():
        if variant in variants and variant != "correct":
            return protocol  # type: ignore[return-value]
    raise ValueError(f"not a broken variant: {variant!r}")


def search(
    variant: str,
    seeds: int = SEARCH_SEEDS,
    draw: random.Random | None = None,
    tried: list[int] | None = None,
) -> ChaosRun | None:
    """Fresh seeds until the broken ``variant`` is caught; the catching run, or None.

    ``tried`` (if given) receives every seed run, in order.
    """
    draw = draw or random.Random()
    protocol = protocol_of(variant)
    for _ in range(seeds):
        seed = draw.randrange(2**32)
        if tried is not None:
            tried.append(seed)
        run = run_market_chaos(seed, protocol, variant)
        if run.violations:
            return run
    return None


def measure(variant: str, searches: int, seed: int | None) -> int:
    """``searches`` fresh searches of ``variant``; prints the share that caught it and
    the per-run rate (catches over all the runs the searches made)."""
    draw = random.Random(seed)  # None: fresh from the OS
    start = time.monotonic()
    caught = 0
    tried: list[int] = []
    first: Counter[str] = Counter()
    for _ in range(searches):
        found = search(variant, draw=draw, tried=tried)
        if found is not None:
            caught += 1
            first[found.violations[0].split(":")[0]] += 1
    print(
        f"{variant}: caught in {caught} of {searches} searches of at most {SEARCH_SEEDS} fresh "
        f"seeds ({100 * caught / searches:.1f} %); per run {caught}/{len(tried)} "
        f"({100 * caught / len(tried):.1f} %); {time.monotonic() - start:.1f} s; "
        f"first violation {dict(first)}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay one market chaos run.")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="auction")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--variant", default="correct")
    parser.add_argument(
        "--measure", type=int, metavar="SEARCHES",
        help="instead of one run: SEARCHES fresh searches of the broken --variant "
        "(--seed then seeds the draw), printing the share caught",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.measure:
        return measure(args.variant, args.measure, args.seed)
    if args.seed is None:
        parser.error("--seed is required (unless --measure)")
    run = run_market_chaos(args.seed, args.protocol, args.variant)
    print(run.describe())
    print(f"events {run.events}, digest {run.digest}")
    return 1 if run.violations else 0


if __name__ == "__main__":
    sys.exit(main())
