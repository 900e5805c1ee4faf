"""Sans-IO sealed-bid auctions with escrow in the credit ledger.

Theory of operation (``specs/Auction.tla`` is the model-checked version)
------------------------------------------------------------------------

An :class:`Auctioneer` sells ``units`` identical units in one of three formats:

* ``"first_price"``: the winner pays its own bid;
* ``"second_price"`` (Vickrey 1961): one unit; the winner pays the highest
  losing bid (or the reserve, if higher) — bidding one's true value is then a
  dominant strategy;
* ``"uniform"``: ``units`` units to the ``units`` best bids (one unit per
  bidder), every winner paying the same price, the highest losing bid (or the
  reserve) — the multi-unit generalisation of Vickrey for unit demand.

Bids below the ``reserve`` are refused. The auction closes when the timer
``"deadline"`` fires, ``deadline`` seconds of the auctioneer's clock after its
first start (the deadline is persisted, so a restart does not extend it).

**Order and ties.** Bids are ranked by amount (higher first), then by *receipt*
(the order in which the auctioneer received them — earlier first), then by the
lower bidder id. A bidder has one bid: the first one received at or above the
reserve stands (even if the ledger then refuses its hold), a second one (a
change of mind or a duplicated message) is refused ``"duplicate"``.

**Refusals** (a :class:`BidRefused` with the reason): ``"unknown_bidder"`` (not
in the configuration), ``"bad_bid"`` (not an int, or negative), ``"late"``
(received after the deadline fired), ``"duplicate"``, ``"below_reserve"``,
``"insufficient_funds"`` (the ledger refused the hold).

**Escrow.** A bid above zero is accepted only once the ledger has put the
amount in a hold named ``"<auction>/<bidder>"`` (a :class:`LedgerRequest` to
the ledger node, answered by a :class:`LedgerAnswer`); a bid of 0 needs no
hold. At the close each winner's hold is settled to the seller at the price
(the rest of the hold goes back to the winner) and every loser's hold is
released. The close waits for the holds still being placed (state
``"closing"``): a bid received before the deadline is never dropped because its
hold was slow. The ledger commands are idempotent (a hold re-issued while open
is a retry; a second settle or release is refused by the ledger), so after a
restart the auctioneer re-sends every command not yet answered.

**Sealed.** Before the close the auctioneer sends a bidder only the answer to
its own bid; outcomes (:class:`Outcome`) go out after the close.

The link between the auctioneer and the ledger must not lose messages (the
ledger is local or a replicated state machine reached through a retrying
client); bidder messages may be lost, duplicated, delayed or reordered.

**Persistence** (the contract with the runtime, incremental as Raft's
``RaftPersist``). Every change of the durable state is one :class:`Persist`
whose data is a single :data:`AuctionRecord` — :class:`Started` (the local time
of the close), :class:`BidTaken` (a bid accepted, or its hold requested),
:class:`HoldAnswered`, :class:`Closing`, :class:`Decided` (winners and prices),
:class:`CloseAnswered` — emitted before the messages that depend on it. The
storage adapter **appends** each record to what it holds (it must not replace
it: the runtime's ``NodeStorage``, which keeps the last data, is for
whole-state cores); after a crash :meth:`Auctioneer.restore` gets the tuple of
records and replays them, and :meth:`Auctioneer.on_start` re-sends every ledger
command not yet answered. :meth:`Auctioneer.snapshot_persistent` returns the
records emitted so far (what a storage adapter holds), for harnesses. The log is
bounded by the configuration: at most ``3 * len(bidders) + 3`` records (one
start, per bidder one bid, one hold answer and one close answer, one
``Closing``, one ``Decided``). Each step persists O(1) data, so an auction among
``n`` bidders persists O(n) in total (it was O(n²) with a whole-state snapshot
per accepted bid).
"""

from __future__ import annotations

import random
from typing import Any, Final, Literal, TypeAlias, final

import attrs

from .effects import ClientRequest, Effect, Persist, Reply, Send, SetTimer
from .ledger import Command, Hold, Ledger, Ok, Release, Result, Settle

__all__ = [
    "AuctionConfig",
    "AuctionRecord",
    "Auctioneer",
    "Bid",
    "BidAccepted",
    "BidRefused",
    "BidTaken",
    "CloseAnswered",
    "Closing",
    "Decided",
    "Format",
    "HoldAnswered",
    "LedgerAnswer",
    "LedgerNode",
    "LedgerRequest",
    "Outcome",
    "Started",
    "clear",
]

Format: TypeAlias = Literal["first_price", "second_price", "uniform"]
FORMATS: Final = ("first_price", "second_price", "uniform")
DEADLINE_TIMER: Final = "deadline"

# --------------------------------------------------------------------------- messages


@final
@attrs.frozen
class Bid:
    """Bidder → auctioneer: my sealed bid of ``amount`` credits."""

    auction: str
    amount: Any


@final
@attrs.frozen
class BidAccepted:
    """Auctioneer → bidder: your bid of ``amount`` is in (its credits are held)."""

    auction: str
    amount: int


@final
@attrs.frozen
class BidRefused:
    """Auctioneer → bidder: your bid was refused for ``reason`` (see the module doc)."""

    auction: str
    reason: str


@final
@attrs.frozen
class Outcome:
    """Auctioneer → bidder, after the close: ``won`` and at what ``price`` (0 if lost)."""

    auction: str
    won: bool
    price: int


@final
@attrs.frozen
class LedgerRequest:
    """Auctioneer → ledger node: apply ``command``."""

    command: Command


@final
@attrs.frozen
class LedgerAnswer:
    """Ledger node → auctioneer: ``command`` gave ``result``."""

    command: Command
    result: Result


# --------------------------------------------------------------------------- durable records


@final
@attrs.frozen
class Started:
    """Durable: the auction's close is at local time ``deadline_at`` (first start only)."""

    deadline_at: float


@final
@attrs.frozen
class BidTaken:
    """Durable: ``bidder``'s bid of ``amount`` got receipt ``receipt``; accepted if 0, else
    its hold was requested from the ledger."""

    bidder: int
    amount: int
    receipt: int


@final
@attrs.frozen
class HoldAnswered:
    """Durable: the ledger placed (``ok``) or refused ``bidder``'s hold."""

    bidder: int
    ok: bool


@final
@attrs.frozen
class Closing:
    """Durable: the deadline fired while holds were still pending."""


@final
@attrs.frozen
class Decided:
    """Durable: the auction closed with ``winners`` (best first) paying ``prices``; the
    settle and release commands follow from the bids and prices."""

    winners: tuple[int, ...]
    prices: tuple[tuple[int, int], ...]


@final
@attrs.frozen
class CloseAnswered:
    """Durable: the ledger answered the settle or release of ``hold``."""

    hold: str


AuctionRecord: TypeAlias = Started | BidTaken | HoldAnswered | Closing | Decided | CloseAnswered

# --------------------------------------------------------------------------- config


def _check_int(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


@final
@attrs.frozen
class AuctionConfig:
    """One auction.

    Attributes:
        auction: the auction's id (prefix of its hold ids).
        format: ``"first_price"``, ``"second_price"`` or ``"uniform"``.
        deadline: seconds of the auctioneer's clock from its first start to the
            close; must be > 0 (an auction without a deadline is refused).
        bidders: ``(node id, ledger account)`` of every registered bidder.
        seller: the ledger account paid at the close.
        ledger: the ledger node's id.
        units: units for sale (1 unless ``"uniform"``).
        reserve: the lowest acceptable bid, >= 0.

    Raises:
        ValueError, TypeError: a bad field, named.
    """

    auction: str
    format: Format
    deadline: float
    bidders: tuple[tuple[int, str], ...]
    seller: str
    ledger: int
    units: int = 1
    reserve: int = 0

    def __attrs_post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if not (isinstance(self.deadline, int | float) and self.deadline > 0):
            raise ValueError(f"deadline must be > 0 seconds, got {self.deadline!r}")
        _check_int("units", self.units, 1)
        _check_int("reserve", self.reserve, 0)
        if self.format != "uniform" and self.units != 1:
            raise ValueError(f"{self.format} sells one unit, got units={self.units}")
        ids = [b for b, _ in self.bidders]
        if len(set(ids)) != len(ids):
            raise ValueError(f"bidder ids must be unique, got {ids}")


def clear(
    bids: dict[int, tuple[int, int]], fmt: Format, units: int, reserve: int
) -> tuple[list[int], dict[int, int]]:
    """Winners and prices from the accepted bids; the pure clearing rule.

    Args:
        bids: bidder -> (amount, receipt); every amount >= ``reserve``.
        fmt: the format.
        units: units for sale.
        reserve: the reserve price.

    Returns:
        the winners (best first) and bidder -> price for each winner.
    """
    ranked = sorted(bids, key=lambda b: (-bids[b][0], bids[b][1], b))
    winners = ranked[:units]
    losing = ranked[units:]
    second = max(reserve, bids[losing[0]][0]) if losing else reserve  # highest losing bid
    prices = {w: bids[w][0] if fmt == "first_price" else second for w in winners}
    return winners, prices


# --------------------------------------------------------------------------- cores

State: TypeAlias = Literal["open", "closing", "closed"]
_RECORD_TYPES: Final = (Started, BidTaken, HoldAnswered, Closing, Decided, CloseAnswered)


@final
class Auctioneer:
    """The auctioneer's core (a :class:`~trio_foundation.protocols.effects.Core`).

    Args:
        config: the auction.
    """

    def __init__(self, config: AuctionConfig) -> None:
        self.config = config
        self._accounts = dict(config.bidders)
        self._by_hold = {self.hold_id(b): b for b in self._accounts}
        self.state: State = "open"
        self._deadline_at: float | None = None  # local time of the close
        self._receipts = 0
        # bidder -> (amount, receipt); Invariant: held in the ledger (or amount 0)
        self.bids: dict[int, tuple[int, int]] = {}
        self._pending: dict[int, tuple[int, int]] = {}  # bidder -> (amount, receipt)
        self._unfunded: list[int] = []  # bidders whose hold was refused: their one bid is spent
        self._unanswered: dict[str, Command] = {}  # hold id -> settle/release sent
        self.winners: list[int] = []
        self.prices: dict[int, int] = {}
        # Invariant: replaying _records into a fresh auctioneer gives this durable state
        self._records: list[AuctionRecord] = []

    def hold_id(self, bidder: int) -> str:
        """The ledger hold of ``bidder``'s bid."""
        return f"{self.config.auction}/{bidder}"

    # ----------------------------------------------------------------- Core

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """Arm the deadline; after a restart re-send every unanswered ledger command."""
        effects: list[Effect] = []
        if self._deadline_at is None:
            effects.append(self._persist(Started(now + self.config.deadline)))
        assert self._deadline_at is not None
        if self.state == "open":
            effects.append(SetTimer(DEADLINE_TIMER, max(0.0, self._deadline_at - now)))
        for bidder, (amount, _) in self._pending.items():
            effects.append(
                self._to_ledger(Hold(self.hold_id(bidder), self._accounts[bidder], amount))
            )
        effects.extend(self._to_ledger(c) for c in self._unanswered.values())
        if self.state == "closing" and not self._pending:
            effects.extend(self._decide())
        return effects

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """A bid from a bidder, or a ledger answer from the ledger node."""
        if isinstance(msg, LedgerAnswer) and src == self.config.ledger:
            return self._on_ledger(msg)
        if isinstance(msg, Bid) and msg.auction == self.config.auction:
            return self._on_bid(src, msg.amount)
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """The deadline: no bid is accepted any more; decide once the holds are placed."""
        if name != DEADLINE_TIMER or self.state != "open":
            return []
        if self._pending:
            return [self._persist(Closing())]
        return self._decide()

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """``op="status"``: reply ``(state, winners, prices)``; other ops are refused."""
        if request.op != "status":
            return [Reply(request.client, f"unknown op {request.op!r}", ok=False)]
        return [Reply(request.client, (self.state, tuple(self.winners), dict(self.prices)))]

    def snapshot_persistent(self) -> tuple[AuctionRecord, ...]:
        """The records of every :class:`Persist` so far, oldest first (what the storage
        adapter holds; O(records) — for harnesses and restarts, not per step)."""
        return tuple(self._records)

    def restore(self, snapshot: Any) -> None:
        """Replay the records of a :meth:`snapshot_persistent` into a fresh auctioneer.

        Raises:
            RuntimeError: the auctioneer is not fresh (it already has records).
            TypeError: ``snapshot`` is not a tuple or list of :data:`AuctionRecord`.
        """
        if self._records:
            raise RuntimeError("restore() needs a fresh Auctioneer (it already has records)")
        if not isinstance(snapshot, tuple | list):
            raise TypeError(f"expected a tuple of auction records, got {type(snapshot).__name__}")
        for record in snapshot:
            if not isinstance(record, _RECORD_TYPES):
                raise TypeError(f"not an auction record: {type(record).__name__}")
            self._apply(record)
            self._records.append(record)

    # ----------------------------------------------------------------- transitions

    def _on_bid(self, bidder: int, amount: Any) -> list[Effect]:
        reason = self._refusal(bidder, amount)
        if reason is not None:
            return [Send(bidder, BidRefused(self.config.auction, reason))]
        persist = self._persist(BidTaken(bidder, amount, self._receipts + 1))
        if amount == 0:
            return [persist, Send(bidder, BidAccepted(self.config.auction, 0))]
        hold = Hold(self.hold_id(bidder), self._accounts[bidder], amount)
        return [persist, self._to_ledger(hold)]

    def _refusal(self, bidder: int, amount: Any) -> str | None:
        if bidder not in self._accounts:
            return "unknown_bidder"
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            return "bad_bid"
        if self.state != "open":
            return "late"
        if bidder in self.bids or bidder in self._pending or bidder in self._unfunded:
            return "duplicate"
        if amount < self.config.reserve:
            return "below_reserve"
        return None

    def _on_ledger(self, answer: LedgerAnswer) -> list[Effect]:
        command = answer.command
        if isinstance(command, Settle | Release):
            if command.hold not in self._unanswered:
                return []  # a duplicated answer
            return [self._persist(CloseAnswered(command.hold))]
        if not isinstance(command, Hold):
            return []
        bidder = self._by_hold.get(command.hold)
        if bidder is None or bidder not in self._pending:
            return []  # an answer to a re-sent hold that was already answered
        amount = self._pending[bidder][0]
        ok = isinstance(answer.result, Ok)
        effects: list[Effect] = [self._persist(HoldAnswered(bidder, ok))]
        if ok:
            reply: Any = BidAccepted(self.config.auction, amount)
        else:
            assert not isinstance(answer.result, Ok)
            reply = BidRefused(self.config.auction, answer.result.code)
        if self.state == "closing" and not self._pending:
            effects.extend(self._decide())
        effects.append(Send(bidder, reply))
        return effects

    def _decide(self) -> list[Effect]:
        c = self.config
        winners, prices = self._clear()
        effects: list[Effect] = [self._persist(Decided(tuple(winners), tuple(prices.items())))]
        effects.extend(self._to_ledger(command) for command in self._unanswered.values())
        for bidder in sorted(self.bids):
            won = bidder in self.prices
            effects.append(Send(bidder, Outcome(c.auction, won, self.prices.get(bidder, 0))))
        return effects

    def _clear(self) -> tuple[list[int], dict[int, int]]:
        return clear(self.bids, self.config.format, self.config.units, self.config.reserve)

    def _to_ledger(self, command: Command) -> Send:
        return Send(self.config.ledger, LedgerRequest(command))

    def _persist(self, record: AuctionRecord) -> Persist:
        """Apply ``record`` to the state and return its :class:`Persist` (O(1) data)."""
        self._apply(record)
        self._records.append(record)
        return Persist(record)

    def _apply(self, record: AuctionRecord) -> None:
        """The state change of one durable record (the live path and replay share it)."""
        if isinstance(record, Started):
            self._deadline_at = record.deadline_at
        elif isinstance(record, BidTaken):
            self._receipts = record.receipt
            if record.amount == 0:
                self.bids[record.bidder] = (0, record.receipt)
            else:
                self._pending[record.bidder] = (record.amount, record.receipt)
        elif isinstance(record, HoldAnswered):
            amount, receipt = self._pending.pop(record.bidder)
            if record.ok:
                self.bids[record.bidder] = (amount, receipt)
            else:
                self._unfunded.append(record.bidder)
        elif isinstance(record, Closing):
            self.state = "closing"
        elif isinstance(record, Decided):
            self.state = "closed"
            self.winners, self.prices = list(record.winners), dict(record.prices)
            for bidder, (amount, _) in sorted(self.bids.items()):
                if amount == 0:
                    continue
                hold = self.hold_id(bidder)
                if bidder in self.prices:
                    command: Command = Settle(hold, self.config.seller, self.prices[bidder])
                else:
                    command = Release(hold)
                self._unanswered[hold] = command
        else:
            self._unanswered.pop(record.hold, None)


@final
class LedgerNode:
    """A node serving a :class:`~trio_foundation.protocols.ledger.Ledger` to other cores.

    Each :class:`LedgerRequest` is applied and answered with a
    :class:`LedgerAnswer`. The node does not persist on every command (a full
    snapshot per command would make an auction quadratic in its bidders): it is
    the in-process ledger, or the front of the replicated ledger whose log is
    durable; :meth:`snapshot_persistent` gives the snapshot on demand.

    Args:
        ledger: the ledger (already holding the accounts).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """Nothing to arm."""
        return []

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """Apply a :class:`LedgerRequest` and answer ``src``."""
        if not isinstance(msg, LedgerRequest):
            return []
        result = self.ledger.apply(msg.command)
        return [Send(src, LedgerAnswer(msg.command, result))]

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """No timers."""
        return []

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """``op="balance"`` with an account name: reply its balance."""
        if request.op != "balance" or request.value not in self.ledger.balances():
            return [Reply(request.client, f"no account {request.value!r}", ok=False)]
        return [Reply(request.client, self.ledger.balance(request.value))]

    def snapshot_persistent(self) -> Any:
        """The ledger's snapshot bytes."""
        return self.ledger.snapshot()

    def restore(self, snapshot: Any) -> None:
        """Load the ledger from snapshot bytes."""
        self.ledger.restore(snapshot)
