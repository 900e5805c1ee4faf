"""Contract-net trace validation: runs of the real manager → ``specs/ContractNetTrace.tla`` → TLC.

:func:`simulated_run` runs the real contract-net
:class:`~trio_foundation.protocols.contract_net.Manager` (node 0) with the real
:class:`~trio_foundation.protocols.auction.LedgerNode` (node 1) and contractors
(nodes 2..) in the deterministic simulator
(:class:`~trio_foundation.runtime.sim.Simulation`, every node a
:class:`~trio_foundation.runtime.driver.NodeDriver`), under a fault schedule drawn
from the seed: duplicated, delayed and reordered messages; contractors that lose
a share of what they send and receive, crash and restart (forgetting
everything), are slow (their result comes after the execution timeout), fail,
stay silent, refuse, propose late, twice or a price outside the budget; and
crashes of the manager, which restarts from its last ``Persist``. The ledger
link is never lossy (the core requires that; ``specs/ContractNet.tla`` takes
settle and release as applied in the step that decides them). Every transition
is recorded through the drivers' trace hook, the manager's with the projection
:func:`project`.

:func:`trace_of` maps the manager's transitions to records of
``specs/ContractNetTrace.tla``, one per step of ``specs/ContractNet.tla``;
:func:`check_traces` writes many runs of one task configuration into one module
``ContractNetTraceData`` and asks TLC, in one run, whether each is a behaviour of
``ContractNet`` that keeps its safety invariants. The same mapping reads the runs
of the chaos harness (``tests/market_chaos.py``, its lying contractors and
strangers included): only the manager's transitions are read.

The mapping
-----------

Contractor ``node`` is the spec's contractor ``node`` (0 is "nobody"). The
trace starts when the ledger grants the escrow hold: the spec's ``Init`` (round
1 open, the hold ``held``); a run whose hold is refused has no trace. A manager
transition becomes:

* a **proposal** received → ``ReceivePropose`` of ``[kind |-> "propose", c, r,
  p]``, preceded by the contractor's ``SendPropose`` the first time that
  message is received. A contractor's send is not the manager's step, and the
  spec lets a contractor send only while the round is open: the record is placed
  at the end of the trace while round ``r`` is open, and otherwise just before
  the record that closed round ``r`` (a late proposal: sent while the round was
  open, received after its evaluation);
* a **result** (``InformDone``/``Failure``) for an award → the contractor's
  ``Report`` (the first time) and ``ReceiveResult`` of ``[kind |-> "done" or
  "failure", c, r, p]``, ``p`` the award's price;
* the **execution timer** that revokes an award → ``Timeout``;
* each **evaluation** of a round → ``Evaluate``: the deadline timer, the last
  invited contractor's answer, or a round announced with nobody to invite (one
  core transition can evaluate, revoke and re-announce several rounds: one
  record each);
* anything else the core consumes (a restart, a ledger answer, a refusal, a
  message outside the spec's alphabet, a message after the task is decided)
  maps to nothing when it leaves the logged state unchanged, and to an
  ``Ignored`` record (the spec stutters) when it changes it: the trace spec then
  rejects the record.

Each record logs, after its step, the manager's phase, round, award (winner and
price), the current round's proposals (contractor and price), the escrow's
state and every payment, read from the core (:func:`project`) and from the
ledger commands it emitted. The last record of a core transition logs the
state the transition left; its earlier records the state after their own step
(a revoked round: the next one open, nobody awarded, no proposals; a proposal
received: the round's proposals as the evaluation that follows found them);
a contractor's step logs the manager's state unchanged. Payments and escrow
change only on a transition's last record: a ``Settle`` is a payment of its
amount to the payee's contractor for the round of the result that triggered
it, a ``Release`` releases the hold, and those a restart re-sends are not new.
The trace spec takes
each record by the spec action it names (keeping every message in flight: a
duplicate is a second delivery); a record that no spec action explains is taken
anyway with its logged state, the observer history updated from it, and the
run is rejected at that record, naming the safety invariant the step broke
(``FollowsSpec`` if none).

The last record of each core transition also logs its ``Persist`` effects and
the sends that commit the manager (an award, a payment notice, a
cancellation, a settle, a release) *in the order the core emitted them*; the
trace spec reads them in that order against the last persisted state and
checks ``SendsDurable`` (persist before send): a core that emits an award
before the ``Persist`` that records it is rejected, although the node driver
executes the ``Persist`` first anyway. A transition that changes nothing
logged but sends such a message (a restart re-sending the award, a repeated
payment notice) is logged as an ``Ignored`` record for its effects.

Abstractions (where the core is finer than the spec)
----------------------------------------------------

* **Scoring.** The spec scores with natural weights and a 0/1 reputation; the
  trace config replaces its ``Score`` by the core's
  :func:`~trio_foundation.protocols.contract_net.score` (price, capability match
  and reputation, float weights), tabulated for every contractor and price in
  ``0..budget`` as integer ranks that keep the floats' order and ties. The tie
  breaks (lower price, earlier receipt, lower id) are the spec's: receipts are
  numbered differently (the spec counts every reception, the core the valid
  ones) but in the same order.
* **The alphabet.** The spec's contractors are the configured ones; each sends
  at most one proposal per round, with an int price in ``0..budget``, and at
  most one result per award. Messages outside that are consumed by the core
  with no change of what is logged and map to nothing: a stranger's, a non-int,
  negative or over-budget price, a second price in a round (the first *received*
  is the spec's), a proposal after the contractor's ``Refuse`` of the round was
  counted (the spec has no ``Refuse``: a refusal is one way of sending nothing),
  a proposal for a round not yet announced, a result for a round the sender
  was not awarded, a second kind of result for one award.
* **Proposals of a failed task.** The spec's last revocation empties the
  round's proposals; the core keeps them in :attr:`Manager.proposals` once the
  task has failed (nothing reads them any more). A failed manager's proposals
  are logged as none.
* **Refusals and early evaluation.** The core evaluates as soon as every
  invited contractor has answered; the spec evaluates at any moment of an open
  round, which covers it.
* **Not in the spec**: the escrow phase (before ``Init``), ledger answers (the
  ledger link is reliable), the manager's messages to contractors (awards,
  rejections, cancellations, payment notices) and timers (the spec's evaluation
  and timeout happen at any moment).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias, final

import attrs

from ...protocols.auction import LedgerNode, LedgerRequest
from ...protocols.contract_net import (
    AcceptProposal,
    CallForProposals,
    Cancel,
    ContractorInfo,
    Failure,
    InformDone,
    Manager,
    Paid,
    Propose,
    Refuse,
    RejectProposal,
    TaskConfig,
    Weights,
    score,
)
from ...protocols.effects import ClientRequest, Effect, Persist, Reply, Send, SetTimer
from ...protocols.ledger import Hold, Ledger, Mint, Ok, Open, Release, Settle
from ...runtime.driver import Start, TimerFired, Transition
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

__all__ = [
    "BEHAVIOURS",
    "INVARIANTS",
    "ManagerFactory",
    "ManagerView",
    "RunParams",
    "TraceContractor",
    "check_trace_module",
    "check_traces",
    "project",
    "score_ranks",
    "simulated_run",
    "simulated_trace",
    "task_config",
    "trace_config",
    "trace_module",
    "trace_of",
    "write_trace_module",
]

MANAGER: Final = 0
LEDGER: Final = 1
TASK: Final = "task-1"
BUYER: Final = "buyer"
INVARIANTS: Final = (
    "AtMostOnePaid",
    "PaidOnlyForLiveAward",
    "AwardedToValidProposal",
    "NoProposalAfterDeadline",
    "EscrowReleasedOnFailure",
    "SendsDurable",
    "FollowsSpec",
)
"""What the trace config checks along every trace (the first one a state breaks is named)."""
BEHAVIOURS: Final = (
    "honest", "honest", "honest", "slow", "failing", "silent", "late", "duplicating",
    "refusing", "twice", "over-budget", "stale", "stale",
)  # fmt: skip
"""The contractors' behaviours a run draws from (see :class:`TraceContractor`)."""
_UNBOUNDED: Final = 1_000_000


def task_config(max_rounds: int = 3) -> TaskConfig:
    """The task of :func:`simulated_run`: five contractors (nodes 2..6), four qualified
    (they have ``"code"``), two of those with the preferred ``"test"``, reputations
    apart; budget 10; deadline 2 s; execution timeout 1.5 s."""
    contractors = (
        ContractorInfo(2, "acct2", {"code", "test"}, 0.9),
        ContractorInfo(3, "acct3", {"code"}, 0.4),
        ContractorInfo(4, "acct4", {"code", "test"}, 0.2),
        ContractorInfo(5, "acct5", {"test"}, 1.0),
        ContractorInfo(6, "acct6", {"code"}, 0.7),
    )
    return TaskConfig(
        task=TASK,
        buyer=BUYER,
        budget=10,
        ledger=LEDGER,
        contractors=contractors,
        deadline=2.0,
        execution_timeout=1.5,
        required=frozenset({"code"}),
        preferred=frozenset({"test"}),
        max_rounds=max_rounds,
        weights=Weights(),
    )


@final
@attrs.frozen
class RunParams:
    """How a simulated run is set up (behaviours, prices and faults are drawn from the seed).

    Attributes:
        duration: simulated seconds (every fault is undone well before).
        max_rounds: the task's ``max_rounds``.
        loss: the share of its messages (both ways) a lossy contractor loses.
        contractor_crashes: probability that a contractor crashes (and restarts).
        manager_crashes: crashes of the manager, each followed by a restart.
        duplicate_rate: probability that a message is delivered twice.
        reorder_rate: probability that a message is held back up to 0.4 s.
    """

    duration: float = 30.0
    max_rounds: int = 3
    loss: float = 0.15
    contractor_crashes: float = 0.2
    manager_crashes: int = 2
    duplicate_rate: float = 0.1
    reorder_rate: float = 0.2

    def __attrs_post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0, got {self.duration!r}")
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, got {self.max_rounds!r}")
        if self.manager_crashes < 0:
            raise ValueError(f"manager_crashes must be >= 0, got {self.manager_crashes!r}")
        for name in ("loss", "contractor_crashes", "duplicate_rate", "reorder_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")


# ---------------------------------------------------------------------- contractors


@final
class TraceContractor:
    """A contractor of the traced runs (an effects core; persists nothing).

    ``behaviour`` is one of :data:`BEHAVIOURS`: ``honest`` (proposes ``price``
    within the window, re-sends until answered, works for 0.1 to 0.8 execution
    timeouts, re-sends its result until ``Paid`` or ``Cancel``), ``slow`` (works
    1.2 to 2.5 execution timeouts, then reports once anyway), ``failing``
    (reports a failure), ``silent``, ``late`` (proposes around the deadline),
    ``duplicating`` (every message two or three times), ``refusing``, ``twice``
    (a second, different price), ``over-budget``, ``stale`` (invited to round
    ``r > 1``, it proposes for round ``r - 1`` too, as a contractor restarted
    from an old state would). Each message is lost with
    probability ``loss`` on the way out and on the way in.
    """

    def __init__(self, node: int, behaviour: str, price: int, loss: float, timeout: float) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; known: {sorted(set(BEHAVIOURS))}")
        self.node = node
        self.behaviour = behaviour
        self.price = price
        self.loss = loss
        self.timeout = timeout
        self.rng = random.Random(0)
        self.proposed: set[int] = set()
        self.heard: set[int] = set()
        self.closed: set[int] = set()
        self.sent: dict[str, int] = {}

    def _send(self, msg: Any) -> list[Effect]:
        copies = self.rng.randint(2, 3) if self.behaviour == "duplicating" else 1
        return [Send(MANAGER, msg) for _ in range(copies) if self.rng.random() >= self.loss]

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        self.rng = rng  # per incarnation
        return []

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        if self.rng.random() < self.loss:
            return []
        if isinstance(msg, CallForProposals) and msg.round not in self.proposed:
            self.proposed.add(msg.round)
            if self.behaviour == "silent":
                return []
            if self.behaviour == "refusing":
                return self._send(Refuse(msg.task, msg.round, "busy"))
            stale: list[Effect] = []
            if self.behaviour == "stale" and msg.round > 1:
                stale = self._send(Propose(TASK, msg.round - 1, self.price))
            if self.behaviour == "late":
                delay = max(0.0, msg.window + self.rng.uniform(-0.2, 0.3))
            else:
                delay = self.rng.uniform(0.0, 0.8 * msg.window)
            return [*stale, SetTimer(f"propose:{msg.round}", delay)]
        if isinstance(msg, RejectProposal):
            self.heard.add(msg.round)
        elif isinstance(msg, AcceptProposal) and f"work:{msg.round}" not in self.sent:
            self.heard.add(msg.round)
            self.sent[f"work:{msg.round}"] = 0
            slow = self.behaviour == "slow"
            factor = self.rng.uniform(1.2, 2.5) if slow else self.rng.uniform(0.1, 0.8)
            return [SetTimer(f"work:{msg.round}", factor * self.timeout)]
        elif isinstance(msg, Paid | Cancel):
            self.closed.add(msg.round)
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        kind, _, arg = name.partition(":")
        round_ = int(arg)
        count = self.sent.get(name, 0)
        self.sent[name] = count + 1
        if kind == "propose":
            price: Any = self.price
            if self.behaviour == "over-budget":
                price = 11 + self.rng.randint(0, 3)
            effects = self._send(Propose(TASK, round_, price))
            if self.behaviour == "twice" and count == 0:
                effects += self._send(Propose(TASK, round_, max(0, self.price - 1)))
            if round_ not in self.heard and count < 4:
                effects.append(SetTimer(name, 0.3))
            return effects
        if round_ in self.closed and not (kind == "work" and self.behaviour == "slow"):
            return []
        result: Any = InformDone(TASK, round_, f"done by {self.node}")
        if self.behaviour == "failing":
            result = Failure(TASK, round_, "broken tool")
        effects = self._send(result)
        if count < 5 and self.behaviour != "slow":
            effects.append(SetTimer(f"report:{round_}", 0.3))
        return effects

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        return [Reply(request.client, "contractors take no requests", ok=False)]

    def snapshot_persistent(self) -> Any:
        return None

    def restore(self, snapshot: Any) -> None:
        raise RuntimeError("contractors persist nothing")


# ---------------------------------------------------------------------- projection


@final
@attrs.frozen
class ManagerView:
    """What the trace reads of a :class:`Manager` after a step (its public state).

    Attributes:
        phase: its ``state``.
        round: its ``round``.
        winner: its ``winner`` (0 for ``None``).
        price: its ``price``.
        props: the current round's proposals as ``(node, price)`` pairs.
    """

    phase: str
    round: int
    winner: int
    price: int
    props: frozenset[tuple[int, int]]


def project(core: Any) -> ManagerView | None:
    """The drivers' projection: a :class:`ManagerView` of a manager, ``None`` for other cores."""
    if not isinstance(core, Manager):
        return None
    return ManagerView(
        phase=core.state,
        round=core.round,
        winner=0 if core.winner is None else core.winner,
        price=core.price,
        props=frozenset((p.node, p.price) for p in core.proposals.values()),
    )


# ---------------------------------------------------------------------- the mapping


def _msg(kind: str, c: int, r: int, p: int) -> Record:
    return Record(kind=kind, c=c, r=r, p=p)


_INIT: Final = Record(
    phase="cfp", round=1, winner=0, price=0, props=frozenset(), esc="held", paid=frozenset()
)
"""The logged state of the spec's ``Init``."""
_STATE_FIELDS: Final = tuple(_INIT)

Step: TypeAlias = tuple[str, Record | str, ManagerView]
"""A spec step of a core transition: its action, message and the view after it."""


@attrs.define
class _Mapper:
    """The state of :func:`trace_of` along one run."""

    config: TaskConfig
    records: list[Record] = attrs.Factory(list)
    view: ManagerView | None = None
    started: bool = False
    esc: str = "held"
    paid: set[Record] = attrs.Factory(set)
    sent: set[tuple[int, int, int]] = attrs.Factory(set)  # proposals the spec has sent
    first_price: dict[tuple[int, int], int] = attrs.Factory(dict)
    first_kind: dict[tuple[int, int], str] = attrs.Factory(dict)
    refused: set[tuple[int, int]] = attrs.Factory(set)
    reported: set[tuple[int, int]] = attrs.Factory(set)
    awards: dict[int, tuple[int, int]] = attrs.Factory(dict)  # round -> (node, price)
    closed_at: dict[int, int] = attrs.Factory(dict)  # round -> index of the record closing it

    def logged(self, view: ManagerView) -> Record:
        """The logged state of ``view`` with the escrow and payments so far."""
        return Record(
            phase=view.phase,
            round=view.round,
            winner=view.winner,
            price=view.price,
            props=frozenset(
                Record(c=c, p=p) for c, p in (() if view.phase == "failed" else view.props)
            ),
            esc=self.esc,
            paid=frozenset(self.paid),
        )

    def state_at(self, index: int) -> Record:
        """The logged state before record ``index`` (the spec's, if the trace is followed)."""
        if index == 0:
            return _INIT
        return Record({f: self.records[index - 1][f] for f in _STATE_FIELDS})

    def contractor_step(self, action: str, msg: Record, index: int | None = None) -> None:
        """A contractor's step (the manager's state unchanged) at ``index`` (default: now)."""
        at = len(self.records) if index is None else index
        rec = Record(action=action, msg=msg, **self.state_at(at), effects=())
        self.records.insert(at, rec)
        for r, closing in self.closed_at.items():
            if closing >= at:
                self.closed_at[r] = closing + 1

    def payee(self, account: str) -> int:
        return next((c.node for c in self.config.contractors if c.account == account), 0)

    def qualified(self, c: int) -> bool:
        info = next((i for i in self.config.contractors if i.node == c), None)
        return info is not None and self.config.required <= info.capabilities

    def excluded(self, c: int, before: ManagerView) -> bool:
        """Whether ``c``'s award of an earlier (so revoked) round excludes it."""
        return any(n == c and r < before.round for r, (n, _) in self.awards.items())

    def price_ok(self, p: Any) -> bool:
        return isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= self.config.budget


def _durable(data: Any) -> Record:
    """The part of a :class:`Manager` persist snapshot the ordering duties read."""
    phase, round_, winner, price = data[:4]
    return Record(phase=phase, round=round_, winner=0 if winner is None else winner, price=price)


def _effects(m: _Mapper, t: Transition) -> tuple[Record, ...]:
    """The transition's ``Persist`` effects and the sends that commit the manager (an
    award, a payment notice, a cancellation, a settle or a release), in emitted order."""
    out: list[Record] = []
    for e in t.effects:
        if isinstance(e, Persist):
            out.append(Record(kind="persist", durable=_durable(e.data)))
            continue
        if not isinstance(e, Send):
            continue
        msg, sent = e.msg, None
        if isinstance(msg, AcceptProposal):
            sent = Record(what="award", c=e.to, r=msg.round, p=msg.price)
        elif isinstance(msg, Paid):
            sent = Record(what="paid", c=e.to, r=msg.round, p=msg.price)
        elif isinstance(msg, Cancel):
            sent = Record(what="cancel", c=e.to, r=msg.round, p=0)
        elif isinstance(msg, LedgerRequest) and isinstance(msg.command, Settle):
            command = msg.command
            sent = Record(what="settle", c=m.payee(command.payee), r=0, p=command.amount)
        elif isinstance(msg, LedgerRequest) and isinstance(msg.command, Release):
            sent = Record(what="release", c=0, r=0, p=0)
        if sent is not None:
            out.append(Record(kind="send", msg=sent))
    return tuple(out)


def _ledger_commands(t: Transition) -> list[Any]:
    return [
        e.msg.command
        for e in t.effects
        if isinstance(e, Send) and e.to != MANAGER and isinstance(e.msg, LedgerRequest)
    ]


def trace_of(transitions: Sequence[Transition], config: TaskConfig) -> list[Record]:
    """Map a run's transitions to ``ContractNetTrace`` records (module doc).

    Args:
        transitions: every transition of a run in the order taken (other nodes'
            are skipped); the manager's (node 0) recorded with :func:`project`.
        config: the manager's task.

    Returns:
        The records; empty if the escrow hold was never granted (the spec's
        ``Init`` was not reached).

    Raises:
        ValueError: a manager transition recorded without the projection, or a
            first transition that is not its start.
    """
    m = _Mapper(config)
    for t in transitions:
        if t.node != MANAGER:
            continue
        after = t.state
        if not isinstance(after, ManagerView):
            raise ValueError("a manager transition recorded without the projection")
        before, m.view = m.view, after
        if before is None:
            if not isinstance(t.input, Start):
                raise ValueError(f"the manager's first transition is not its start: {t.input!r}")
            continue
        if not m.started:
            m.started = _started(m, t, after)
            continue
        _map_step(m, t, before, after)
    return m.records


def _started(m: _Mapper, t: Transition, after: ManagerView) -> bool:
    """Whether ``t`` granted the hold (the spec's Init); then its evaluations are mapped."""
    inp = t.input
    if not (
        isinstance(inp, Envelope)
        and inp.src == LEDGER
        and isinstance(getattr(inp.msg, "command", None), Hold)
        and isinstance(getattr(inp.msg, "result", None), Ok)
        and after.phase != "escrowing"
    ):
        return False
    init = ManagerView("cfp", 1, 0, 0, frozenset())
    _emit(m, t, _evaluations(m, init, after), init, after)
    return True


def _revoked(m: _Mapper, before: ManagerView) -> ManagerView:
    """The spec state after the round of ``before`` is revoked."""
    if before.round < m.config.max_rounds:
        return ManagerView("cfp", before.round + 1, 0, 0, frozenset())
    return ManagerView("failed", before.round, 0, 0, frozenset())


def _evaluations(m: _Mapper, s: ManagerView, after: ManagerView) -> list[Step]:
    """The Evaluate steps that lead from the open round of ``s`` to ``after``: each
    revokes a round without a valid proposal, the last may award or fail the task."""
    if s.phase != "cfp" or after.phase not in ("cfp", "awarded", "failed"):
        return []
    n = after.round - s.round + (after.phase in ("awarded", "failed"))
    steps: list[Step] = []
    for k in range(n):
        s = after if k == n - 1 else _revoked(m, s)
        steps.append(("Evaluate", "none", s))
    return steps


def _emit(
    m: _Mapper, t: Transition, steps: list[Step], before: ManagerView, after: ManagerView
) -> None:
    """Append the records of one manager transition.

    Each record logs the state after its step; the last one the state after the
    transition (with the transition's effects), the others that of their step with
    the escrow and payments as before the transition (only a last step changes them).
    """
    intermediate = [m.logged(view) for _, _, view in steps[:-1]]
    commands = [] if isinstance(t.input, Start) else _ledger_commands(t)
    result_round = after.round
    if isinstance(t.input, Envelope) and isinstance(t.input.msg, InformDone):
        result_round = t.input.msg.round  # the payment is for the result's round
    for command in commands:
        if isinstance(command, Settle):
            m.paid.add(Record(c=m.payee(command.payee), r=result_round, amt=command.amount))
            m.esc = "settled"
        elif isinstance(command, Release):
            m.esc = "released"
    effects = _effects(m, t)
    final = m.logged(after)
    if not steps:
        if after != before or commands or any(e["kind"] == "send" for e in effects):
            m.records.append(Record(action="Ignored", msg="none", **final, effects=effects))
        return
    states = [*intermediate, final]
    for k, (action, msg, _) in enumerate(steps):
        last = k == len(steps) - 1
        m.records.append(
            Record(action=action, msg=msg, **states[k], effects=effects if last else ())
        )
    # each Evaluate closes the round it evaluates (a proposal sent in that round and
    # received later is placed before its record)
    first = len(m.records) - len(steps)
    for k, (action, _, view) in enumerate(steps):
        if action == "Evaluate":
            closed = view.round if view.phase in ("awarded", "failed") else view.round - 1
            m.closed_at.setdefault(closed, first + k)
    if after.phase == "awarded":
        m.awards[after.round] = (after.winner, after.price)


def _map_step(m: _Mapper, t: Transition, before: ManagerView, after: ManagerView) -> None:
    inp = t.input
    decided = before.phase in ("done", "failed")
    if isinstance(inp, TimerFired) and not decided:
        if inp.name == "execution" and before.phase == "awarded" and after != before:
            s = _revoked(m, before)
            _emit(m, t, [("Timeout", "none", s), *_evaluations(m, s, after)], before, after)
        elif inp.name == "deadline" and before.phase == "cfp":
            _emit(m, t, _evaluations(m, before, after), before, after)
        else:
            _emit(m, t, [], before, after)
        return
    contractors = {c.node for c in m.config.contractors}
    if (
        not isinstance(inp, Envelope)
        or decided
        or inp.src not in contractors
        or getattr(inp.msg, "task", None) != m.config.task
    ):
        _emit(m, t, [], before, after)
        return
    src, msg = inp.src, inp.msg
    if isinstance(msg, Propose):
        _on_propose(m, t, src, msg, before, after)
    elif isinstance(msg, Refuse):
        if (
            before.phase == "cfp"
            and msg.round == before.round
            and m.qualified(src)
            and not m.excluded(src, before)
            and all(c != src for c, _ in before.props)
        ):
            m.refused.add((src, msg.round))  # its one answer of the round
        _emit(m, t, _evaluations(m, before, after), before, after)
    elif isinstance(msg, InformDone | Failure):
        _on_result(m, t, src, msg, before, after)
    else:
        _emit(m, t, [], before, after)


def _on_propose(
    m: _Mapper, t: Transition, src: int, msg: Propose, before: ManagerView, after: ManagerView
) -> None:
    key = (src, msg.round)
    p = msg.price
    in_alphabet = (
        m.price_ok(p)
        and 1 <= msg.round <= before.round
        and key not in m.refused
        and m.first_price.setdefault(key, p) == p
    )
    if not in_alphabet:
        _emit(m, t, [], before, after)
        return
    message = _msg("propose", src, msg.round, p)
    if (src, msg.round, p) not in m.sent:
        m.sent.add((src, msg.round, p))
        m.contractor_step("SendPropose", message, m.closed_at.get(msg.round))
    if before.phase != "cfp":
        _emit(m, t, [("ReceivePropose", message, after)], before, after)
        return
    # the proposals between the receipt and an evaluation in the same transition: the
    # core keeps them after an award, and a revoked round had none
    props = after.props if after.round == before.round else before.props
    received = ManagerView("cfp", before.round, 0, 0, props)
    steps = [("ReceivePropose", message, received), *_evaluations(m, received, after)]
    _emit(m, t, steps, before, after)


def _on_result(
    m: _Mapper,
    t: Transition,
    src: int,
    msg: InformDone | Failure,
    before: ManagerView,
    after: ManagerView,
) -> None:
    kind = "done" if isinstance(msg, InformDone) else "failure"
    key = (src, msg.round)
    award = m.awards.get(msg.round)
    if award is None or award[0] != src or m.first_kind.setdefault(key, kind) != kind:
        _emit(m, t, [], before, after)
        return
    message = _msg(kind, src, msg.round, award[1])
    if key not in m.reported:
        m.reported.add(key)
        m.contractor_step("Report", message)
    current = before.phase == "awarded" and msg.round == before.round and src == before.winner
    if kind == "failure" and current:
        s = _revoked(m, before)
        _emit(m, t, [("ReceiveResult", message, s), *_evaluations(m, s, after)], before, after)
    else:
        _emit(m, t, [("ReceiveResult", message, after)], before, after)


# ---------------------------------------------------------------------- runs

ManagerFactory = Callable[[TaskConfig], Any]
"""Builds the manager core from the task (tests pass deliberately broken managers)."""


def _schedule(rng: random.Random, params: RunParams, agents: list[int]) -> list[FaultEvent]:
    events = [
        FaultEvent(0.0, SetDuplicateRate(params.duplicate_rate)),
        FaultEvent(0.0, SetReorderRate(params.reorder_rate, 0.4)),
    ]
    horizon = min(params.duration / 2, 12.0)
    for node in agents:
        if rng.random() < params.contractor_crashes:
            at = rng.uniform(0.0, horizon)
            back = at + rng.uniform(0.05, 2.0)
            events += [FaultEvent(at, Crash(node)), FaultEvent(back, Restart(node))]
    at = 0.0
    for _ in range(params.manager_crashes):
        at += rng.uniform(0.0, horizon / max(1, params.manager_crashes))
        down = rng.uniform(0.01, 1.0)
        events += [FaultEvent(at, Crash(MANAGER)), FaultEvent(at + down, Restart(MANAGER))]
        at += down
    return sorted(events, key=lambda e: e.at)


def simulated_run(
    seed: int,
    params: RunParams = RunParams(),
    manager_factory: ManagerFactory = Manager,
) -> tuple[TaskConfig, list[Transition]]:
    """Run a manager, the ledger and five contractors in the simulator.

    Behaviours, prices and the fault schedule derive from ``seed``: the same
    seed gives the same run.

    Args:
        seed: the run's seed.
        params: the run's length and faults.
        manager_factory: builds the manager core (default: the real :class:`Manager`).

    Returns:
        The task and every transition of every node, in the order taken.
    """
    config = task_config(params.max_rounds)
    rng = random.Random(f"{seed}:contract-net-trace")
    nodes = [c.node for c in config.contractors]
    behaviours = {n: rng.choice(BEHAVIOURS) for n in nodes}
    prices = {n: rng.randint(0, config.budget) for n in nodes}
    loss = {n: params.loss if rng.random() < 0.5 else 0.0 for n in nodes}
    ledger = Ledger()
    for account in [BUYER, *(c.account for c in config.contractors)]:
        ledger.apply(Open(account))
    ledger.apply(Mint("treasury", BUYER, 3 * config.budget))
    transitions: list[Transition] = []

    def factory(i: int, n: int) -> Any:
        if i == MANAGER:
            return manager_factory(config)
        if i == LEDGER:
            return LedgerNode(ledger)
        timeout = config.execution_timeout
        return TraceContractor(i, behaviours[i], prices[i], loss[i], timeout)

    sim = Simulation(
        factory,
        nodes=2 + len(nodes),
        seed=seed,
        config=SimConfig(delay=UniformDelay(0.001, 0.1)),
        schedule=_schedule(rng, params, nodes),
        trace=transitions.append,
        projection=project,
    )
    sim.run(until=params.duration)
    return config, transitions


def simulated_trace(
    seed: int, params: RunParams = RunParams(), manager_factory: ManagerFactory = Manager
) -> list[Record]:
    """:func:`trace_of` a :func:`simulated_run`."""
    config, transitions = simulated_run(seed, params, manager_factory)
    return trace_of(transitions, config)


# ---------------------------------------------------------------------- TLC


def score_ranks(config: TaskConfig) -> dict[int, dict[int, int]]:
    """Per contractor and price in ``0..budget``, the rank of its :func:`score` among
    all of them (0 the lowest; equal scores, equal ranks)."""
    floats = {
        c.node: {
            p: score(
                p, config.budget, c.capabilities, config.preferred, c.reputation, config.weights
            )
            for p in range(config.budget + 1)
        }
        for c in config.contractors
    }
    order = {
        s: k for k, s in enumerate(sorted({s for row in floats.values() for s in row.values()}))
    }
    return {c: {p: order[s] for p, s in row.items()} for c, row in floats.items()}


def trace_module(traces: Sequence[Sequence[Record]], config: TaskConfig) -> str:
    """The text of the module ``ContractNetTraceData`` holding ``traces`` of ``config``'s task."""
    body = traces_tla(traces)
    ranks = score_ranks(config)
    scores = TLAFunction((c, TLAFunction(row.items())) for c, row in ranks.items())
    qualified = frozenset(c.node for c in config.contractors if config.required <= c.capabilities)
    return (
        "---- MODULE ContractNetTraceData ----\n"
        "EXTENDS TLC\n"
        "\\* Generated by trio_foundation.verify.traces.contract_net; do not edit.\n"
        f"TraceContractors == {to_tla(frozenset(ranks))}\n"
        f"TraceQualified == {to_tla(qualified)}\n"
        f"TraceBudget == {config.budget}\n"
        f"TraceMaxRounds == {config.max_rounds}\n"
        f"TraceScores == {to_tla(scores)}\n"
        f"Traces == <<\n{body}\n>>\n"
        "====\n"
    )


def write_trace_module(traces: Sequence[Sequence[Record]], config: TaskConfig, path: Path) -> None:
    """Write ``traces`` as the module ``ContractNetTraceData`` at ``path``."""
    path.write_text(trace_module(traces, config), encoding="utf-8")


def trace_config() -> str:
    """The TLC configuration of ``ContractNetTrace`` for traces of :func:`trace_module`."""
    invariants = "".join(f"    {name}\n" for name in INVARIANTS)
    return (
        "SPECIFICATION TraceSpec\n"
        "CONSTANTS\n"
        "    Contractors <- TraceContractors\n"
        "    Qualified <- TraceQualified\n"
        "    Reputable = {}\n"
        "    Prices <- TracePrices\n"
        "    Budget <- TraceBudget\n"
        "    WPrice = 1\n"
        "    WRep = 1\n"
        "    MaxRounds <- TraceMaxRounds\n"
        f"    MaxRecv = {_UNBOUNDED}\n"
        '    Variant = "correct"\n'
        "    Score <- TraceScore\n"
        f"INVARIANTS\n{invariants}"
    )


def check_traces(
    traces: Sequence[Sequence[Record]],
    config: TaskConfig,
    *,
    specs_dir: Path,
    workers: int = 1,
    timeout: float = 300,
) -> TraceCheck:
    """Ask TLC, in one run, whether each trace (of ``config``'s task) is a behaviour of
    ``ContractNet``.

    A record the spec cannot take is taken with its logged state and the trace
    rejected there, naming the first safety invariant of :data:`INVARIANTS` the
    step breaks (``FollowsSpec``: none but that one):
    :attr:`TraceCheck.violated`, :attr:`TraceCheck.failed_trace`,
    :attr:`TraceCheck.failed_step` (the 1-based record) and
    :attr:`TraceCheck.failed_action`.

    Raises:
        ValueError: no traces, or an empty one.
        VerificationError: Java or TLC is missing, or TLC could not run the check.
    """
    if not traces or any(not t for t in traces):
        raise ValueError("need at least one non-empty trace")
    return check_trace_module(
        trace_module(traces, config),
        specs_dir=specs_dir,
        workers=workers,
        timeout=timeout,
        traces=traces,
    )


def check_trace_module(
    module_text: str,
    *,
    specs_dir: Path,
    workers: int = 1,
    timeout: float = 300,
    traces: Sequence[Sequence[Record]] | None = None,
) -> TraceCheck:
    """Like :func:`check_traces`, for the text of a ``ContractNetTraceData`` module (e.g.
    one written by :func:`write_trace_module` and edited by hand).

    ``traces``, when given, are the traces the module holds; they let the verdict
    name the record's action and count records.
    """

    return check_record_traces(
        "ContractNetTrace",
        trace_config(),
        module_text,
        specs_dir=specs_dir,
        workers=workers,
        timeout=timeout,
        traces=traces,
    )
