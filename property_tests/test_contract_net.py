"""The real contract-net Manager and LedgerNode under lossy, slow and lying contractors.

The harness is specs/ContractNet.tla's world, with more freedom: contractors
(two qualified, one unqualified, one unregistered) send proposals at any price
(negative and over budget included) for the current or an earlier round,
refusals, and results for awards they hold, held once, or never had (liars);
the network delivers, duplicates, reorders or drops each message; the deadline
and execution timers fire when armed; the ledger answers at once or as rules of
their own; the manager crashes and restarts from its persisted state (answers
in flight to it are lost; the ledger link is otherwise reliable and FIFO).

An observer records every proposal delivered (with whether its round was
open), every message the manager sent and every ledger result, and checks after
every step the spec's invariants: ``AtMostOnePaid``, ``PaidOnlyForLiveAward``,
``AwardedToValidProposal`` (against its own scoring oracle, not the module's
``score``), ``NoProposalAfterDeadline``, ``EscrowReleasedOnFailure``, and the
ledger's ``Conservation``.
"""

from __future__ import annotations

import os
import random
from collections import deque
from typing import Any

import attrs
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

from trio_foundation.protocols.auction import LedgerAnswer, LedgerNode, LedgerRequest
from trio_foundation.protocols.contract_net import (
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
)
from trio_foundation.protocols.effects import CancelTimer, Effect, Persist, Send, SetTimer
from trio_foundation.protocols.ledger import Hold, Ledger, Mint, Ok, Open, Release, Settle
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

MANAGER, LEDGER = 0, 1
QUALIFIED = (2, 3)
UNQUALIFIED = 4
UNKNOWN = 9
SENDERS = (*QUALIFIED, UNQUALIFIED, UNKNOWN)
BUDGET = 3
FUNDS = 5
SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None)


def _oracle_score(price: int, caps: frozenset[str], rep: float, w: Weights) -> float:
    """The documented scoring function, restated (preferred = {"test"})."""
    match = 1.0 if "test" in caps else 0.0
    return w.price * (1.0 - price / BUDGET) + w.capability * match + w.reputation * rep


INVARIANTS = (
    "AtMostOnePaid",
    "PaidOnlyForLiveAward",
    "AwardedToValidProposal",
    "NoProposalAfterDeadline",
    "EscrowReleasedOnFailure",
    "Conservation",
)


def machine(
    cls: type[Manager] = Manager, only: tuple[str, ...] = INVARIANTS
) -> type[RuleBasedStateMachine]:
    """The state machine over ``cls``, checking the invariants ``only`` (as a TLC config
    names the invariants it checks: a broken variant is searched for with its own)."""

    class ContractNetMachine(RuleBasedStateMachine):
        @initialize(
            reps=st.lists(st.sampled_from([0.0, 1.0, 0.5]), min_size=3, max_size=3),
            weights=st.sampled_from([Weights(), Weights(1.0, 0.0, 1.0), Weights(0.0, 0.0, 1.0)]),
            funded=st.integers(0, 15).map(lambda n: n > 0),
            slow_ledger=st.booleans(),
            max_rounds=st.sampled_from([2, 3, 2, 3, 1]),  # a revocation needs a next round
        )
        def setup(
            self,
            reps: list[float],
            weights: Weights,
            funded: bool,
            slow_ledger: bool,
            max_rounds: int,
        ) -> None:
            self.slow_ledger = slow_ledger
            caps = {2: {"code"}, 3: {"code", "test"}, 4: {"plan"}}
            self.config = TaskConfig(
                task="t",
                buyer="buyer",
                budget=BUDGET,
                ledger=LEDGER,
                contractors=tuple(
                    ContractorInfo(c, f"acct{c}", caps[c], r)
                    for c, r in zip((2, 3, 4), reps, strict=True)
                ),
                deadline=5.0,
                execution_timeout=10.0,
                required={"code"},
                preferred={"test"},
                max_rounds=max_rounds,
                weights=weights,
            )
            self.info = {c.node: c for c in self.config.contractors}
            ledger = Ledger()
            for account in ("buyer", "acct2", "acct3", "acct4", "acct9"):
                ledger.apply(Open(account))
            ledger.apply(Mint("treasury", "buyer", FUNDS if funded else 1))
            self.funds = ledger.balance("buyer")
            self.supply = ledger.supply
            self.ledger = LedgerNode(ledger)
            self.core = cls(self.config)
            self.now = 0.0
            self.timers: set[str] = set()
            self.net: list[tuple[int, Any]] = []  # contractors -> manager, unordered
            self.to_ledger: deque[LedgerRequest] = deque()
            self.to_core: deque[LedgerAnswer] = deque()
            # observer
            self.round_open: int | None = None  # the round whose CFP went out, not evaluated
            self.calls: int = 0  # highest round announced
            self.delivered: list[tuple[int, Any, bool]] = []  # (src, msg, its round open)
            self.awards: list[tuple[int, int, int]] = []  # (contractor, round, price)
            self.revoked: set[int] = set()  # rounds revoked (cancelled or re-announced)
            self.payments: list[tuple[str, int, tuple[int, int, int] | None]] = []
            self.inbox: list[tuple[int, Any]] = []
            self.ledger_log: list[tuple[Any, Any]] = []
            self.violations: list[str] = []
            self._run(self.core.on_start(self.now, random.Random(0)))

        # ------------------------------------------------------------ plumbing

        def _live_award(self) -> tuple[int, int, int] | None:
            if not self.awards:
                return None
            last = self.awards[-1]
            return None if last[1] in self.revoked else last

        def _run(self, effects: list[Effect]) -> None:
            for effect in effects:
                if isinstance(effect, Send) and effect.to == LEDGER:
                    command = effect.msg.command
                    if isinstance(command, Settle):
                        # PaidOnlyForLiveAward is judged when the payment is ordered
                        self.payments.append((command.payee, command.amount, self._live_award()))
                    self.to_ledger.append(effect.msg)
                elif isinstance(effect, Send):
                    self._observe(effect.to, effect.msg)
                elif isinstance(effect, SetTimer):
                    self.timers.add(effect.name)
                elif isinstance(effect, CancelTimer):
                    self.timers.discard(effect.name)
                else:
                    assert isinstance(effect, Persist)
            while not self.slow_ledger and (self.to_ledger or self.to_core):
                if self.to_ledger:
                    self.LedgerStep()
                else:
                    self.AnswerArrives()

        def _observe(self, to: int, msg: Any) -> None:
            self.inbox.append((to, msg))
            if isinstance(msg, CallForProposals):
                if msg.round > self.calls:
                    self.revoked.update(range(1, msg.round))
                    self.calls = msg.round
                    self.round_open = msg.round
            elif isinstance(msg, AcceptProposal):
                if self.round_open == msg.round:
                    self.round_open = None
                if (to, msg.round, msg.price) not in self.awards:
                    self.awards.append((to, msg.round, msg.price))
                    self.AwardedToValidProposal(to, msg.round, msg.price)
            elif isinstance(msg, RejectProposal) and msg.reason == "not_selected":
                if self.round_open == msg.round:
                    self.round_open = None
                self.Evaluated(to, msg.round)
            elif isinstance(msg, Cancel):
                if any(a[1] == msg.round and a[0] == to for a in self.awards):
                    self.revoked.add(msg.round)

        def _deliver(self, src: int, msg: Any) -> None:
            open_ = (
                isinstance(msg, Propose | Refuse)
                and self.core.state == "cfp"
                and msg.round == self.core.round
            )
            self.delivered.append((src, msg, open_))
            self._run(self.core.on_message(self.now, src, msg))

        # ------------------------------------------------------------ rules

        @rule(
            src=st.sampled_from(SENDERS),
            price=st.none() | st.integers(-1, BUDGET + 1),
            back=st.booleans(),
        )
        def SendPropose(self, src: int, price: int | None, back: bool) -> None:
            """A proposal (None: a refusal) put in flight for the current round, or
            (``back``) for the one before it."""
            r = max(1, self.core.round - 1) if back else max(1, self.core.round)
            self.net.append((src, Refuse("t", r) if price is None else Propose("t", r, price)))

        @precondition(lambda self: self.core.round >= 2)
        @rule(src=st.sampled_from(QUALIFIED), price=st.integers(0, BUDGET))
        def DelayedProposal(self, src: int, price: int) -> None:
            """A proposal for the previous round arrives now (it was delayed)."""
            self._deliver(src, Propose("t", self.core.round - 1, price))

        @precondition(lambda self: self.core.state == "cfp")
        @rule(answers=st.lists(st.sampled_from([1, 2, None, 0, 3]), min_size=3, max_size=3))
        def HonestRound(self, answers: list[int | None]) -> None:
            """Contractors 4 (uninvited: unqualified), 2 and 3 answer the current call at
            once (None: refuses)."""
            for c, price in zip((UNQUALIFIED, *QUALIFIED), answers, strict=True):
                r = self.core.round
                self._deliver(c, Refuse("t", r) if price is None else Propose("t", r, price))

        @rule(data=st.data(), done=st.booleans(), direct=st.booleans())
        def Report(self, data: st.DataObject, done: bool, direct: bool) -> None:
            """An awarded contractor reports, even after its award was revoked, or (the last
            choice) a liar reports a result for the current round; ``direct``: delivered at
            once, else put in flight."""
            i = data.draw(st.integers(0, len(self.awards)))
            if i < len(self.awards):
                c, r, _ = self.awards[i]
            else:
                c, r = data.draw(st.sampled_from(SENDERS)), max(1, self.core.round)
            msg = InformDone("t", r) if done else Failure("t", r)
            if direct:
                self._deliver(c, msg)
            else:
                self.net.append((c, msg))

        @precondition(lambda self: any(r in self.revoked for _, r, _ in self.awards))
        @rule()
        def EveryoneReports(self) -> None:
            """Once an award was revoked: every awarded contractor, revoked or not, reports
            its result now (the slow one late)."""
            for c, r, _ in list(self.awards):
                self._deliver(c, InformDone("t", r))

        @precondition(lambda self: self.net)
        @rule(data=st.data(), how=st.sampled_from(["deliver", "duplicate", "drop"]))
        def Receive(self, data: st.DataObject, how: str) -> None:
            """Deliver one message in flight, in any order; or deliver it and leave a
            duplicate in flight; or drop it."""
            i = data.draw(st.integers(0, len(self.net) - 1))
            src, msg = self.net[i] if how == "duplicate" else self.net.pop(i)
            if how != "drop":
                self._deliver(src, msg)

        @precondition(lambda self: "deadline" in self.timers)
        @rule()
        def Deadline(self) -> None:
            self.timers.discard("deadline")
            self.now += 5.0
            self._run(self.core.on_timer(self.now, "deadline"))

        @precondition(lambda self: "execution" in self.timers)
        @rule()
        def Execution(self) -> None:
            """The awarded contractor crashed, is slow, or its result was lost."""
            self.timers.discard("execution")
            self.now += 10.0
            self._run(self.core.on_timer(self.now, "execution"))

        @precondition(lambda self: self.to_ledger or self.to_core)
        @rule(answer_first=st.booleans())
        def LedgerProgress(self, answer_first: bool) -> None:
            """The ledger applies the next command, or its next answer reaches the manager."""
            if self.to_core and (answer_first or not self.to_ledger):
                self.AnswerArrives()
            else:
                self.LedgerStep()

        def LedgerStep(self) -> None:
            request = self.to_ledger.popleft()
            for effect in self.ledger.on_message(self.now, MANAGER, request):
                assert isinstance(effect, Send)
                self.ledger_log.append((effect.msg.command, effect.msg.result))
                self.to_core.append(effect.msg)

        def AnswerArrives(self) -> None:
            self._run(self.core.on_message(self.now, LEDGER, self.to_core.popleft()))

        @rule()
        def CrashManager(self) -> None:
            """Restart from the persisted state; answers in flight to it are lost."""
            fresh = cls(self.config)
            snapshot = self.core.snapshot_persistent()
            if snapshot is not None:
                fresh.restore(snapshot)
            self.core = fresh
            self.to_core.clear()
            self.timers.clear()  # the runtime's timers die with the node
            self.now += 1.0
            self._run(fresh.on_start(self.now, random.Random(0)))

        # ------------------------------------------------------------ observer

        def _valid_in(self, r: int) -> list[tuple[int, int, int]]:
            """(contractor, price, receipt) of round r's valid proposals: per contractor not
            revoked for this task, its first answer received while round r was open, if a
            valid proposal."""
            answered: set[int] = set()
            # a contractor awarded an earlier round (hence revoked) is not invited again
            answered.update(c for c, r2, _ in self.awards if r2 < r)
            valid = []
            for receipt, (src, msg, open_) in enumerate(self.delivered):
                if not open_ or msg.round != r or src not in self.info or src in answered:
                    continue
                if isinstance(msg, Refuse):
                    answered.add(src)
                    continue
                price = msg.price
                if not isinstance(price, int) or isinstance(price, bool):
                    continue
                if not 0 <= price <= BUDGET or src not in QUALIFIED:
                    continue
                answered.add(src)
                valid.append((src, price, receipt))
            return valid

        def AwardedToValidProposal(self, c: int, r: int, price: int) -> None:
            valid = self._valid_in(r)
            w = self.config.weights

            def key(v: tuple[int, int, int]) -> tuple[float, int, int, int]:
                info = self.info[v[0]]
                return (
                    -_oracle_score(v[1], info.capabilities, info.reputation, w),
                    v[1],
                    v[2],
                    v[0],
                )

            best = min(valid, key=key, default=None)
            if best is None or (best[0], best[1]) != (c, price):
                self.violations.append(
                    f"AwardedToValidProposal: round {r} awarded to {c} at {price}, the best"
                    f" valid proposal is {best} of {valid}"
                )

        def Evaluated(self, c: int, r: int) -> None:
            """A proposal that lost round r's evaluation was a valid one (AwardedToValidProposal:
            the evaluation ranks the valid proposals only)."""
            if c not in {v[0] for v in self._valid_in(r)}:
                self.violations.append(
                    f"AwardedToValidProposal: {c} was evaluated in round {r} without a valid"
                    " proposal"
                )

        @invariant()
        def checks(self) -> None:
            if not hasattr(self, "core"):
                return
            for name in only:
                if name == "AwardedToValidProposal":
                    assert not self.violations, self.violations[0]
                else:
                    getattr(self, name)()

        def _settled(self) -> list[Settle]:
            return [c for c, r in self.ledger_log if isinstance(c, Settle) and isinstance(r, Ok)]

        def AtMostOnePaid(self) -> None:
            settled = self._settled()
            assert len(settled) <= 1, f"AtMostOnePaid: paid {settled}"

        def PaidOnlyForLiveAward(self) -> None:
            for payee, amount, live in self.payments:
                assert live is not None, f"PaidOnlyForLiveAward: {payee} paid with no live award"
                c, _, price = live
                assert (payee, amount) == (f"acct{c}", price) <= (payee, BUDGET), (
                    f"PaidOnlyForLiveAward: {payee} paid {amount}, the live award is {live}"
                )
            for to, msg in self.inbox:
                if isinstance(msg, Paid):
                    assert (to, msg.round, msg.price) in self.awards, (
                        f"PaidOnlyForLiveAward: Paid to {to} for {msg} never awarded"
                    )

        def NoProposalAfterDeadline(self) -> None:
            if self.core.state != "cfp":
                return
            opened = {
                (src, msg.price)
                for src, msg, open_ in self.delivered
                if open_ and isinstance(msg, Propose) and msg.round == self.core.round
            }
            for p in self.core.proposals.values():
                assert (p.node, p.price) in opened, (
                    f"NoProposalAfterDeadline: {p} counted in round {self.core.round},"
                    " not received while that round was open"
                )

        def _quiet(self) -> bool:
            return not self.to_ledger and not self.to_core

        def EscrowReleasedOnFailure(self) -> None:
            if not self._quiet():
                return
            holds = self.ledger.ledger.holds()
            if self.core.state == "failed":
                assert not holds, f"EscrowReleasedOnFailure: failed with holds open {holds}"
                assert not self._settled(), "EscrowReleasedOnFailure: failed but paid"
                assert self.ledger.ledger.balance("buyer") == self.funds
            if self.core.state == "done":
                assert not holds, f"EscrowReleasedOnFailure: done with holds open {holds}"
                assert len(self._settled()) == 1

        def Conservation(self) -> None:
            ledger = self.ledger.ledger
            total = sum(ledger.balances().values()) + sum(n for _, n in ledger.holds().values())
            assert total == self.supply, f"Conservation: {total} != {self.supply}"

    return ContractNetMachine


def test_contract_net_invariants_hold() -> None:
    run_state_machine_as_test(machine(), settings=SETTINGS)


# ------------------------------------------------------------------------ broken variants


class PayRevokedAward(Manager):  # type: ignore[misc]
    """Honours a revoked award's late result: pays the old contractor."""

    def _on_done(self, src: int, msg: InformDone) -> list[Effect]:
        old = [r for r, c in self.revoked if r == msg.round and c == src]
        if old and self.state in ("cfp", "awarded"):
            settle = Settle(self.config.task, self._info[src].account, 1)
            return [self._persist(), self._to_ledger(settle)]
        return super()._on_done(src, msg)


class DoubleAwardAfterReannounce(Manager):  # type: ignore[misc]
    """Re-announcement escrows afresh per round, and the revoked award stays payable."""

    def _on_done(self, src: int, msg: InformDone) -> list[Effect]:
        old = [r for r, c in self.revoked if r == msg.round and c == src]
        if old:
            hold = f"{self.config.task}/{msg.round}"
            return [
                self._persist(),
                self._to_ledger(Hold(hold, self.config.buyer, 1)),
                self._to_ledger(Settle(hold, self._info[src].account, 1)),
            ]
        return super()._on_done(src, msg)


class AwardUnqualified(Manager):  # type: ignore[misc]
    """Forgets the capability filter."""

    def _refusal(self, src: int, msg: Propose) -> str | None:
        reason = super()._refusal(src, msg)
        if reason == "unqualified":
            price = msg.price
            return "over_budget" if price > self.config.budget else None
        return reason


class IgnoreReputation(Manager):  # type: ignore[misc]
    """Scores without the reputation term."""

    def _evaluate(self, now: float) -> list[Effect]:
        config = self.config
        w = config.weights
        # without its reputation term; a reputation-only scoring falls back to price
        weights = (
            Weights(w.price, w.capability, 0.0) if w.price + w.capability else Weights(1, 0, 0)
        )
        self.config = attrs.evolve(config, weights=weights)
        try:
            return super()._evaluate(now)
        finally:
            self.config = config


class LateProposalAccepted(Manager):  # type: ignore[misc]
    """Counts a proposal of an earlier round in the current one."""

    def _open_for(self, round_: int) -> bool:
        return self.state == "cfp"


class FailureKeepsEscrow(Manager):  # type: ignore[misc]
    """Never releases the hold of a failed task."""

    def _to_ledger(self, command: Any) -> Send:
        if isinstance(command, Release):
            return Send(MANAGER, None)  # never reaches the ledger
        return super()._to_ledger(command)


BROKEN: dict[str, tuple[type[Manager], tuple[str, ...]]] = {
    "double_award_after_reannounce": (DoubleAwardAfterReannounce, ("AtMostOnePaid",)),
    "pay_revoked_award": (PayRevokedAward, ("PaidOnlyForLiveAward",)),
    "award_unqualified": (AwardUnqualified, ("AwardedToValidProposal",)),
    "ignore_reputation": (IgnoreReputation, ("AwardedToValidProposal",)),
    "late_proposal_accepted": (LateProposalAccepted, ("NoProposalAfterDeadline",)),
    "failure_keeps_escrow": (FailureKeepsEscrow, ("EscrowReleasedOnFailure",)),
}


def _caught(name: str) -> bool:
    """One fresh search (random seed, no database, no shrinking); True if caught as expected."""
    cls, expected = BROKEN[name]
    return caught_by_fresh_search(
        machine(cls, only=expected),
        SETTINGS,
        expected,
        name=name,
        max_examples=300,
        stateful_step_count=50,
    )


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_is_caught(name: str) -> None:
    # Measured rates per fresh search are 98-100 % (docs/contract-net.md); six of them
    # per CI run would still miss about once in 25 runs, so a miss gets one more fresh
    # search (a second random seed, not a remembered one).
    assert _caught(name) or _caught(name), f"the {name} manager was not caught twice"


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_catch_rate(name: str) -> None:
    """``CATCH_RUNS`` (default 20) fresh searches each: the rate and its Wilson 95 %
    interval are printed (docs/contract-net.md has the figures)."""
    runs = int(os.environ.get("CATCH_RUNS", "20"))
    rate = measure_catch_rate(lambda: _caught(name), runs)
    print(f"\n{name}: {rate}")
    assert rate.rate >= 0.95
