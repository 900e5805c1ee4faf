"""Sealed-bid auction trace validation: the real auctioneer → ``specs/AuctionTrace.tla`` → TLC.

:func:`simulated_run` runs the real
:class:`~trio_foundation.protocols.auction.Auctioneer` (node 0, in one of the
sealed formats ``first_price``, ``second_price`` or ``uniform``) with the real
:class:`~trio_foundation.protocols.auction.LedgerNode` (node 1), four bidders
(nodes 2..5) and a stranger (node 6, not registered) in the deterministic
simulator (:class:`~trio_foundation.runtime.sim.Simulation`, every node a
:class:`~trio_foundation.runtime.driver.NodeDriver`), under a fault schedule
drawn from the seed: duplicated, delayed and reordered messages; bidders that
lose a share of what they send and receive, crash and restart (forgetting
everything: a restarted bidder bids again, often another amount), and bid
honestly, late (racing the close), twice (a change of mind), every message two
or three times, above their funds (the ledger refuses the hold), with junk
amounts (negative, not an int) or for another auction; and crashes of the
auctioneer, which restarts from its records (:class:`DurableAuctioneer`
persists the journal so far, as the core's module doc asks of a storage
adapter). The ledger link is never lossy (the core requires that). Every
transition is recorded through the drivers' trace hook, the auctioneer's with
the projection :func:`project`.

:func:`trace_of` maps the auctioneer's transitions to records of
``specs/AuctionTrace.tla``, one per step of ``specs/Auction.tla``;
:func:`check_traces` writes many runs of one auction into one module
``AuctionTraceData`` and asks TLC, in one run, whether each is a behaviour of
``Auction`` that keeps its safety invariants.

The mapping
-----------

Bidder ``node`` is the spec's bidder ``node``. The trace starts at the
auctioneer's first start (the spec's ``Init``). An auctioneer transition
becomes:

* a **bid** received → ``Receive`` of ``[b, amt]``, preceded by the bidder's
  ``SendBid`` the first time that bid (bidder and amount) is received (the
  spec lets a bidder send at any moment; a duplicate or a re-sent bid is a
  second delivery of the message still in flight);
* the **deadline** that ends the open phase → ``Close``; when holds were still
  being placed (the core's ``"closing"`` state) the decision comes later, at
  the transition that decides (the last hold answered, or a restart) →
  ``Done`` (the spec stutters on its closed state: the decision it took at the
  close must be the core's);
* a **restart** → ``Restart`` (a stutter: the durable state is the state);
* anything else the core consumes (a ledger answer, a refused or foreign
  message) maps to nothing when it changes nothing logged and sends nothing
  checked, and to an ``Ignored`` record (a stutter) otherwise: the trace spec
  then rejects a record whose logged state changed.

Each record logs, after its step, the phase (the core's ``"closing"`` and
``"closed"`` are the spec's ``"closed"``: no bid is taken any more), the bids
taken (``[b, amt]``, from the core's records), and, unless the decision is
still pending, the escrow per bidder and the awards (``[b, amt, unit, price]``:
the core's winners, best first, and their prices). A taken bid's escrow is
``"held"``; after the decision ``"settled"`` or ``"released"`` once the core
has sent the ledger that command for its hold (a loser whose release was never
sent stays ``"held"``). The trace spec takes each record by the spec action it
names; a record that no spec action explains is taken anyway with its logged
state, the observer history updated from it, and the run is rejected at that
record, naming the safety invariant the step broke (``FollowsSpec`` if none).

The last record of each core transition also logs its ``Persist`` effects (each
with the durable state after it: the bids whose hold is placed, the decision
and its prices, folded from the records persisted so far) and the sends that
depend on the durable state *in the order the core emitted them*: an
acceptance (``BidAccepted``), an outcome (``Outcome``, won or lost), a settle
or a release. The trace spec checks ``SendsDurable`` (persist before send) over
them: a core that emits an ``Outcome`` before the ``Persist`` of its decision
is rejected, although the node driver executes the ``Persist`` first anyway.

Abstractions (where the core is finer than the spec)
----------------------------------------------------

* **Escrow is asynchronous in the core.** The spec escrows a bid in the step
  that receives it; the core takes the bid (``BidTaken``), asks the ledger for
  the hold and counts the bid once the hold is placed, closing only when no
  hold is being placed. A taken bid whose hold the ledger grants is the spec's
  bid from the moment it is taken (same receipt order). A bidder whose hold
  the ledger refuses (it bid above its funds) is, for the spec, a bidder whose
  every bid was lost: all its bids map to nothing. Which bidders those are is
  read from the ledger's answers the auctioneer received (the first answer to
  each hold), not from the core's reaction to them.
* **Receipts.** The spec numbers every reception, the core the bids it takes;
  both in reception order, which is all the tie rule (amount, then receipt,
  then bidder id) reads.
* **The alphabet.** The spec's bidders are the registered ones, each bid an
  int in ``0..2**31 - 1``. Messages outside it map to nothing: the stranger's,
  a junk amount (negative, not an int, a bool), a bid for another auction.
* **Zero bids.** A bid of 0 (with ``reserve = 0``) needs no hold in the core;
  the spec escrows it. Its escrow is logged ``"held"`` until the decision, then
  ``"settled"`` or ``"released"`` by the decision itself. The simulated runs use
  ``reserve = 1``; the chaos harness's runs (``tests/market_chaos.py``) have
  reserve 0 too.
* **Not in the spec**: the core's ``"closing"`` state (between the close and a
  decision that waits for holds), the ledger's answers, ``BidRefused``, timers
  and the clock (the spec's close happens at any moment; the core's deadline
  is persisted, so a restart does not move it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, final

import attrs

from ...protocols.auction import (
    AuctionConfig,
    Auctioneer,
    Bid,
    BidAccepted,
    BidRefused,
    BidTaken,
    Decided,
    HoldAnswered,
    LedgerAnswer,
    LedgerNode,
    LedgerRequest,
    Outcome,
)
from ...protocols.effects import ClientRequest, Effect, Persist, Reply, Send, SetTimer
from ...protocols.ledger import Hold, Ledger, Mint, Ok, Open, Release, Settle
from ...runtime.driver import Start, Transition
from ...runtime.faults import (
    Crash,
    FaultEvent,
    Restart,
    SetDuplicateRate,
    SetReorderRate,
    UniformDelay,
)
from ...runtime.sim import SimConfig, Simulation
from ...runtime.transport import Envelope
from ..tla_values import Record, TLAFunction, to_tla
from .lease_lock import TraceCheck, check_record_traces, traces_tla
from .storage import AccumulatedStorage

__all__ = [
    "BEHAVIOURS",
    "INVARIANTS",
    "SEALED_FORMATS",
    "AuctioneerFactory",
    "AuctioneerView",
    "DurableAuctioneer",
    "RunParams",
    "TraceBidder",
    "auction_config",
    "check_trace_module",
    "check_traces",
    "project",
    "simulated_run",
    "simulated_trace",
    "trace_config",
    "trace_module",
    "trace_of",
    "write_trace_module",
]

AUCTIONEER: Final = 0
LEDGER: Final = 1
BIDDERS: Final = (2, 3, 4, 5)
STRANGER: Final = 6
AUCTION: Final = "lot-1"
SELLER: Final = "seller"
DEADLINE: Final = 2.0
SEALED_FORMATS: Final = ("first_price", "second_price", "uniform")
INVARIANTS: Final = (
    "OneWinnerPerUnit",
    "WinnerHasBestBid",
    "PriceRule",
    "NoLateBid",
    "LosersReleased",
    "SendsDurable",
    "FollowsSpec",
)
"""What the trace config checks along every trace (the first one a state breaks is named)."""
BEHAVIOURS: Final = (
    "honest", "honest", "honest", "late", "late", "twice", "duplicating", "overbidding",
    "garbage", "silent",
)  # fmt: skip
"""The bidders' behaviours a run draws from (see :class:`TraceBidder`)."""
_UNBOUNDED: Final = 1_000_000
_TLC_INT: Final = 2**31 - 1


def auction_config(fmt: str = "second_price") -> AuctionConfig:
    """The auction of :func:`simulated_run`: four bidders (nodes 2..5, accounts
    ``acct<node>``), reserve 1, deadline 2 s; two units if ``fmt`` is ``"uniform"``.

    Raises:
        ValueError: ``fmt`` is not a sealed format.
    """
    if fmt not in SEALED_FORMATS:
        raise ValueError(f"format must be one of {SEALED_FORMATS}, got {fmt!r}")
    return AuctionConfig(
        auction=AUCTION,
        format=fmt,  # type: ignore[arg-type]
        deadline=DEADLINE,
        bidders=tuple((b, f"acct{b}") for b in BIDDERS),
        seller=SELLER,
        ledger=LEDGER,
        units=2 if fmt == "uniform" else 1,
        reserve=1,
    )


_probability: Final = attrs.validators.and_(attrs.validators.ge(0.0), attrs.validators.le(1.0))


@final
@attrs.frozen
class RunParams:
    """How a simulated run is set up (behaviours, amounts and faults are drawn from the seed).

    Raises:
        ValueError: ``duration`` not > 0, a probability outside ``[0, 1]``, a
            negative ``auctioneer_crashes``.

    Attributes:
        duration: simulated seconds (every fault is undone well before).
        loss: the share of its messages (both ways) a lossy bidder loses.
        bidder_crashes: probability that a bidder crashes (and restarts).
        auctioneer_crashes: crashes of the auctioneer, each followed by a restart.
        duplicate_rate: probability that a message is delivered twice.
        reorder_rate: probability that a message is held back up to 0.4 s.
    """

    duration: float = attrs.field(default=12.0, validator=attrs.validators.gt(0))
    loss: float = attrs.field(default=0.15, validator=_probability)
    bidder_crashes: float = attrs.field(default=0.2, validator=_probability)
    auctioneer_crashes: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    duplicate_rate: float = attrs.field(default=0.15, validator=_probability)
    reorder_rate: float = attrs.field(default=0.2, validator=_probability)


# ---------------------------------------------------------------------- nodes


class Agent:
    """Base of the traced runs' bidders: lossy, possibly duplicated sends; no requests;
    nothing persisted."""

    behaviour: str | None
    loss: float
    rng: random.Random

    def _send(self, msg: Any) -> list[Effect]:
        copies = self.rng.randint(2, 3) if self.behaviour == "duplicating" else 1
        return [Send(AUCTIONEER, msg) for _ in range(copies) if self.rng.random() >= self.loss]

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        return [Reply(request.client, "bidders take no requests", ok=False)]

    def snapshot_persistent(self) -> Any:
        return None

    def restore(self, snapshot: Any) -> None:
        raise RuntimeError("bidders persist nothing")


@final
class TraceBidder(Agent):
    """A bidder of the traced runs (an effects core; persists nothing).

    ``behaviour`` is one of :data:`BEHAVIOURS` (``None``: the stranger, which is
    not registered and bids 1000 now and then): ``honest`` (bids ``value``
    within the window, or now and then another amount in ``0..4``, re-sending
    until answered), ``late`` (bids around the deadline, racing the close),
    ``twice`` (then a second, different amount), ``duplicating`` (every
    message two or three times), ``overbidding`` (above its funds: the ledger
    refuses the hold), ``garbage`` (a junk amount and a bid for another
    auction besides its own), ``silent``. Each message is lost with probability
    ``loss`` on the way out and on the way in.
    """

    def __init__(self, node: int, behaviour: str | None, value: int, loss: float) -> None:
        if behaviour is not None and behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {sorted(set(BEHAVIOURS))}")
        self.node = node
        self.behaviour = behaviour
        self.value = value
        self.loss = loss
        self.rng = random.Random(0)
        self.answered = False
        self.resends = 0
        self.amount: Any = None

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        self.rng = rng  # per incarnation: a restarted bidder draws anew
        b = self.behaviour
        if b == "silent":
            return []
        if b is None:
            return [SetTimer("stranger", self.rng.uniform(0.0, DEADLINE))]
        if b == "late":
            return [SetTimer("bid", max(0.0, DEADLINE - now + self.rng.uniform(-0.2, 0.3)))]
        effects: list[Effect] = [SetTimer("bid", self.rng.uniform(0.0, 0.8 * DEADLINE))]
        if b in ("twice", "garbage"):
            effects.append(SetTimer("other", self.rng.uniform(0.0, 1.1 * DEADLINE)))
        return effects

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        if self.rng.random() < self.loss:
            return []
        if isinstance(msg, BidAccepted | BidRefused | Outcome):
            self.answered = True
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        if name == "stranger":
            effects = self._send(Bid(AUCTION, 1000))
            if now < 2 * DEADLINE:
                effects.append(SetTimer("stranger", self.rng.uniform(0.2, 1.0)))
            return effects
        if name == "other":
            if self.behaviour == "twice":
                return self._send(Bid(AUCTION, max(0, self.value + self.rng.choice((-1, 1, 2)))))
            junk = self.rng.choice((-1, "3", 2.5, True, None))
            return [*self._send(Bid(AUCTION, junk)), *self._send(Bid("lot-0", self.value))]
        if name == "bid" or (name == "resend" and not self.answered and self.resends < 5):
            self.resends += name == "resend"
            if self.amount is None:
                if self.behaviour == "overbidding":
                    self.amount = self.value + self.rng.randint(1, 3)  # funds are the value
                elif self.rng.random() < 0.7:
                    self.amount = self.value
                else:
                    self.amount = self.rng.randint(0, 4)
            return [*self._send(Bid(AUCTION, self.amount)), SetTimer("resend", 0.3)]
        return []


@final
class DurableAuctioneer(AccumulatedStorage):
    """An :class:`Auctioneer` whose storage appends its records: each ``Persist`` of a
    record becomes ``Persist`` of the journal up to it (O(records) per ``Persist``: fine
    for traced runs, not a storage engine), which :meth:`restore` replays.

    Args:
        core: the auctioneer (a fresh one).
    """

    def __init__(self, core: Auctioneer) -> None:
        super().__init__(core, ())

    def fold(self, durable: Any, data: Any) -> Any | None:
        return (*durable, data)


# ---------------------------------------------------------------------- projection


@final
@attrs.frozen
class AuctioneerView:
    """What the trace reads of an :class:`Auctioneer` after a step (public state only).

    Attributes:
        phase: its ``state`` (``"open"``, ``"closing"``, ``"closed"``).
        taken: every bid it took, as ``(bidder, amount)`` (its ``BidTaken`` records).
        winners: its ``winners``, best first.
        prices: its ``prices``, as sorted ``(bidder, price)`` pairs.
    """

    phase: str
    taken: frozenset[tuple[int, int]]
    winners: tuple[int, ...]
    prices: tuple[tuple[int, int], ...]


def project(core: Any) -> AuctioneerView | None:
    """The drivers' projection: an :class:`AuctioneerView` of an auctioneer (bare or in a
    :class:`DurableAuctioneer`), ``None`` for other cores."""
    inner = core.core if isinstance(core, DurableAuctioneer) else core
    if not isinstance(inner, Auctioneer):
        return None
    records = inner.snapshot_persistent()
    return AuctioneerView(
        phase=inner.state,
        taken=frozenset((r.bidder, r.amount) for r in records if isinstance(r, BidTaken)),
        winners=tuple(inner.winners),
        prices=tuple(sorted(inner.prices.items())),
    )


# ---------------------------------------------------------------------- the mapping


def _durable(journal: Sequence[Any]) -> Record:
    """The durable state the ordering duties read, folded from the records persisted so
    far: the bids whose hold is placed, whether the decision is durable, its prices."""
    amounts: dict[int, int] = {}
    held: set[Record] = set()
    decided = False
    prices: frozenset[Record] = frozenset()
    for record in journal:
        if isinstance(record, BidTaken):
            amounts[record.bidder] = record.amount
            if record.amount == 0:
                held.add(Record(b=record.bidder, amt=0))
        elif isinstance(record, HoldAnswered) and record.ok:
            held.add(Record(b=record.bidder, amt=amounts.get(record.bidder, -1)))
        elif isinstance(record, Decided):
            decided = True
            prices = frozenset(Record(b=b, p=p) for b, p in record.prices)
    return Record(held=frozenset(held), decided=decided, prices=prices)


def _in_alphabet(amount: Any) -> bool:
    return isinstance(amount, int) and not isinstance(amount, bool) and 0 <= amount <= _TLC_INT


@attrs.define
class EffectLog:
    """Reads the effects of an auctioneer's transitions for the ordering duties.

    Attributes:
        auction: the auction's id (the prefix of its hold ids).
        journal: the records persisted so far.
        settled: the bidders whose hold the core has sent a settle for.
        released: likewise, a release.
    """

    auction: str
    journal: tuple[Any, ...] = ()
    settled: set[int] = attrs.Factory(set)
    released: set[int] = attrs.Factory(set)

    def bidder_of(self, hold: str) -> int:
        """The bidder of hold ``"<auction>/<bidder>"`` (0 if it is not one)."""
        prefix, _, node = hold.rpartition("/")
        return int(node) if prefix == self.auction and node.isdigit() else 0

    def read(self, t: Transition) -> tuple[Record, ...]:
        """The transition's ``Persist`` effects (each with the durable state after it: a
        record appended to the journal, or the whole journal) and the sends that depend on
        the durable state, in emitted order; records the escrow commands sent."""
        out: list[Record] = []
        for e in t.effects:
            if isinstance(e, Persist):
                data = e.data
                self.journal = (
                    tuple(data) if isinstance(data, tuple | list) else (*self.journal, data)
                )
                out.append(Record(kind="persist", durable=_durable(self.journal)))
            elif isinstance(e, Send) and (sent := self._sent(e)) is not None:
                out.append(Record(kind="send", msg=sent))
        return tuple(out)

    def _sent(self, e: Send) -> Record | None:
        msg = e.msg
        if isinstance(msg, BidAccepted):
            return Record(what="accepted", c=e.to, p=msg.amount)
        if isinstance(msg, Outcome):
            return Record(what="won" if msg.won else "lost", c=e.to, p=msg.price)
        command = msg.command if isinstance(msg, LedgerRequest) else None
        if isinstance(command, Settle):
            self.settled.add(self.bidder_of(command.hold))
            return Record(what="settle", c=self.bidder_of(command.hold), p=command.amount)
        if isinstance(command, Release):
            self.released.add(self.bidder_of(command.hold))
            return Record(what="release", c=self.bidder_of(command.hold), p=0)
        return None


@attrs.define
class _Mapper:
    """The state of :func:`trace_of` along one run."""

    config: AuctionConfig
    unfunded: frozenset[int]
    log: EffectLog
    records: list[Record] = attrs.Factory(list)
    sent: set[tuple[int, int]] = attrs.Factory(set)  # bids the spec's bidders have sent

    @property
    def bidders(self) -> list[int]:
        return [b for b, _ in self.config.bidders]

    def logged(self, view: AuctioneerView) -> Record:
        """The logged state of ``view`` with the escrow commands sent so far."""
        bids = {(b, a) for b, a in view.taken if b not in self.unfunded}
        amounts = dict(view.taken)
        prices = dict(view.prices)
        esc = {b: "none" for b in self.bidders}
        for b, amount in bids:
            esc[b] = self.escrow(b, amount, view.phase == "closed", b in prices)
        awards = frozenset(
            Record(b=w, amt=amounts.get(w, -1), unit=k + 1, price=prices.get(w, -1))
            for k, w in enumerate(view.winners)
        )
        return Record(
            phase="open" if view.phase == "open" else "closed",
            bids=frozenset(Record(b=b, amt=a) for b, a in bids),
            known=view.phase != "closing",
            esc=TLAFunction(esc.items()),
            awards=awards,
        )

    def escrow(self, b: int, amount: int, decided: bool, won: bool) -> str:
        """The escrow of ``b``'s taken bid: its settle or release sent, else held (a bid
        of 0 has no hold: settled or released by the decision itself)."""
        if amount == 0 and decided:
            return "settled" if won else "released"
        if b in self.log.settled:
            return "settled"
        return "released" if b in self.log.released else "held"

    def add(
        self, action: str, msg: Record | str, state: Record, effects: tuple[Record, ...]
    ) -> None:
        self.records.append(Record(action=action, msg=msg, **state, effects=effects))


def _unfunded(transitions: Sequence[Transition], config: AuctionConfig) -> frozenset[int]:
    """The bidders whose hold the ledger refused (its first answer to the hold the
    auctioneer received)."""
    answered: dict[str, bool] = {}
    for t in transitions:
        inp = t.input
        if t.node != AUCTIONEER or not isinstance(inp, Envelope) or inp.src != config.ledger:
            continue
        msg = inp.msg
        if isinstance(msg, LedgerAnswer) and isinstance(msg.command, Hold):
            answered.setdefault(msg.command.hold, isinstance(msg.result, Ok))
    holds = {f"{config.auction}/{b}": b for b, _ in config.bidders}
    return frozenset(holds[h] for h, ok in answered.items() if not ok and h in holds)


def trace_of(transitions: Sequence[Transition], config: AuctionConfig) -> list[Record]:
    """Map a run's transitions to ``AuctionTrace`` records (module doc).

    Args:
        transitions: every transition of a run in the order taken (other nodes'
            are skipped); the auctioneer's (node 0) recorded with :func:`project`.
        config: the auction (a sealed format).

    Returns:
        The records.

    Raises:
        ValueError: an open format, an auctioneer transition recorded without the
            projection, or a first transition that is not its start.
    """
    if config.format not in SEALED_FORMATS:
        raise ValueError(f"trace_of maps the sealed formats {SEALED_FORMATS}, not {config.format}")
    m = _Mapper(config, _unfunded(transitions, config), EffectLog(config.auction))
    view: AuctioneerView | None = None
    for t in transitions:
        if t.node != AUCTIONEER:
            continue
        after = t.state
        if not isinstance(after, AuctioneerView):
            raise ValueError("an auctioneer transition recorded without the projection")
        before, view = view, after
        if before is None:
            if not isinstance(t.input, Start):
                raise ValueError(f"the auctioneer's first transition is not its start: {t.input!r}")
            m.log.read(t)  # the journal so far
            continue
        _map_step(m, t, before, after)
    return m.records


def _map_step(m: _Mapper, t: Transition, before: AuctioneerView, after: AuctioneerView) -> None:
    prior = m.logged(before)
    effects = m.log.read(t)
    state = m.logged(after)
    inp = t.input
    decides = before.phase != "closed" and after.phase == "closed"
    if isinstance(inp, Start):
        m.add("Restart", "none", prior, () if decides else effects)
        if decides:
            m.add("Done", "none", state, effects)
        elif state != prior:
            m.add("Ignored", "none", state, ())
        return
    if before.phase == "open" and after.phase != "open":
        m.add("Close", "none", state, effects)
        return
    if decides:
        m.add("Done", "none", state, effects)
        return
    if (
        isinstance(inp, Envelope)
        and isinstance(inp.msg, Bid)
        and inp.src in m.bidders
        and inp.src not in m.unfunded
        and inp.msg.auction == m.config.auction
        and _in_alphabet(inp.msg.amount)
    ):
        bid = Record(b=inp.src, amt=inp.msg.amount)
        if (inp.src, inp.msg.amount) not in m.sent:
            m.sent.add((inp.src, inp.msg.amount))
            m.add("SendBid", bid, prior, ())
        m.add("Receive", bid, state, effects)
        return
    if state != prior or any(e["kind"] == "send" for e in effects):
        m.add("Ignored", "none", state, effects)


# ---------------------------------------------------------------------- runs

AuctioneerFactory = Callable[[AuctionConfig], Any]
"""Builds the auctioneer core from the auction (tests pass deliberately broken ones)."""


def schedule(rng: random.Random, params: RunParams, agents: list[int]) -> list[FaultEvent]:
    """The fault schedule of a run: duplication, reordering, bidder and auctioneer crashes."""
    events = [
        FaultEvent(0.0, SetDuplicateRate(params.duplicate_rate)),
        FaultEvent(0.0, SetReorderRate(params.reorder_rate, 0.4)),
    ]
    for node in agents:
        if rng.random() < params.bidder_crashes:
            at = rng.uniform(0.0, 1.5 * DEADLINE)
            events += [
                FaultEvent(at, Crash(node)),
                FaultEvent(at + rng.uniform(0.05, 1.0), Restart(node)),
            ]
    at = 0.0
    for _ in range(params.auctioneer_crashes):
        at += rng.uniform(0.0, 1.5 * DEADLINE / max(1, params.auctioneer_crashes))
        down = rng.uniform(0.01, 0.8)
        events += [FaultEvent(at, Crash(AUCTIONEER)), FaultEvent(at + down, Restart(AUCTIONEER))]
        at += down
    return sorted(events, key=lambda e: e.at)


def simulated_run(
    seed: int,
    fmt: str = "second_price",
    params: RunParams = RunParams(),
    auctioneer_factory: AuctioneerFactory = Auctioneer,
) -> tuple[AuctionConfig, list[Transition]]:
    """Run an auctioneer, the ledger, four bidders and a stranger in the simulator.

    Behaviours, amounts, funds and the fault schedule derive from ``seed``: the
    same seed gives the same run.

    Args:
        seed: the run's seed.
        fmt: the sealed format.
        params: the run's length and faults.
        auctioneer_factory: builds the auctioneer core (default: the real
            :class:`Auctioneer`); it runs inside a :class:`DurableAuctioneer`.

    Returns:
        The auction and every transition of every node, in the order taken.
    """
    config = auction_config(fmt)
    rng = random.Random(f"{seed}:auction-trace:{fmt}")
    behaviours = {b: rng.choice(BEHAVIOURS) for b in BIDDERS}
    values = {b: rng.randint(1, 4) for b in BIDDERS}
    loss = {b: params.loss if rng.random() < 0.4 else 0.0 for b in BIDDERS}
    ledger = Ledger()
    for account in [SELLER, *(a for _, a in config.bidders)]:
        ledger.apply(Open(account))
    for b in BIDDERS:
        funds = values[b] if behaviours[b] == "overbidding" else 10
        ledger.apply(Mint("treasury", f"acct{b}", funds))
    transitions: list[Transition] = []

    def factory(i: int, n: int) -> Any:
        if i == AUCTIONEER:
            return DurableAuctioneer(auctioneer_factory(config))
        if i == LEDGER:
            return LedgerNode(ledger)
        if i == STRANGER:
            return TraceBidder(i, None, 1000, 0.0)
        return TraceBidder(i, behaviours[i], values[i], loss[i])

    sim = Simulation(
        factory,
        nodes=STRANGER + 1,
        seed=seed,
        config=SimConfig(delay=UniformDelay(0.001, 0.1)),
        schedule=schedule(rng, params, [*BIDDERS, STRANGER]),
        trace=transitions.append,
        projection=project,
    )
    sim.run(until=params.duration)
    return config, transitions


def simulated_trace(
    seed: int,
    fmt: str = "second_price",
    params: RunParams = RunParams(),
    auctioneer_factory: AuctioneerFactory = Auctioneer,
) -> list[Record]:
    """:func:`trace_of` a :func:`simulated_run`."""
    config, transitions = simulated_run(seed, fmt, params, auctioneer_factory)
    return trace_of(transitions, config)


# ---------------------------------------------------------------------- TLC


def trace_module(traces: Sequence[Sequence[Record]], config: AuctionConfig) -> str:
    """The text of the module ``AuctionTraceData`` holding ``traces`` of ``config``'s auction."""
    amounts = [config.reserve]
    for trace in traces:
        for r in trace:
            msg = r["msg"]
            if isinstance(msg, Record) and isinstance(msg["amt"], int):
                amounts.append(msg["amt"])
    return (
        "---- MODULE AuctionTraceData ----\n"
        "EXTENDS TLC\n"
        "\\* Generated by trio_foundation.verify.traces.auction; do not edit.\n"
        f"TraceBidders == {to_tla(frozenset(b for b, _ in config.bidders))}\n"
        f'TraceFormat == "{config.format}"\n'
        f"TraceUnits == {config.units}\n"
        f"TraceReserve == {config.reserve}\n"
        f"TraceMaxAmount == {max(amounts)}\n"
        f"Traces == <<\n{traces_tla(traces)}\n>>\n"
        "====\n"
    )


def write_trace_module(
    traces: Sequence[Sequence[Record]], config: AuctionConfig, path: Path
) -> None:
    """Write ``traces`` as the module ``AuctionTraceData`` at ``path``."""
    path.write_text(trace_module(traces, config), encoding="utf-8")


def trace_config() -> str:
    """The TLC configuration of ``AuctionTrace`` for traces of :func:`trace_module`."""
    invariants = "".join(f"    {name}\n" for name in INVARIANTS)
    return (
        "SPECIFICATION TraceSpec\n"
        "CONSTANTS\n"
        "    Bidders <- TraceBidders\n"
        "    MaxAmount <- TraceMaxAmount\n"
        "    Reserve <- TraceReserve\n"
        "    Units <- TraceUnits\n"
        "    Format <- TraceFormat\n"
        f"    MaxBids = {_UNBOUNDED}\n"
        f"    MaxRecv = {_UNBOUNDED}\n"
        '    Variant = "correct"\n'
        f"INVARIANTS\n{invariants}"
    )


def check_traces(
    traces: Sequence[Sequence[Record]], config: AuctionConfig, **tlc: Any
) -> TraceCheck:
    """TLC's verdict, in one run, on whether every trace of ``traces`` (of ``config``'s
    auction) is a behaviour of ``Auction`` that keeps its safety invariants.

    A rejected trace is :attr:`TraceCheck.failed_trace`, its record
    :attr:`TraceCheck.failed_step` (1-based) with :attr:`TraceCheck.failed_action`,
    and :attr:`TraceCheck.violated` the first of :data:`INVARIANTS` that record
    breaks (``FollowsSpec``: it breaks no other, but no spec action takes it).

    Args:
        traces: records of :func:`trace_of`.
        config: their auction.
        **tlc: ``specs_dir`` (a ``Path``, required), ``workers`` (default 1) and
            ``timeout`` (seconds, default 300), as :func:`check_trace_module` takes them.

    Raises:
        ValueError: no traces, or an empty one.
        VerificationError: Java or TLC is missing, or TLC could not run the check.
    """
    if not traces or not all(traces):
        raise ValueError("need at least one non-empty trace")
    return check_trace_module(trace_module(traces, config), traces=traces, **tlc)


def check_trace_module(
    module_text: str,
    *,
    specs_dir: Path,
    workers: int = 1,
    timeout: float = 300,
    traces: Sequence[Sequence[Record]] | None = None,
) -> TraceCheck:
    """:func:`check_traces` for the text of an ``AuctionTraceData`` module (one that
    :func:`write_trace_module` saved, perhaps edited by hand); ``traces``, the traces it
    holds if known, count its records and name the failing record's action."""
    return check_record_traces(
        "AuctionTrace", trace_config(), module_text, specs_dir=specs_dir, workers=workers,
        timeout=timeout, traces=traces,
    )  # fmt: skip
