"""Dutch auction trace validation: the real auctioneer → ``specs/AuctionOpenTrace.tla`` → TLC.

:func:`simulated_run` runs the real
:class:`~trio_foundation.protocols.auction.Auctioneer` in the ``"dutch"`` format
(node 0: the clock from 6 down to the reserve 1 by 1 every 0.5 s, one tick at
the reserve, then closed unsold; a hard deadline of 2.2 or 4 s), the real
:class:`~trio_foundation.protocols.auction.LedgerNode` (node 1) and four bidders
(nodes 2..5) in the deterministic simulator, under a fault schedule drawn from
the seed (duplicated and reordered messages, lossy bidders, bidder and
auctioneer crashes and restarts). A bidder accepts a price it heard once it is
at or below its value; some accept a stale price (the one before), a price not
reached yet, accept twice, duplicate every message, or accept above their funds
(the ledger refuses the hold).

:func:`trace_of` maps the auctioneer's transitions to records of
``specs/AuctionOpenTrace.tla``, one per step of ``specs/AuctionOpen.tla``
(``Format = "dutch"``): ``SendBid``/``Receive`` for an accept received (the
first receipt of a bid is preceded by its send), ``HoldAnswer`` for the ledger's
answer to a pending hold, ``ClockTick`` for each tick of the clock (emitted
before each transition up to the tick the auctioneer's local time is in, and
the tick into the floor when the transition closes the auction there),
``DeadlineClose``, ``Decide``, ``Restart`` (the auctioneer restarted while open:
it announces the price again) and ``Ignored`` (a stutter). Each record logs
the phase, the clock's step, the accepts whose hold is pending, those whose hold
was placed (funded), the holds open in the ledger (placed, not yet settled or
released by a command the core sent) and the awards. Effects and
``SendsDurable`` as in :mod:`.auction`.

Abstractions: time is the clock's step (the tick of the auctioneer's local time
since its persisted start; a time within 1e-9 s of a boundary is the boundary,
as in the core); the core's ``PriceClock`` messages are not compared with the
spec's ``announced`` (a clock that is reset or rises shows as an accept taken
or refused at a price the spec's clock does not show); receipts as in
:mod:`.auction`; a bid outside the alphabet (the stranger's, a junk amount)
maps to nothing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, final

import attrs

from ...protocols.auction import (
    AuctionConfig,
    Auctioneer,
    Bid,
    BidTaken,
    Decided,
    HoldAnswered,
    LedgerAnswer,
    LedgerNode,
    OpenStarted,
    PriceClock,
)
from ...protocols.effects import Effect, SetTimer
from ...protocols.ledger import Hold, Ledger, Mint, Ok, Open
from ...runtime.driver import Start, TimerFired, Transition
from ...runtime.faults import (
    UniformDelay,
)
from ...runtime.sim import SimConfig, Simulation
from ...runtime.transport import Envelope
from ..tla_values import Record, to_tla
from .auction import (
    AUCTIONEER,
    BIDDERS,
    LEDGER,
    SELLER,
    Agent,
    DurableAuctioneer,
    EffectLog,
    RunParams,
    schedule,
)
from .lease_lock import TraceCheck, check_record_traces, traces_tla

__all__ = [
    "DUTCH_BEHAVIOURS",
    "OpenView",
    "check_trace_module",
    "check_traces",
    "dutch_config",
    "project",
    "simulated_run",
    "simulated_trace",
    "trace_config",
    "trace_module",
    "trace_of",
    "write_trace_module",
]

AUCTION: Final = "lot-2"
START_PRICE: Final = 6
RESERVE: Final = 1
TICK: Final = 0.5
INVARIANTS: Final = (
    "OneWinner",
    "NoLateBid",
    "DutchPriceRule",
    "FirstAcceptWins",
    "LosersReleased",
    "SendsDurable",
    "FollowsSpec",
)
DUTCH_BEHAVIOURS: Final = (
    "honest", "honest", "honest", "stale", "early", "twice", "duplicating", "overbidding",
)  # fmt: skip
_UNBOUNDED: Final = 1_000_000
_PARAMS: Final = RunParams()
_EPSILON: Final = 1e-9


def dutch_config(deadline: float = 4.0) -> AuctionConfig:
    """The Dutch auction of :func:`simulated_run` (clock 6 → 1 by 1 every 0.5 s)."""
    return AuctionConfig(
        auction=AUCTION,
        format="dutch",
        deadline=deadline,
        bidders=tuple((b, f"acct{b}") for b in BIDDERS),
        seller=SELLER,
        ledger=LEDGER,
        reserve=RESERVE,
        start_price=START_PRICE,
        decrement=1,
        tick=TICK,
    )


@final
class DutchBidder(Agent):
    """A bidder of a Dutch auction (an effects core; persists nothing): accepts the
    price it heard once it is at or below ``value`` (``stale``: the price before it;
    ``early``: one not reached yet; ``twice``: a second accept; ``overbidding``:
    funds below the price), after a short delay."""

    def __init__(self, node: int, behaviour: str, value: int, loss: float) -> None:
        self.node, self.behaviour, self.value, self.loss = node, behaviour, value, loss
        self.rng = random.Random(0)
        self.accepted = 0
        self.heard: list[int] = []

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        self.rng = rng
        if self.behaviour == "early":
            return [SetTimer(f"accept:{self.value}", self.rng.uniform(0.0, 1.0))]
        return []

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        if self.rng.random() < self.loss or not isinstance(msg, PriceClock):
            return []
        self.heard.append(msg.price)
        limit = 2 if self.behaviour == "twice" else 1
        if msg.price <= self.value and self.accepted < limit:
            self.accepted += 1
            price = msg.price
            if self.behaviour == "stale" and len(self.heard) > 1:
                price = self.heard[-2]
            return [SetTimer(f"accept:{price}", self.rng.uniform(0.0, 0.4))]
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        return self._send(Bid(AUCTION, int(name.partition(":")[2])))


@final
@attrs.frozen
class OpenView:
    """What the trace reads of a Dutch :class:`Auctioneer` after a step.

    Attributes:
        phase: its ``state``.
        records: its durable records (:meth:`Auctioneer.snapshot_persistent`).
    """

    phase: str
    records: tuple[Any, ...]


def project(core: Any) -> OpenView | None:
    """The drivers' projection (the auctioneer bare or in a :class:`DurableAuctioneer`)."""
    inner = core.core if isinstance(core, DurableAuctioneer) else core
    if not isinstance(inner, Auctioneer):
        return None
    return OpenView(inner.state, inner.snapshot_persistent())


def _fold(records: Sequence[Any]) -> tuple[dict[int, int], dict[int, int], dict[int, int], float]:
    """Pending and funded accepts (bidder → amount), the prices, the start time."""
    pending: dict[int, int] = {}
    funded: dict[int, int] = {}
    prices: dict[int, int] = {}
    started = 0.0
    for r in records:
        if isinstance(r, OpenStarted):
            started = r.started_at
        elif isinstance(r, BidTaken):
            pending[r.bidder] = r.amount
        elif isinstance(r, HoldAnswered):
            amount = pending.pop(r.bidder, -1)
            if r.ok:
                funded[r.bidder] = amount
        elif isinstance(r, Decided):
            prices = dict(r.prices)
    return pending, funded, prices, started


@attrs.define
class _Mapper:
    config: AuctionConfig
    log: EffectLog
    records: list[Record] = attrs.Factory(list)
    sent: set[tuple[int, int]] = attrs.Factory(set)
    step: int = 0  # the spec's clock step
    phase: str = "open"

    @property
    def floor_step(self) -> int:
        c = self.config
        assert c.start_price is not None
        return -(-(c.start_price - c.reserve) // c.decrement) + 1

    def logged(self, view: OpenView, phase: str | None = None) -> Record:
        pending, funded, prices, _ = _fold(view.records)
        closed = self.log.settled | self.log.released  # holds settled or released
        return Record(
            phase=phase or view.phase,
            step=self.step,
            pending=frozenset(Record(b=b, amt=a) for b, a in pending.items()),
            funded=frozenset(Record(b=b, amt=a) for b, a in funded.items()),
            holds=frozenset(Record(b=b, amt=a) for b, a in funded.items() if b not in closed),
            awards=frozenset(
                Record(b=b, amt=funded.get(b, -1), price=p) for b, p in prices.items()
            ),
        )

    def add(
        self, action: str, msg: Record | str, state: Record, effects: tuple[Record, ...] = ()
    ) -> None:
        self.records.append(Record(action=action, msg=msg, **state, effects=effects))

    def ticks(self, view: OpenView, now: float) -> None:
        """ClockTick records up to the step of local time ``now``, below the floor (the
        tick into the floor is the transition that closes there)."""
        _, _, _, started = _fold(view.records)
        target = max(0, math.floor((now - started) / (self.config.tick or 1.0) + _EPSILON))
        while self.phase == "open" and self.step < min(target, self.floor_step - 1):
            self.step += 1
            self.add("ClockTick", "none", self.logged(view, "open"))


def trace_of(transitions: Sequence[Transition], config: AuctionConfig) -> list[Record]:
    """Map a Dutch run's transitions to ``AuctionOpenTrace`` records (module doc).

    Raises:
        ValueError: not a Dutch auction, a transition without the projection, or a
            first transition that is not the auctioneer's start.
    """
    if config.format != "dutch":
        raise ValueError(f"trace_of maps Dutch auctions, not {config.format}")
    m = _Mapper(config, EffectLog(config.auction))
    view: OpenView | None = None
    for t in transitions:
        if t.node != AUCTIONEER:
            continue
        after = t.state
        if not isinstance(after, OpenView):
            raise ValueError("an auctioneer transition recorded without the projection")
        before, view = view, after
        if before is None:
            if not isinstance(t.input, Start):
                raise ValueError(f"the auctioneer's first transition is not its start: {t.input!r}")
            m.log.read(t)
            continue
        _map_step(m, t, before, after)
    return m.records


def _map_step(m: _Mapper, t: Transition, before: OpenView, after: OpenView) -> None:
    inp = t.input
    m.ticks(before, t.now)
    prior = m.logged(before, m.phase)
    effects = m.log.read(t)
    cur = prior
    steps: list[tuple[str, Record | str, Record]] = []
    if isinstance(inp, Start):
        if after.phase == "open":
            steps.append(("Restart", "none", cur))
    elif isinstance(inp, Envelope) and isinstance(inp.msg, Bid):
        bid, amount = inp.msg, inp.msg.amount
        if (
            inp.src in BIDDERS
            and bid.auction == m.config.auction
            and isinstance(amount, int)
            and not isinstance(amount, bool)
            and 0 <= amount < 2**31
        ):
            msg = Record(b=inp.src, amt=amount)
            if (inp.src, amount) not in m.sent:
                m.sent.add((inp.src, amount))
                m.add("SendBid", msg, prior)
            steps.append(("Receive", msg, cur))
    elif isinstance(inp, Envelope) and isinstance(inp.msg, LedgerAnswer):
        command = inp.msg.command
        pending, _, _, _ = _fold(before.records)
        b = int(command.hold.rpartition("/")[2]) if isinstance(command, Hold) else 0
        if b in pending:
            ok = isinstance(inp.msg.result, Ok)
            x = Record(b=b, amt=pending[b])
            held = cur["holds"] | ({x} if ok and before.phase != "closed" else set())  # type: ignore[operator]
            cur = Record({
                **cur,
                "pending": cur["pending"] - {x},  # type: ignore[operator]
                "funded": cur["funded"] | ({x} if ok else set()),  # type: ignore[operator]
                "holds": held,
            })  # fmt: skip
            steps.append(("HoldAnswer", Record(b=b, amt=pending[b], ok=ok), cur))
    by_clock = isinstance(inp, Start) or (isinstance(inp, TimerFired) and inp.name == "tick")
    if before.phase == "open" and after.phase != "open" and not steps:  # not a decision
        if isinstance(inp, TimerFired) and inp.name == "deadline":
            cur = Record({**cur, "phase": "closing"})
            steps.append(("DeadlineClose", "none", cur))
        elif by_clock:
            while m.step < m.floor_step:
                m.step += 1
                phase = "closing" if m.step >= m.floor_step else "open"
                cur = Record({**cur, "step": m.step, "phase": phase})
                steps.append(("ClockTick", "none", cur))
    if before.phase != "closed" and after.phase == "closed":
        steps.append(("Decide", "none", cur))
    m.phase = after.phase
    state = m.logged(after)
    if not steps:
        if state != prior or any(e["kind"] == "send" for e in effects):
            m.add("Ignored", "none", state, effects)
        return
    for k, (action, message, mid) in enumerate(steps):
        last = k == len(steps) - 1
        m.add(action, message, state if last else mid, effects if last else ())


# ---------------------------------------------------------------------- runs


def simulated_run(
    seed: int, params: RunParams = _PARAMS, auctioneer_factory: Any = Auctioneer
) -> tuple[AuctionConfig, list[Transition]]:
    """Run a Dutch auctioneer, the ledger and four bidders in the simulator (module doc)."""
    rng = random.Random(f"{seed}:dutch-trace")
    config = dutch_config(rng.choice((2.2, 4.0)))
    behaviours = {b: rng.choice(DUTCH_BEHAVIOURS) for b in BIDDERS}
    values = {b: rng.randint(1, 5) for b in BIDDERS}
    loss = {b: params.loss if rng.random() < 0.4 else 0.0 for b in BIDDERS}
    ledger = Ledger()
    for account in [SELLER, *(a for _, a in config.bidders)]:
        ledger.apply(Open(account))
    for b in BIDDERS:
        ledger.apply(Mint("treasury", f"acct{b}", 1 if behaviours[b] == "overbidding" else 10))
    transitions: list[Transition] = []

    def factory(i: int, n: int) -> Any:
        if i == AUCTIONEER:
            return DurableAuctioneer(auctioneer_factory(config))
        if i == LEDGER:
            return LedgerNode(ledger)
        return DutchBidder(i, behaviours[i], values[i], loss[i])

    sim = Simulation(
        factory,
        nodes=max(BIDDERS) + 1,
        seed=seed,
        config=SimConfig(delay=UniformDelay(0.001, 0.1)),
        schedule=schedule(rng, params, list(BIDDERS)),
        trace=transitions.append,
        projection=project,
    )
    sim.run(until=params.duration)
    return config, transitions


def simulated_trace(
    seed: int, params: RunParams = _PARAMS, auctioneer_factory: Any = Auctioneer
) -> list[Record]:
    """:func:`trace_of` a :func:`simulated_run`."""
    config, transitions = simulated_run(seed, params, auctioneer_factory)
    return trace_of(transitions, config)


# ---------------------------------------------------------------------- TLC


def trace_module(traces: Sequence[Sequence[Record]], config: AuctionConfig) -> str:
    """The text of the module ``AuctionOpenTraceData`` holding Dutch ``traces`` of
    ``config``'s clock (its deadline may differ from run to run)."""
    return (
        "---- MODULE AuctionOpenTraceData ----\n"
        "EXTENDS TLC\n"
        "\\* Generated by trio_foundation.verify.traces.auction_open; do not edit.\n"
        f"TraceBidders == {to_tla(frozenset(b for b, _ in config.bidders))}\n"
        f"TraceStart == {config.start_price}\n"
        f"TraceReserve == {config.reserve}\n"
        f"TraceDecrement == {config.decrement}\n"
        f"Traces == <<\n{traces_tla(traces)}\n>>\n"
        "====\n"
    )


def write_trace_module(
    traces: Sequence[Sequence[Record]], config: AuctionConfig, path: Path
) -> None:
    """Write ``traces`` as the module ``AuctionOpenTraceData`` at ``path``."""
    path.write_text(trace_module(traces, config), encoding="utf-8")


def trace_config() -> str:
    """The TLC configuration of ``AuctionOpenTrace`` (Dutch)."""
    invariants = "".join(f"    {name}\n" for name in INVARIANTS)
    return (
        "SPECIFICATION TraceSpec\nCONSTANTS\n    Bidders <- TraceBidders\n"
        '    Format = "dutch"\n    MaxAmount = 0\n    Reserve <- TraceReserve\n'
        "    MinIncrement = 1\n    Quiet = 1\n    Deadline = 1\n    Start <- TraceStart\n"
        f"    Decrement <- TraceDecrement\n    MaxBids = {_UNBOUNDED}\n    MaxRecv = {_UNBOUNDED}\n"
        f'    MaxRestarts = {_UNBOUNDED}\n    Variant = "correct"\nINVARIANTS\n{invariants}'
    )


def check_traces(
    traces: Sequence[Sequence[Record]], config: AuctionConfig, **tlc: Any
) -> TraceCheck:
    """TLC's verdict on Dutch ``traces`` of ``config``'s clock (as :func:`.auction.check_traces`).

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
    """:func:`check_traces` for the text of an ``AuctionOpenTraceData`` module."""
    return check_record_traces(
        "AuctionOpenTrace", trace_config(), module_text, specs_dir=specs_dir, workers=workers,
        timeout=timeout, traces=traces,
    )  # fmt: skip
