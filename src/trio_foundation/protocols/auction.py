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
client); bidder messages may be lost, duplicated, delayed or reordered. The
auctioneer persists its state (:class:`Persist`) before every message it sends.
"""

from __future__ import annotations

import random
from typing import Any, Final, Literal, TypeAlias, final

import attrs

from .effects import ClientRequest, Effect, Persist, Reply, Send, SetTimer
from .ledger import Command, Hold, Ledger, Ok, Release, Result, Settle

__all__ = [
    "AuctionConfig",
    "Auctioneer",
    "Bid",
    "BidAccepted",
    "BidRefused",
    "Format",
    "LedgerAnswer",
    "LedgerNode",
    "LedgerRequest",
    "Outcome",
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


@final
class Auctioneer:
    """The auctioneer's core (a :class:`~trio_foundation.protocols.effects.Core`).

    Args:
        config: the auction.
    """

    def __init__(self, config: AuctionConfig) -> None:
        self.config = config
        self._accounts = dict(config.bidders)
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
        self._persisted: Any = None

    def hold_id(self, bidder: int) -> str:
        """The ledger hold of ``bidder``'s bid."""
        return f"{self.config.auction}/{bidder}"

    # ----------------------------------------------------------------- Core

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """Arm the deadline; after a restart re-send every unanswered ledger command."""
        if self._deadline_at is None:
            self._deadline_at = now + self.config.deadline
        effects: list[Effect] = [self._persist()]
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
        self.state = "closing"
        if self._pending:
            return [self._persist()]
        return self._decide()

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """``op="status"``: reply ``(state, winners, prices)``; other ops are refused."""
        if request.op != "status":
            return [Reply(request.client, f"unknown op {request.op!r}", ok=False)]
        return [Reply(request.client, (self.state, tuple(self.winners), dict(self.prices)))]

    def snapshot_persistent(self) -> Any:
        """The data of the last :class:`Persist`."""
        return self._persisted

    def restore(self, snapshot: Any) -> None:
        """Load the state of a :meth:`snapshot_persistent` into a fresh auctioneer."""
        (
            self.state,
            self._deadline_at,
            self._receipts,
            bids,
            pending,
            unanswered,
            winners,
            prices,
            unfunded,
        ) = snapshot
        self._unfunded = list(unfunded)
        self.bids, self._pending = dict(bids), dict(pending)
        self._unanswered = dict(unanswered)
        self.winners, self.prices = list(winners), dict(prices)
        self._persisted = snapshot

    # ----------------------------------------------------------------- transitions

    def _on_bid(self, bidder: int, amount: Any) -> list[Effect]:
        reason = self._refusal(bidder, amount)
        if reason is not None:
            return [Send(bidder, BidRefused(self.config.auction, reason))]
        self._receipts += 1
        if amount == 0:
            self.bids[bidder] = (0, self._receipts)
            return [self._persist(), Send(bidder, BidAccepted(self.config.auction, 0))]
        self._pending[bidder] = (amount, self._receipts)
        hold = Hold(self.hold_id(bidder), self._accounts[bidder], amount)
        return [self._persist(), self._to_ledger(hold)]

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
            self._unanswered.pop(command.hold, None)
            return [self._persist()]
        if not isinstance(command, Hold):
            return []
        bidder = next((b for b in self._pending if self.hold_id(b) == command.hold), None)
        if bidder is None:
            return []  # an answer to a re-sent hold that was already answered
        amount, receipt = self._pending.pop(bidder)
        effects: list[Effect] = []
        if isinstance(answer.result, Ok):
            self.bids[bidder] = (amount, receipt)
            reply: Any = BidAccepted(self.config.auction, amount)
        else:
            self._unfunded.append(bidder)
            reply = BidRefused(self.config.auction, answer.result.code)
        if self.state == "closing" and not self._pending:
            effects.extend(self._decide())
        else:
            effects.append(self._persist())
        effects.append(Send(bidder, reply))
        return effects

    def _decide(self) -> list[Effect]:
        c = self.config
        self.winners, self.prices = self._clear()
        self.state = "closed"
        commands: list[Command] = []
        for bidder, (amount, _) in sorted(self.bids.items()):
            if amount == 0:
                continue
            if bidder in self.prices:
                commands.append(Settle(self.hold_id(bidder), c.seller, self.prices[bidder]))
            else:
                commands.append(Release(self.hold_id(bidder)))
        for command in commands:
            self._unanswered[command.hold] = command  # type: ignore[union-attr]
        effects: list[Effect] = [self._persist()]
        effects.extend(self._to_ledger(command) for command in commands)
        for bidder in sorted(self.bids):
            won = bidder in self.prices
            effects.append(Send(bidder, Outcome(c.auction, won, self.prices.get(bidder, 0))))
        return effects

    def _clear(self) -> tuple[list[int], dict[int, int]]:
        return clear(self.bids, self.config.format, self.config.units, self.config.reserve)

    def _to_ledger(self, command: Command) -> Send:
        return Send(self.config.ledger, LedgerRequest(command))

    def _persist(self) -> Persist:
        self._persisted = (
            self.state,
            self._deadline_at,
            self._receipts,
            # insertion order is deterministic (arrival order); no sort per bid
            tuple(self.bids.items()),
            tuple(self._pending.items()),
            tuple(self._unanswered.items()),
            tuple(self.winners),
            tuple(self.prices.items()),
            tuple(self._unfunded),
        )
        return Persist(self._persisted)


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
