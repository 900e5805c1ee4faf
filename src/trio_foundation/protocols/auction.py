"""Sans-IO sealed-bid auctions with escrow in the credit ledger.

Theory of operation (``specs/Auction.tla`` is the model-checked version)
------------------------------------------------------------------------

An :class:`Auctioneer` sells ``units`` identical units in one of three sealed-bid
formats (or one unit in one of the two open formats, described at the end):

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
in the configuration), ``"bad_bid"`` (not an int, negative, or above the
ledger's ``MAX_AMOUNT``, 2**63 - 1), ``"late"``
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

Open formats: English ascending and Dutch descending
----------------------------------------------------

Two more formats sell one unit in the open (``specs/AuctionOpen.tla``):

* ``"english"`` (open outcry, ascending): the auctioneer keeps a *standing
  bid* and broadcasts each new one to every registered bidder
  (:class:`Standing`). A bid is taken only if it meets the reserve and beats
  the *bar* — the standing bid and every bid whose hold is still being placed
  — by at least ``min_increment`` (so two bids never tie; a bid equal to or
  just above the bar is refused ``"too_low"``). Its hold (id
  ``"<auction>/<bidder>/<receipt>"``) is placed before it stands; when it
  stands, the outbid bidder's hold is released (a bidder has at most one live
  hold: a bid from the standing bidder, from one whose bid is being
  placed, or from one whose outbid hold's release is not answered yet, is refused
  ``"duplicate"`` — so this holds whatever order the ledger applies commands
  in). The auction closes ``quiet`` seconds of
  the auctioneer's clock after the last bid stood (or after the start, if none
  did) — timer ``"quiet"`` — or at the hard ``deadline``, whichever is first;
  the standing bidder wins and pays its bid. At most ``max_bids`` bids are
  taken (the rest refused ``"limit"``), which bounds the durable log: at most
  ``3 * max_bids + 3`` records (per bid taken: ``BidTaken``, its hold's answer,
  the answer to its release or settle).
* ``"dutch"`` (descending price clock): the clock starts at ``start_price`` at
  the auctioneer's first start and falls by ``decrement`` every ``tick``
  seconds (timer ``"tick"``), never below the ``reserve``; each new price is
  broadcast (:class:`PriceClock`). A :class:`Bid` accepts the clock's current
  price: its ``amount`` must be the price on the clock when the bid is
  received (else ``"stale_price"``; below the reserve ``"below_reserve"``).
  The accept's hold is placed before it can win; the winner is the earliest
  received accept whose hold was placed (a later one waits for the earlier
  ones' answers), and it pays the price it accepted. Other accepts' holds are
  released. With no accept the clock stays one tick at the reserve, then the
  auction closes unsold; the hard ``deadline`` closes it too. A bidder has one
  accept, so the log holds at most ``3 * len(bidders) + 3`` records.

The price is a function of the persisted start time (:class:`OpenStarted`)
and the local clock, so a restart neither raises nor resets it; a time within
``1e-9`` s of a tick boundary counts as the boundary (timer arithmetic in
floats). Both open formats share the sealed formats' refusals and add
``"too_low"``, ``"stale_price"`` and ``"limit"``; they persist
:class:`OpenStarted` instead of :class:`Started`, and the English format
:class:`BidStood` (a bid stood at a local time) where the others persist
:class:`HoldAnswered` for a placed hold; a release of an outbid hold is
answered with :class:`CloseAnswered` like a release at the close.
"""

from __future__ import annotations

import math
import random
from typing import Any, Final, Literal, TypeAlias, final

import attrs

from .effects import ClientRequest, Effect, Persist, Reply, Send, SetTimer
from .ledger import MAX_AMOUNT, Command, Hold, Ledger, Ok, Release, Result, Settle

__all__ = [
    "AuctionConfig",
    "AuctionRecord",
    "Auctioneer",
    "Bid",
    "BidAccepted",
    "BidRefused",
    "BidStood",
    "BidTaken",
    "CloseAnswered",
    "Closing",
    "Decided",
    "Format",
    "HoldAnswered",
    "LedgerAnswer",
    "LedgerNode",
    "LedgerRequest",
    "OpenStarted",
    "Outcome",
    "PriceClock",
    "Standing",
    "Started",
    "clear",
]

Format: TypeAlias = Literal["first_price", "second_price", "uniform", "english", "dutch"]
FORMATS: Final = ("first_price", "second_price", "uniform", "english", "dutch")
OPEN_FORMATS: Final = ("english", "dutch")
DEADLINE_TIMER: Final = "deadline"
QUIET_TIMER: Final = "quiet"
TICK_TIMER: Final = "tick"
TICK_EPSILON: Final = 1e-9  # seconds: a time this close to a tick boundary is the boundary

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
class Standing:
    """Auctioneer → every bidder (English): ``bidder``'s bid of ``amount`` now stands."""

    auction: str
    bidder: int
    amount: int


@final
@attrs.frozen
class PriceClock:
    """Auctioneer → every bidder (Dutch): the clock now asks ``price``."""

    auction: str
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
class OpenStarted:
    """Durable (English, Dutch): the auction started at local time ``started_at`` (the
    Dutch clock's origin, the English quiet period's first start) and closes at the
    latest at ``deadline_at`` (first start only)."""

    started_at: float
    deadline_at: float


@final
@attrs.frozen
class BidStood:
    """Durable (English): ``bidder``'s pending bid got its hold at local time ``at``; it
    stands if it beats the standing bid (the outbid hold is then released)."""

    bidder: int
    at: float


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


AuctionRecord: TypeAlias = (
    Started | OpenStarted | BidTaken | HoldAnswered | BidStood | Closing | Decided | CloseAnswered
)

# --------------------------------------------------------------------------- config


def _check_int(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def _check_amount(name: str, value: int) -> None:
    # no bid could meet a reserve or be taken at a price the ledger cannot hold
    if value > MAX_AMOUNT:
        raise ValueError(
            f"{name} must be <= {MAX_AMOUNT} (the ledger's largest amount), got {value}"
        )


def _is_amount(value: object) -> bool:
    """A bid the ledger can hold: an int (not a bool) in ``[0, MAX_AMOUNT]``."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_AMOUNT


def _check_seconds(name: str, value: object) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):  # type: ignore[arg-type,operator]
        raise ValueError(f"{name} must be > 0 seconds (finite), got {value!r}")


# open-format parameters with a default: (name, format, default); another value
# given to another format is refused (the default itself cannot be told apart)
_DEFAULTED: Final = (
    ("min_increment", "english", 1),
    ("max_bids", "english", 1000),
    ("decrement", "dutch", 1),
)


@final
@attrs.frozen
class AuctionConfig:
    """One auction.

    Attributes:
        auction: the auction's id (prefix of its hold ids); not empty or blank, no
            ``/``; never reused on one ledger (docs/economy.md: hold ids).
        format: ``"first_price"``, ``"second_price"``, ``"uniform"``,
            ``"english"`` or ``"dutch"``.
        deadline: seconds of the auctioneer's clock from its first start to the
            close (the hard close of the open formats); must be > 0 and finite
            (an auction without a deadline is refused).
        bidders: ``(node id, ledger account)`` of every registered bidder.
        seller: the ledger account paid at the close.
        ledger: the ledger node's id (not a bidder's).
        units: units for sale (1 unless ``"uniform"``).
        reserve: the lowest acceptable bid (the Dutch clock's floor), >= 0.
        min_increment: English: credits by which a bid must beat the standing
            bid, >= 1.
        quiet: English (required): seconds without a new standing bid after which
            the auction closes, > 0.
        start_price: Dutch (required): the clock's first price, >= ``reserve``.
        decrement: Dutch: credits the price falls by per tick, >= 1.
        tick: Dutch (required): seconds between two prices, > 0.
        max_bids: English: bids taken at most (each costs durable records), >= 1.

    An open format's parameter given to another format (``quiet``,
    ``start_price``, ``tick``, or ``min_increment``, ``decrement``, ``max_bids``
    other than their defaults) is refused, as are ``units`` other than 1 outside
    ``"uniform"``: never silently ignored.

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
    min_increment: int = 1
    quiet: float | None = None
    start_price: int | None = None
    decrement: int = 1
    tick: float | None = None
    max_bids: int = 1000

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.auction, str):
            raise TypeError(f"auction must be a str, got {type(self.auction).__name__}")
        if not self.auction.strip():
            raise ValueError(f"auction id must not be empty or blank, got {self.auction!r}")
        if "/" in self.auction:  # "a/2" bidder 3 and "a" bidder 2 receipt 3: one hold id
            raise ValueError(
                f"auction id must not contain '/' (it separates a hold id's parts), "
                f"got {self.auction!r}"
            )
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        _check_seconds("deadline", self.deadline)
        _check_int("units", self.units, 1)
        _check_int("reserve", self.reserve, 0)
        _check_amount("reserve", self.reserve)
        _check_int("min_increment", self.min_increment, 1)
        _check_int("decrement", self.decrement, 1)
        _check_int("max_bids", self.max_bids, 1)
        if self.format != "uniform" and self.units != 1:
            raise ValueError(f"{self.format} sells one unit, got units={self.units}")
        for name, owner in (("quiet", "english"), ("start_price", "dutch"), ("tick", "dutch")):
            value = getattr(self, name)
            if self.format != owner and value is not None:
                raise ValueError(f"{name} is for {owner} auctions, got {name}={value!r}")
            if self.format == owner and value is None:
                raise ValueError(f"a {owner} auction needs {name}")
        for name, owner, default in _DEFAULTED:
            value = getattr(self, name)
            if self.format != owner and value != default:  # else silently ignored
                raise ValueError(
                    f"{name} is for {owner} auctions, got {name}={value!r}"
                    f" in a {self.format} auction"
                )
        if self.format == "english":
            _check_seconds("quiet", self.quiet)
        if self.format == "dutch":
            _check_seconds("tick", self.tick)
            _check_int("start_price", self.start_price, 0)
            assert self.start_price is not None
            _check_amount("start_price", self.start_price)
            if self.start_price < self.reserve:
                raise ValueError(
                    f"start_price must be >= reserve ({self.reserve}), got {self.start_price}"
                )
        ids = [b for b, _ in self.bidders]
        if len(set(ids)) != len(ids):
            raise ValueError(f"bidder ids must be unique, got {ids}")
        if self.ledger in ids:
            raise ValueError(
                f"bidder id {self.ledger} is the ledger's node id (ledger={self.ledger})"
            )


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
_RECORD_TYPES: Final = (
    Started,
    OpenStarted,
    BidTaken,
    HoldAnswered,
    BidStood,
    Closing,
    Decided,
    CloseAnswered,
)


@final
class Auctioneer:
    """The auctioneer's core (a :class:`~trio_foundation.protocols.effects.Core`).

    Args:
        config: the auction.
    """

    def __init__(self, config: AuctionConfig) -> None:
        self.config = config
        self._accounts = dict(config.bidders)
        # hold id -> bidder (English: the holds being placed, filled as bids are taken)
        self._by_hold: dict[str, int] = {}
        if config.format != "english":
            self._by_hold = {f"{config.auction}/{b}": b for b in self._accounts}
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
        # open formats
        self._open = config.format in OPEN_FORMATS
        self._started_at: float | None = None  # local time of the first start
        # English: (bidder, amount, receipt) of the standing bid; Invariant: its hold is placed
        self.standing: tuple[int, int, int] | None = None
        self._stood_at: float | None = None  # local time the last bid stood
        self._taken = 0  # bids taken (English: bounded by max_bids)
        self._receipt_of: dict[int, int] = {}  # English: bidder -> receipt of its live hold

    def hold_id(self, bidder: int, receipt: int | None = None) -> str:
        """The ledger hold of ``bidder``'s bid (English: of its bid with ``receipt``)."""
        if self.config.format == "english":
            if receipt is None:
                receipt = self._receipt_of[bidder]
            return f"{self.config.auction}/{bidder}/{receipt}"
        return f"{self.config.auction}/{bidder}"

    def clock_price(self, now: float) -> int:
        """Dutch: the price on the clock at local time ``now`` (``start_price`` before the
        first start); falls by ``decrement`` every ``tick`` seconds, never below the reserve.

        Raises:
            RuntimeError: the format is not Dutch.
        """
        c = self.config
        if c.format != "dutch":
            raise RuntimeError(f"clock_price is for dutch auctions, this one is {c.format}")
        assert c.start_price is not None
        return max(c.reserve, c.start_price - c.decrement * self._steps(now))

    def _steps(self, now: float) -> int:
        """Dutch: ticks elapsed at ``now`` since the first start."""
        if self._started_at is None:
            return 0
        assert self.config.tick is not None
        return max(0, math.floor((now - self._started_at) / self.config.tick + TICK_EPSILON))

    def _floor_step(self) -> int:
        """Dutch: the tick at which the clock, one tick at the reserve, closes unsold."""
        c = self.config
        assert c.start_price is not None
        return -(-(c.start_price - c.reserve) // c.decrement) + 1

    # ----------------------------------------------------------------- Core

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """Arm the deadline; after a restart re-send every unanswered ledger command.

        English: also arm the quiet period; Dutch: announce the clock's price and arm
        the next tick (both from the persisted start, so a restart resets nothing).
        """
        if self._open:
            return self._open_start(now)
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
            if self._open:
                return self._open_ledger(now, msg)
            return self._on_ledger(msg)
        if isinstance(msg, Bid) and msg.auction == self.config.auction:
            if self._open:
                return self._open_bid(now, src, msg.amount)
            return self._on_bid(src, msg.amount)
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """The deadline (English: or the quiet period; Dutch: or the clock's floor): no bid
        is accepted any more; decide once the holds are placed. Dutch ``"tick"``: announce
        the new price."""
        if self._open:
            return self._open_timer(now, name)
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
            ValueError: a record names a bidder this auction's config does not
                have (records of another configuration); nothing is restored.
        """
        if self._records:
            raise RuntimeError("restore() needs a fresh Auctioneer (it already has records)")
        if not isinstance(snapshot, tuple | list):
            raise TypeError(f"expected a tuple of auction records, got {type(snapshot).__name__}")
        for record in snapshot:  # all checked before any is applied
            if not isinstance(record, _RECORD_TYPES):
                raise TypeError(f"not an auction record: {type(record).__name__}")
            if not self._fits(record):
                raise TypeError(
                    f"{type(record).__name__} is not a record of a {self.config.format} auction"
                )
            named = (
                record.winners
                if isinstance(record, Decided)
                else (record.bidder,)
                if isinstance(record, BidTaken | BidStood | HoldAnswered)
                else ()
            )
            for bidder in named:
                if bidder not in self._accounts:
                    raise ValueError(
                        f"{type(record).__name__} names bidder {bidder}, not a bidder of"
                        f" auction {self.config.auction!r}: records of another configuration"
                    )
        for record in snapshot:
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
        if not _is_amount(amount):
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
        # open formats: the commands owed before are in flight already; send the new ones
        before = set(self._unanswered) if self._open else set()
        effects: list[Effect] = [self._persist(Decided(tuple(winners), tuple(prices.items())))]
        effects.extend(
            self._to_ledger(command)
            for hold, command in self._unanswered.items()
            if hold not in before
        )
        told = [b for b, _ in c.bidders] if self._open else sorted(self.bids)  # open: all hear
        for bidder in told:
            won = bidder in self.prices
            effects.append(Send(bidder, Outcome(c.auction, won, self.prices.get(bidder, 0))))
        return effects

    def _clear(self) -> tuple[list[int], dict[int, int]]:
        if self._open:
            return self._open_clear()
        return clear(self.bids, self.config.format, self.config.units, self.config.reserve)

    def _fits(self, record: AuctionRecord) -> bool:
        """Whether ``record`` is one this auction's format persists."""
        if isinstance(record, Started):
            return not self._open
        if isinstance(record, OpenStarted):
            return self._open
        if isinstance(record, BidStood):
            return self.config.format == "english"
        return True

    # ----------------------------------------------------------------- open formats

    def _open_start(self, now: float) -> list[Effect]:
        c = self.config
        effects: list[Effect] = []
        if self._started_at is None:
            effects.append(self._persist(OpenStarted(now, now + c.deadline)))
        assert self._started_at is not None and self._deadline_at is not None
        # releases before holds: a bidder's outbid hold is closed before its next one opens
        effects.extend(self._to_ledger(command) for command in self._unanswered.values())
        for bidder, (amount, receipt) in self._pending.items():
            if amount > 0:
                hold = Hold(self.hold_id(bidder, receipt), self._accounts[bidder], amount)
                effects.append(self._to_ledger(hold))
        if self.state == "open":
            effects.append(SetTimer(DEADLINE_TIMER, max(0.0, self._deadline_at - now)))
            if c.format == "english":
                effects.append(self._quiet_timer(now))
            else:
                effects.extend(self._announce(now))
        elif self.state == "closing":
            effects.extend(self._maybe_decide())
        return effects

    def _quiet_timer(self, now: float) -> SetTimer:
        assert self.config.quiet is not None and self._started_at is not None
        last = self._stood_at if self._stood_at is not None else self._started_at
        return SetTimer(QUIET_TIMER, max(0.0, last + self.config.quiet - now))

    def _announce(self, now: float) -> list[Effect]:
        """Dutch: broadcast the clock's price and arm the next tick (or close at the floor)."""
        c = self.config
        assert c.tick is not None and self._started_at is not None
        step = self._steps(now)
        if step >= self._floor_step():
            return self._close()
        price = self.clock_price(now)
        news = PriceClock(c.auction, price)
        effects: list[Effect] = [Send(b, news) for b, _ in c.bidders]
        next_at = self._started_at + (step + 1) * c.tick
        effects.append(SetTimer(TICK_TIMER, max(0.0, next_at - now)))
        return effects

    def _open_timer(self, now: float, name: str) -> list[Effect]:
        if self.state != "open":
            return []
        if name == DEADLINE_TIMER:
            return self._close()
        if name == QUIET_TIMER and self.config.format == "english":
            return self._close()
        if name == TICK_TIMER and self.config.format == "dutch":
            return self._announce(now)
        return []

    def _close(self) -> list[Effect]:
        """No bid is taken any more; decide once the holds being placed are answered."""
        if self._pending:
            return [self._persist(Closing())]
        self.state = "closing"  # not durable: _decide persists the outcome at once
        return self._decide()

    def _open_refusal(self, now: float, bidder: int, amount: Any) -> str | None:
        c = self.config
        if bidder not in self._accounts:
            return "unknown_bidder"
        if not _is_amount(amount):
            return "bad_bid"
        if self.state != "open":
            return "late"
        if bidder in self._pending or (self.standing is not None and self.standing[0] == bidder):
            return "duplicate"
        if c.format == "english" and self._releasing(bidder):
            return "duplicate"  # its outbid hold is not released yet: one live hold each
        if c.format == "dutch" and (bidder in self.bids or bidder in self._unfunded):
            return "duplicate"
        if amount < c.reserve:
            return "below_reserve"
        if c.format == "english":
            if amount < self._bar():
                return "too_low"
            if self._taken >= c.max_bids:
                return "limit"
        elif amount != self.clock_price(now):
            return "stale_price"
        return None

    def _releasing(self, bidder: int) -> bool:
        """English: the release of one of ``bidder``'s holds is not answered yet."""
        prefix = f"{self.config.auction}/{bidder}/"
        return any(hold.startswith(prefix) for hold in self._unanswered)

    def _bar(self) -> int:
        """English: the least bid that may be taken (it beats every live bid by the increment)."""
        live = [a for a, _ in self._pending.values()]
        if self.standing is not None:
            live.append(self.standing[1])
        return max(live) + self.config.min_increment if live else self.config.reserve

    def _open_bid(self, now: float, bidder: int, amount: Any) -> list[Effect]:
        reason = self._open_refusal(now, bidder, amount)
        if reason is not None:
            return [Send(bidder, BidRefused(self.config.auction, reason))]
        receipt = self._receipts + 1
        effects: list[Effect] = [self._persist(BidTaken(bidder, amount, receipt))]
        if amount == 0:  # nothing to hold: placed at once
            return effects + self._placed(now, bidder, True)
        hold = Hold(self.hold_id(bidder, receipt), self._accounts[bidder], amount)
        effects.append(self._to_ledger(hold))
        return effects

    def _open_ledger(self, now: float, answer: LedgerAnswer) -> list[Effect]:
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
        ok = isinstance(answer.result, Ok)
        effects = self._placed(now, bidder, ok)
        if not ok:
            assert not isinstance(answer.result, Ok)
            effects.append(Send(bidder, BidRefused(self.config.auction, answer.result.code)))
        return effects

    def _placed(self, now: float, bidder: int, ok: bool) -> list[Effect]:
        """``bidder``'s pending hold was placed (``ok``) or refused."""
        c = self.config
        amount = self._pending[bidder][0]
        effects: list[Effect] = []
        if c.format == "english" and ok:
            before = dict(self._unanswered)
            effects.append(self._persist(BidStood(bidder, now)))
            effects.append(Send(bidder, BidAccepted(c.auction, amount)))
            effects.extend(
                self._to_ledger(cmd) for hold, cmd in self._unanswered.items() if hold not in before
            )
            if self.standing is not None and self.standing[0] == bidder:
                news = Standing(c.auction, bidder, amount)  # one frozen message for all
                effects.extend(Send(b, news) for b, _ in c.bidders)
                if self.state == "open":
                    effects.append(self._quiet_timer(now))
        else:
            before = dict(self._unanswered)
            effects.append(self._persist(HoldAnswered(bidder, ok)))
            if ok and self.state != "closed":  # after a Dutch win its Outcome said it lost
                effects.append(Send(bidder, BidAccepted(c.auction, amount)))
            effects.extend(
                self._to_ledger(cmd) for hold, cmd in self._unanswered.items() if hold not in before
            )
        effects.extend(self._maybe_decide())
        return effects

    def _maybe_decide(self) -> list[Effect]:
        """Decide when the outcome is known: English and Dutch once closing with no hold
        being placed; Dutch also as soon as the earliest received accept still in play
        has its hold."""
        if self.state == "closed":
            return []
        if self.state == "closing" and not self._pending:
            return self._decide()
        if self.config.format == "dutch" and self.bids:
            first = min(r for _, r in self.bids.values())
            if all(r > first for _, r in self._pending.values()):
                return self._decide()
        return []

    def _open_clear(self) -> tuple[list[int], dict[int, int]]:
        """The winner and its price: the standing bid (English); the earliest received
        accept whose hold was placed, at the price it accepted (Dutch)."""
        if self.config.format == "english":
            if self.standing is None:
                return [], {}
            bidder, amount, _ = self.standing
            return [bidder], {bidder: amount}
        if not self.bids:
            return [], {}
        winner = min(self.bids, key=lambda b: self.bids[b][1])
        return [winner], {winner: self.bids[winner][0]}

    def _open_apply(self, record: AuctionRecord) -> None:
        """The state change of one durable record of an open format."""
        c = self.config
        if isinstance(record, OpenStarted):
            self._started_at, self._deadline_at = record.started_at, record.deadline_at
        elif isinstance(record, BidTaken):
            self._receipts = record.receipt
            self._taken += 1
            self._pending[record.bidder] = (record.amount, record.receipt)
            if c.format == "english":
                self._receipt_of[record.bidder] = record.receipt
                self._by_hold[self.hold_id(record.bidder, record.receipt)] = record.bidder
        elif isinstance(record, BidStood):
            amount, receipt = self._pending.pop(record.bidder)
            del self._by_hold[self.hold_id(record.bidder, receipt)]
            if self.standing is None or amount > self.standing[1]:
                if self.standing is not None:
                    self._release(self.standing[0], self.standing[2], self.standing[1])
                self.standing = (record.bidder, amount, receipt)
                self._stood_at = record.at
                self.bids[record.bidder] = (amount, receipt)
            else:  # a later bid stood first: this one is outbid already
                self._release(record.bidder, receipt, amount)
        elif isinstance(record, HoldAnswered):
            amount, receipt = self._pending.pop(record.bidder)
            if c.format == "english":
                del self._by_hold[self.hold_id(record.bidder, receipt)]
            elif record.ok and self.state == "closed":  # a Dutch accept after the win
                self._release(record.bidder, receipt, amount)
            elif record.ok:
                self.bids[record.bidder] = (amount, receipt)
            else:
                self._unfunded.append(record.bidder)
        elif isinstance(record, Closing):
            self.state = "closing"
        elif isinstance(record, Decided):
            self.state = "closed"
            self.winners, self.prices = list(record.winners), dict(record.prices)
            for bidder, (amount, receipt) in sorted(self.bids.items()):
                if bidder in self.prices and self.prices[bidder] > 0:
                    hold = self.hold_id(bidder, receipt)
                    self._unanswered[hold] = Settle(hold, c.seller, self.prices[bidder])
                elif bidder not in self.prices and c.format == "dutch":
                    self._release(bidder, receipt, amount)
        elif isinstance(record, CloseAnswered):
            self._unanswered.pop(record.hold, None)

    def _release(self, bidder: int, receipt: int, amount: int) -> None:
        """Owe the ledger the release of ``bidder``'s hold of ``amount`` (none for 0)."""
        if amount > 0:
            hold = self.hold_id(bidder, receipt)
            self._unanswered[hold] = Release(hold)

    def _to_ledger(self, command: Command) -> Send:
        return Send(self.config.ledger, LedgerRequest(command))

    def _persist(self, record: AuctionRecord) -> Persist:
        """Apply ``record`` to the state and return its :class:`Persist` (O(1) data)."""
        self._apply(record)
        self._records.append(record)
        return Persist(record)

    def _apply(self, record: AuctionRecord) -> None:
        """The state change of one durable record (the live path and replay share it)."""
        if self._open:
            self._open_apply(record)
        elif isinstance(record, Started):
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
        elif isinstance(record, CloseAnswered):
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
        if request.op != "balance":
            return [Reply(request.client, f"unknown op {request.op!r} (only 'balance')", ok=False)]
        if request.value not in self.ledger.balances():
            return [Reply(request.client, f"no account {request.value!r}", ok=False)]
        return [Reply(request.client, self.ledger.balance(request.value))]

    def snapshot_persistent(self) -> Any:
        """The ledger's snapshot bytes."""
        return self.ledger.snapshot()

    def restore(self, snapshot: Any) -> None:
        """Load the ledger from snapshot bytes."""
        self.ledger.restore(snapshot)
