"""Sans-IO FIPA contract-net: a manager allocates one task to one contractor.

Theory of operation (``specs/ContractNet.tla`` is the model-checked version)
----------------------------------------------------------------------------

The interaction protocol is FIPA's Contract Net (FIPA SC00029H, after Smith
1980). A :class:`Manager` core allocates one task:

1. **Escrow.** It first puts the task's whole ``budget`` in one ledger hold
   named ``task`` (a :class:`~trio_foundation.protocols.auction.LedgerRequest`
   to the ledger node). A refused hold fails the task (``"insufficient_funds"``)
   before anything is announced.
2. **Call for proposals.** It sends :class:`CallForProposals` (round 1) to every
   configured contractor that has the task's ``required`` capabilities, and arms
   the timer ``"deadline"``: ``deadline`` seconds of the *manager's* clock (a
   call without a deadline is refused at configuration). Contractors answer
   :class:`Propose` (a price in credits) or :class:`Refuse`.
3. **Evaluation** when the deadline fires, or as soon as every invited
   contractor has answered. The valid proposals of the round are scored by
   :func:`score` (price, capability match, reputation; weights in
   :class:`Weights`) and ranked by :func:`rank`: higher score, then lower
   price, then earlier receipt, then lower node id. The best one gets
   :class:`AcceptProposal`, every other proposer :class:`RejectProposal`
   (``"not_selected"``), and the timer ``"execution"`` is armed.
4. **Execution.** The awarded contractor answers :class:`InformDone` (the hold
   is settled: the price to the contractor, the rest of the budget back to the
   buyer; the contractor gets :class:`Paid`) or :class:`Failure`.
5. **Re-announcement.** A :class:`Failure`, an expired ``"execution"`` timer
   (the contractor crashed, is slow, or its messages were lost) or a round
   with no valid proposal *revokes* the round: the award (if any) gets
   :class:`Cancel`, and the task is announced again as round ``r + 1``, at
   most ``max_rounds`` rounds in all. After the last one the task fails and
   the hold is released to the buyer. A contractor whose award was revoked
   is not invited again for this task (its proposals are refused
   ``"revoked"``): a crashed or failing contractor does not win the next
   round with the same low price.

**Never two contractors paid.** There is one hold per task, whatever the
round, and the ledger closes a hold exactly once; besides, the manager settles
only for the *current* round's award: an :class:`InformDone` of a revoked round
(a contractor that was only slow) is answered :class:`Cancel` and pays nothing.
So a task is paid at most once, to a contractor whose award was live, at a
price no higher than its proposal and the budget.

**At-least-once, idempotency keys.** Every message carries ``(task, round)``,
its idempotency key: a duplicated proposal is ignored, a second different one
from the same contractor in a round is refused ``"duplicate"``, a duplicated
:class:`InformDone` of the paid round is answered :class:`Paid` again (so a
contractor may re-send its result until it hears :class:`Paid` or
:class:`Cancel`). A lost award, result or payment notice ends in a timeout and
a re-announcement, so the task is executed at least once if any contractor
completes it within ``max_rounds`` rounds, and possibly more than once (a
revoked contractor may have done the work too): make task execution idempotent
or harmless to repeat.

**Refusals** (a :class:`RejectProposal` with the reason): ``"unknown_contractor"``
(not in the configuration: unregistered), ``"bad_price"`` (not an int, or
negative), ``"over_budget"``, ``"unqualified"`` (lacks a required capability),
``"late"`` (its round's evaluation has happened, or another round is current),
``"revoked"`` (its award of an earlier round was revoked), ``"duplicate"``,
``"not_selected"`` (lost the evaluation).

The manager persists its state (:class:`Persist`) before every message it
sends and records the deadlines as absolute times of its clock, so a restart
neither extends a deadline nor forgets an award; after a restart it re-sends
the ledger commands not yet answered and the current round's messages
(contractors deduplicate them by key). The link to the ledger must not lose
messages (see ``protocols/auction.py``); contractor messages may be lost,
duplicated, delayed or reordered.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, TypeAlias, final

import attrs

from .auction import LedgerAnswer, LedgerRequest
from .effects import CancelTimer, ClientRequest, Effect, Persist, Reply, Send, SetTimer
from .ledger import Command, Hold, Ok, Release, Settle

__all__ = [
    "AcceptProposal",
    "CallForProposals",
    "Cancel",
    "ContractorInfo",
    "Failure",
    "InformDone",
    "Manager",
    "Paid",
    "Propose",
    "Proposal",
    "Refuse",
    "RejectProposal",
    "TaskConfig",
    "Weights",
    "contractors_from",
    "rank",
    "score",
]

DEADLINE_TIMER: Final = "deadline"
# Ledger answers to a re-sent settle whose first copy was applied (only this
# manager closes the task's hold, and it settles xor releases).
_CLOSED: Final = ("hold_closed", "unknown_hold")
EXECUTION_TIMER: Final = "execution"

# --------------------------------------------------------------------------- messages


@final
@attrs.frozen
class CallForProposals:
    """Manager → contractor: propose a price for ``task`` in this ``round``.

    Attributes:
        task: the task's id.
        round: 1, 2, ... (with ``task``, the idempotency key of the round).
        required: capabilities a contractor must have.
        preferred: capabilities that raise a proposal's score.
        budget: the highest acceptable price, in credits.
        window: seconds (of the manager's clock) until the deadline; a hint.
        payload: what the task is (opaque to the protocol).
    """

    task: str
    round: int
    required: frozenset[str]
    preferred: frozenset[str]
    budget: int
    window: float
    payload: Any = None


@final
@attrs.frozen
class Propose:
    """Contractor → manager: I will do ``task`` (round ``round``) for ``price`` credits."""

    task: str
    round: int
    price: Any


@final
@attrs.frozen
class Refuse:
    """Contractor → manager: I will not propose for this round."""

    task: str
    round: int
    reason: str = ""


@final
@attrs.frozen
class AcceptProposal:
    """Manager → contractor: you are awarded the round at ``price``: do the task."""

    task: str
    round: int
    price: int
    payload: Any = None


@final
@attrs.frozen
class RejectProposal:
    """Manager → contractor: your proposal is refused for ``reason`` (module doc)."""

    task: str
    round: int
    reason: str


@final
@attrs.frozen
class InformDone:
    """Contractor → manager: the awarded task is done; ``result`` is opaque."""

    task: str
    round: int
    result: Any = None


@final
@attrs.frozen
class Failure:
    """Contractor → manager: I could not do the awarded task."""

    task: str
    round: int
    reason: str = ""


@final
@attrs.frozen
class Cancel:
    """Manager → contractor: the award of this round is revoked; nothing will be paid."""

    task: str
    round: int


@final
@attrs.frozen
class Paid:
    """Manager → contractor: your result is accepted and ``price`` credits are settled."""

    task: str
    round: int
    price: int


# --------------------------------------------------------------------------- config


def _check_int(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        raise ValueError(f"{name} is required: a call for proposals without one is refused")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be > 0 seconds and finite, got {value!r}")


def _names(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError(f"capabilities must be a collection of str, got the str {value!r}")
    names = frozenset(value)
    if not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"capabilities must be non-empty strs, got {sorted(map(repr, names))}")
    return names


@final
@attrs.frozen
class Weights:
    """The weights of :func:`score`; each a float >= 0, not all 0.

    Attributes:
        price: weight of the price term ``1 - price / budget``.
        capability: weight of the share of preferred capabilities held.
        reputation: weight of the contractor's reputation in ``[0, 1]``.
    """

    price: float = 0.5
    capability: float = 0.2
    reputation: float = 0.3

    def __attrs_post_init__(self) -> None:
        for name in ("price", "capability", "reputation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"weight {name} must be a number >= 0, got {value!r}")
        if self.price + self.capability + self.reputation <= 0:
            raise ValueError("the weights must not all be 0")


@final
@attrs.frozen
class ContractorInfo:
    """A registered contractor as the manager knows it.

    Attributes:
        node: its node id.
        account: its ledger account (paid at settlement).
        capabilities: what it can do (from the registry).
        reputation: its score in ``[0, 1]`` when the task was configured (see
            :mod:`trio_foundation.protocols.reputation`).
    """

    node: int
    account: str
    capabilities: frozenset[str] = attrs.field(converter=_names)
    reputation: float = 0.5

    def __attrs_post_init__(self) -> None:
        _check_int("node", self.node, 0)
        if not isinstance(self.account, str) or not self.account:
            raise ValueError(f"account must be a non-empty str, got {self.account!r}")
        r = self.reputation
        if isinstance(r, bool) or not isinstance(r, int | float) or not 0 <= r <= 1:
            raise ValueError(f"reputation must be in [0, 1], got {r!r}")


@final
@attrs.frozen
class TaskConfig:
    """One task to allocate.

    Attributes:
        task: the task's id (the prefix of its ledger hold ids: never reused on one
            ledger; no ``/``).
        buyer: the ledger account that pays.
        budget: credits put in escrow; the highest acceptable price, >= 1.
        ledger: the ledger node's id.
        contractors: every registered contractor.
        deadline: seconds of the manager's clock from a round's announcement to
            its evaluation; required, > 0.
        execution_timeout: seconds from an award to its revocation if no result.
        required: capabilities a contractor must have.
        preferred: capabilities that raise the score.
        max_rounds: announcements in all (1 + re-announcements), >= 1.
        weights: the scoring weights.
        payload: what the task is, sent with the call and the award.

    Raises:
        ValueError, TypeError: a bad field, named (a missing deadline included).
    """

    task: str
    buyer: str
    budget: int
    ledger: int
    contractors: tuple[ContractorInfo, ...]
    deadline: float | None
    execution_timeout: float
    required: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    preferred: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    max_rounds: int = 3
    weights: Weights = Weights()
    payload: Any = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.task, str):
            raise TypeError(f"task must be a str, got {type(self.task).__name__}")
        if not self.task:
            raise ValueError(f"task must be a non-empty str, got {self.task!r}")
        if "/" in self.task:  # task "t/1" round 2 and auction "t" bidder 1 receipt 2: "t/1/2"
            raise ValueError(
                f"task must not contain '/' (it separates a hold id's parts), got {self.task!r}"
            )
        if not isinstance(self.buyer, str) or not self.buyer:
            raise ValueError(f"buyer must be a non-empty str, got {self.buyer!r}")
        _check_int("budget", self.budget, 1)
        _check_seconds("deadline", self.deadline)
        _check_seconds("execution_timeout", self.execution_timeout)
        _check_int("max_rounds", self.max_rounds, 1)
        nodes = [c.node for c in self.contractors]
        if len(set(nodes)) != len(nodes):
            raise ValueError(f"contractor nodes must be unique, got {nodes}")
        if self.ledger in nodes:
            raise ValueError(f"the ledger node {self.ledger} is also a contractor")


# --------------------------------------------------------------------------- evaluation


@final
@attrs.frozen
class Proposal:
    """A valid proposal of the current round: ``price`` from ``node``, ``receipt``-th received."""

    node: int
    price: int
    receipt: int


def score(
    price: int,
    budget: int,
    capabilities: Iterable[str],
    preferred: Iterable[str],
    reputation: float,
    weights: Weights,
) -> float:
    """A proposal's score; higher is better.

    ``w.price * (1 - price / budget) + w.capability * match + w.reputation *
    reputation``, where ``match`` is the share of ``preferred`` capabilities the
    contractor has (1 when nothing is preferred). Each term is in ``[0, 1]``, so
    the score is in ``[0, sum of the weights]``. Deterministic (the same floats
    in the same order on every machine).

    Args:
        price: the proposed price, ``0 <= price <= budget``.
        budget: the task's budget, >= 1.
        capabilities: the contractor's.
        preferred: the task's preferred capabilities.
        reputation: the contractor's, in ``[0, 1]``.
        weights: the weights.
    """
    wanted = frozenset(preferred)
    match = len(wanted & frozenset(capabilities)) / len(wanted) if wanted else 1.0
    return (
        weights.price * (1.0 - price / budget)
        + weights.capability * match
        + weights.reputation * reputation
    )


def rank(proposals: Iterable[Proposal], config: TaskConfig) -> list[Proposal]:
    """The proposals best first: higher :func:`score`, lower price, earlier receipt, lower node.

    Args:
        proposals: valid proposals (from configured contractors, within budget).
        config: the task (its contractors give capabilities and reputations).
    """
    info = {c.node: c for c in config.contractors}

    def key(p: Proposal) -> tuple[float, int, int, int]:
        c = info[p.node]
        s = score(p.price, config.budget, c.capabilities, config.preferred, c.reputation,
                  config.weights)  # fmt: skip
        return (-s, p.price, p.receipt, p.node)

    return sorted(proposals, key=key)


# --------------------------------------------------------------------------- the manager

State: TypeAlias = Literal["escrowing", "cfp", "awarded", "done", "failed"]
"""``escrowing`` (hold in flight) → ``cfp`` (round open) → ``awarded`` → ``done``;
``failed`` from any but ``done`` (hold refused, or ``max_rounds`` rounds revoked)."""


@final
class Manager:
    """The contract-net manager's core for one task (an effects ``Core``).

    Public read-only state (what an observer may look at): :attr:`state`,
    :attr:`round`, :attr:`winner` and :attr:`price` (the current award, or the
    paid one once ``done``), :attr:`reason` (why ``failed``), :attr:`proposals`
    (the current round's valid proposals), :attr:`revoked` (every revoked round
    with its awarded node or ``None``; at most ``max_rounds`` entries).

    Args:
        config: the task.
    """

    def __init__(self, config: TaskConfig) -> None:
        self.config = config
        self._info = {c.node: c for c in config.contractors}
        self._qualified = frozenset(
            c.node for c in config.contractors if config.required <= c.capabilities
        )
        self.state: State = "escrowing"
        self.round = 0
        self.winner: int | None = None
        self.price = 0
        self.reason = ""
        self.proposals: dict[int, Proposal] = {}  # node -> proposal, current round
        # nodes that proposed or refused this round, in arrival order
        self._answered: dict[int, None] = {}
        self._receipts = 0
        self._deadline_at: float | None = None  # local time of the round's deadline
        self._execution_at: float | None = None  # local time of the award's timeout
        self.revoked: list[tuple[int, int | None]] = []  # (round, awarded node)
        self._unanswered: dict[str, Command] = {}  # kind -> ledger command not answered
        self._persisted: Any = None
        self._invite()

    def _invite(self) -> None:
        """This round's invitations: the qualified contractors never revoked for this task."""
        excluded = {node for _, node in self.revoked}
        self._excluded = frozenset(n for n in excluded if n is not None)
        self._invited = tuple(sorted(self._qualified - self._excluded))
        self._invited_set = frozenset(self._invited)
        # Invariant: the number of invited contractors not in _answered
        self._unanswered_invited = sum(1 for n in self._invited if n not in self._answered)

    # ----------------------------------------------------------------- Core

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """Escrow the budget; after a restart resume the round and re-send what is unanswered."""
        effects: list[Effect] = [self._persist()]
        if self.state == "escrowing":
            hold = Hold(self.config.task, self.config.buyer, self.config.budget)
            self._unanswered["hold"] = hold
            effects = [self._persist(), self._to_ledger(hold)]
            return effects
        effects.extend(self._to_ledger(c) for c in self._unanswered.values())
        if self.state == "cfp" and self._deadline_at is not None:
            effects.extend(self._broadcast_cfp(now))
            effects.append(SetTimer(DEADLINE_TIMER, max(0.0, self._deadline_at - now)))
        elif self.state == "awarded" and self._execution_at is not None:
            assert self.winner is not None
            effects.append(Send(self.winner, self._award()))
            effects.append(SetTimer(EXECUTION_TIMER, max(0.0, self._execution_at - now)))
        return effects

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """A contractor's message, or a ledger answer from the ledger node."""
        if isinstance(msg, LedgerAnswer) and src == self.config.ledger:
            return self._on_ledger(now, msg)
        if getattr(msg, "task", None) != self.config.task:
            return []
        if isinstance(msg, Propose):
            return self._on_propose(now, src, msg)
        if isinstance(msg, Refuse):
            return self._on_refuse(now, src, msg)
        if isinstance(msg, InformDone):
            return self._on_done(src, msg)
        if isinstance(msg, Failure):
            return self._on_failure(now, src, msg)
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """``"deadline"``: evaluate the round; ``"execution"``: revoke the award."""
        if name == DEADLINE_TIMER and self.state == "cfp":
            return self._evaluate(now)
        if name == EXECUTION_TIMER and self.state == "awarded":
            return self._revoke(now, "timeout")
        return []

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """``op="status"``: reply ``(state, round, winner, price, reason)``; other ops refused."""
        if request.op != "status":
            return [Reply(request.client, f"unknown op {request.op!r}", ok=False)]
        status = (self.state, self.round, self.winner, self.price, self.reason)
        return [Reply(request.client, status)]

    def snapshot_persistent(self) -> Any:
        """The data of the last :class:`Persist`."""
        return self._persisted

    def restore(self, snapshot: Any) -> None:
        """Load the state of a :meth:`snapshot_persistent` into a fresh manager."""
        (
            self.state,
            self.round,
            self.winner,
            self.price,
            self.reason,
            proposals,
            answered,
            self._receipts,
            self._deadline_at,
            self._execution_at,
            revoked,
            unanswered,
        ) = snapshot
        self.proposals = {p.node: p for p in proposals}
        self._answered = dict.fromkeys(answered)
        self.revoked = list(revoked)
        self._invite()
        self._unanswered = dict(unanswered)
        self._persisted = snapshot

    # ----------------------------------------------------------------- transitions

    def _announce(self, now: float) -> list[Effect]:
        """Open round ``round + 1``: invite every qualified contractor, arm the deadline."""
        self.round += 1
        self.state = "cfp"
        self.winner, self.price = None, 0
        self.proposals, self._answered = {}, {}
        self._invite()
        assert self.config.deadline is not None  # checked by TaskConfig
        self._deadline_at = now + self.config.deadline
        self._execution_at = None
        effects: list[Effect] = [self._persist()]
        effects.extend(self._broadcast_cfp(now))
        effects.append(SetTimer(DEADLINE_TIMER, self.config.deadline))
        if not self._invited:  # nobody to wait for
            effects.extend(self._evaluate(now))
        return effects

    def _broadcast_cfp(self, now: float) -> list[Effect]:
        c = self.config
        assert self._deadline_at is not None
        window = max(0.0, self._deadline_at - now)
        cfp = CallForProposals(
            c.task, self.round, c.required, c.preferred, c.budget, window, c.payload
        )
        return [Send(node, cfp) for node in self._invited if node not in self._answered]

    def _refusal(self, src: int, msg: Propose) -> str | None:
        """Why ``msg`` is refused, or None if it is a valid proposal (or a duplicate of one)."""
        info = self._info.get(src)
        if info is None:
            return "unknown_contractor"
        price = msg.price
        if not isinstance(price, int) or isinstance(price, bool) or price < 0:
            return "bad_price"
        if not self._open_for(msg.round):
            return "late"
        if not self.config.required <= info.capabilities:
            return "unqualified"
        if src in self._excluded:
            return "revoked"
        if price > self.config.budget:
            return "over_budget"
        if src in self._answered and self.proposals.get(src, None) is None:
            return "duplicate"  # refused earlier this round
        return None

    def _open_for(self, round_: int) -> bool:
        return self.state == "cfp" and round_ == self.round

    def _on_propose(self, now: float, src: int, msg: Propose) -> list[Effect]:
        reason = self._refusal(src, msg)
        if reason is not None:
            return [Send(src, RejectProposal(self.config.task, msg.round, reason))]
        known = self.proposals.get(src)
        if known is not None:
            if known.price == msg.price:
                return []  # a duplicated message: the key (task, round, node) is known
            return [Send(src, RejectProposal(self.config.task, msg.round, "duplicate"))]
        self._receipts += 1
        self.proposals[src] = Proposal(src, msg.price, self._receipts)
        return self._after_answer(now, src)

    def _on_refuse(self, now: float, src: int, msg: Refuse) -> list[Effect]:
        if src not in self._invited_set or not self._open_for(msg.round) or src in self._answered:
            return []
        return self._after_answer(now, src)

    def _after_answer(self, now: float, src: int) -> list[Effect]:
        self._answered[src] = None
        if src in self._invited_set:
            self._unanswered_invited -= 1
        if self._unanswered_invited == 0:
            return [CancelTimer(DEADLINE_TIMER), *self._evaluate(now)]
        return [self._persist()]

    def _evaluate(self, now: float) -> list[Effect]:
        """Award the best valid proposal of the round, or revoke the round if there is none."""
        ranked = rank(self.proposals.values(), self.config)
        if not ranked:
            return self._revoke(now, "no_proposal")
        best = ranked[0]
        self.state = "awarded"
        self.winner, self.price = best.node, best.price
        self._execution_at = now + self.config.execution_timeout
        effects: list[Effect] = [self._persist(), Send(best.node, self._award())]
        for p in ranked[1:]:
            effects.append(
                Send(p.node, RejectProposal(self.config.task, self.round, "not_selected"))
            )
        effects.append(SetTimer(EXECUTION_TIMER, self.config.execution_timeout))
        return effects

    def _award(self) -> AcceptProposal:
        return AcceptProposal(self.config.task, self.round, self.price, self.config.payload)

    def _on_done(self, src: int, msg: InformDone) -> list[Effect]:
        c = self.config
        if self.state == "done" and msg.round == self.round and src == self.winner:
            return [Send(src, Paid(c.task, msg.round, self.price))]  # a retried result
        if not (self.state == "awarded" and msg.round == self.round and src == self.winner):
            if src in self._info:
                return [Send(src, Cancel(c.task, msg.round))]  # a revoked or unknown award
            return []
        self.state = "done"
        settle = Settle(c.task, self._info[src].account, self.price)
        self._unanswered["settle"] = settle
        return [
            self._persist(),
            CancelTimer(EXECUTION_TIMER),
            self._to_ledger(settle),
            Send(src, Paid(c.task, self.round, self.price)),
        ]

    def _on_failure(self, now: float, src: int, msg: Failure) -> list[Effect]:
        if self.state == "awarded" and msg.round == self.round and src == self.winner:
            return [CancelTimer(EXECUTION_TIMER), *self._revoke(now, "failure")]
        return []

    def _revoke(self, now: float, why: str) -> list[Effect]:
        """End the current round without a result; re-announce, or fail after the last round."""
        awarded = self.winner if self.state == "awarded" else None
        self.revoked.append((self.round, awarded))
        cancel: list[Effect] = []
        if awarded is not None and why == "timeout":
            cancel.append(Send(awarded, Cancel(self.config.task, self.round)))
        if self.round < self.config.max_rounds:
            effects = self._announce(now)
            return effects[:1] + cancel + effects[1:]  # persist first
        self.state = "failed"
        self.winner, self.price = None, 0
        self.reason = why
        release = Release(self.config.task)
        self._unanswered["release"] = release
        return [self._persist(), *cancel, self._to_ledger(release)]

    def _on_ledger(self, now: float, answer: LedgerAnswer) -> list[Effect]:
        command = answer.command
        if getattr(command, "hold", None) != self.config.task:
            return []
        if isinstance(command, Hold):
            if self._unanswered.pop("hold", None) is None or self.state != "escrowing":
                return []  # a duplicated answer
            if isinstance(answer.result, Ok):
                return self._announce(now)
            self.state = "failed"
            self.reason = answer.result.code
            return [self._persist()]
        if isinstance(command, Settle):
            if self._unanswered.pop("settle", None) is None:
                return []
            if isinstance(answer.result, Ok) or answer.result.code in _CLOSED:
                return [self._persist()]  # closed: by this settle, answered before a restart
            # the payee's account was refused: the buyer gets the budget back
            release = Release(self.config.task)
            self._unanswered["release"] = release
            self.reason = f"settlement refused: {answer.result.code}"
            return [self._persist(), self._to_ledger(release)]
        if isinstance(command, Release):
            self._unanswered.pop("release", None)
            return [self._persist()]
        return []

    # ----------------------------------------------------------------- plumbing

    def _to_ledger(self, command: Command) -> Send:
        return Send(self.config.ledger, LedgerRequest(command))

    def _persist(self) -> Persist:
        self._persisted = (
            self.state,
            self.round,
            self.winner,
            self.price,
            self.reason,
            tuple(self.proposals.values()),
            tuple(self._answered),  # arrival order: deterministic, no sort per answer
            self._receipts,
            self._deadline_at,
            self._execution_at,
            tuple(self.revoked),
            tuple(self._unanswered.items()),
        )
        return Persist(self._persisted)


def contractors_from(
    entries: Iterable[tuple[int, str, Iterable[str]]],
    reputations: Mapping[int, float] | None = None,
) -> tuple[ContractorInfo, ...]:
    """:class:`ContractorInfo` tuples from ``(node, account, capabilities)`` rows.

    Args:
        entries: one row per registered contractor.
        reputations: node -> score in ``[0, 1]``; a node missing gets 0.5.
    """
    reps = reputations or {}
    return tuple(
        ContractorInfo(node, account, _names(caps), reps.get(node, 0.5))
        for node, account, caps in entries
    )
