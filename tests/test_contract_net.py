"""Unit tests of the contract-net manager core (protocols/contract_net.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from trio_foundation.protocols.auction import LedgerNode
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
    Weights,
    contractors_from,
    rank,
    score,
)
from trio_foundation.protocols.effects import CancelTimer, ClientRequest, Persist, Send, SetTimer
from trio_foundation.protocols.ledger import Ledger, Mint, Open

LEDGER = 1
C2, C3, C4 = 2, 3, 4


def config(**overrides: Any) -> TaskConfig:
    fields: dict[str, Any] = {
        "task": "t1",
        "buyer": "buyer",
        "budget": 10,
        "ledger": LEDGER,
        "contractors": (
            ContractorInfo(C2, "acct2", {"code"}, 0.5),
            ContractorInfo(C3, "acct3", {"code", "test"}, 0.5),
            ContractorInfo(C4, "acct4", {"plan"}, 0.5),
        ),
        "deadline": 5.0,
        "execution_timeout": 20.0,
        "required": {"code"},
        "preferred": {"test"},
        "max_rounds": 2,
    }
    fields.update(overrides)
    return TaskConfig(**fields)


class World:
    """A manager and a ledger node; contractor messages collected in ``out``."""

    def __init__(self, cfg: TaskConfig | None = None, funds: int = 100) -> None:
        ledger = Ledger()
        for account in ("buyer", "acct2", "acct3", "acct4"):
            ledger.apply(Open(account))
        if funds:
            ledger.apply(Mint("treasury", "buyer", funds))
        self.ledger = LedgerNode(ledger)
        self.cfg = cfg or config()
        self.core = Manager(self.cfg)
        self.out: list[tuple[int, Any]] = []
        self.timers: list[Any] = []
        self.ledger_log: list[Any] = []
        self.run(self.core.on_start(0.0, random.Random(0)))

    def run(self, effects: list[Any]) -> None:
        queue = list(effects)
        seen_persist = False
        while queue:
            effect = queue.pop(0)
            if isinstance(effect, Persist):
                seen_persist = True
            elif isinstance(effect, Send) and effect.to == LEDGER:
                assert seen_persist, "a ledger command sent before the state was persisted"
                for answer in self.ledger.on_message(0.0, 0, effect.msg):
                    assert isinstance(answer, Send)
                    self.ledger_log.append((answer.msg.command, answer.msg.result))
                    queue.extend(self.core.on_message(0.0, LEDGER, answer.msg))
            elif isinstance(effect, Send):
                self.out.append((effect.to, effect.msg))
            else:
                self.timers.append(effect)

    def take(self) -> list[tuple[int, Any]]:
        out, self.out = self.out, []
        return out

    def deliver(self, src: int, msg: Any, now: float = 1.0) -> list[tuple[int, Any]]:
        self.run(self.core.on_message(now, src, msg))
        return self.take()

    def fire(self, name: str, now: float) -> list[tuple[int, Any]]:
        self.run(self.core.on_timer(now, name))
        return self.take()

    def balance(self, account: str) -> int:
        return self.ledger.ledger.balance(account)


# ----------------------------------------------------------------- configuration


def test_a_call_without_a_deadline_is_refused() -> None:
    with pytest.raises(ValueError, match="deadline is required"):
        config(deadline=None)
    with pytest.raises(ValueError, match="deadline must be > 0"):
        config(deadline=0)
    with pytest.raises(ValueError, match="execution_timeout must be > 0"):
        config(execution_timeout=-1.0)


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"budget": 0}, ValueError, "budget must be >= 1"),
        ({"budget": 1.5}, TypeError, "budget must be an int"),
        ({"max_rounds": 0}, ValueError, "max_rounds must be >= 1"),
        ({"task": ""}, ValueError, "task must be a non-empty str"),
        ({"task": 5}, TypeError, "task must be a str, got int"),
        ({"required": "code"}, TypeError, "collection of str"),
        (
            {"contractors": (ContractorInfo(2, "a", ()), ContractorInfo(2, "b", ()))},
            ValueError,
            "contractor nodes must be unique",
        ),
        ({"contractors": (ContractorInfo(LEDGER, "a", ()),)}, ValueError, "ledger node 1"),
    ],
)
def test_bad_config_fields_are_named(overrides: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        config(**overrides)


def test_bad_contractor_and_weights_are_named() -> None:
    with pytest.raises(ValueError, match=r"reputation must be in \[0, 1\], got 1.5"):
        ContractorInfo(2, "a", (), 1.5)
    with pytest.raises(ValueError, match="account must be a non-empty str"):
        ContractorInfo(2, "", ())
    with pytest.raises(ValueError, match="weight price must be a number >= 0"):
        Weights(price=-0.1)
    with pytest.raises(ValueError, match="must not all be 0"):
        Weights(0, 0, 0)


# ----------------------------------------------------------------- evaluation


def test_score_weighs_price_capability_and_reputation() -> None:
    w = Weights(price=0.5, capability=0.2, reputation=0.3)
    assert score(0, 10, {"a"}, set(), 1.0, w) == pytest.approx(1.0)
    assert score(10, 10, set(), {"a"}, 0.0, w) == 0.0
    assert score(5, 10, {"a"}, {"a", "b"}, 0.5, w) == pytest.approx(0.25 + 0.1 + 0.15)


def test_rank_breaks_ties_by_price_then_receipt_then_node() -> None:
    cfg = config(
        contractors=(
            ContractorInfo(2, "a2", {"code"}, 0.5),
            ContractorInfo(3, "a3", {"code"}, 0.5),
            ContractorInfo(4, "a4", {"code"}, 0.5),
        ),
        preferred=(),
        weights=Weights(price=0.0, capability=0.0, reputation=1.0),  # every score equal
    )
    ps = [Proposal(4, 5, 1), Proposal(3, 5, 2), Proposal(2, 3, 3)]
    assert [p.node for p in rank(ps, cfg)] == [2, 4, 3]  # lower price, then receipt
    same = [Proposal(4, 5, 1), Proposal(3, 5, 1)]
    assert [p.node for p in rank(same, cfg)] == [3, 4]  # then the lower node


def test_reputation_can_beat_a_lower_price() -> None:
    cfg = config(
        contractors=(
            ContractorInfo(C2, "acct2", {"code"}, 0.0),
            ContractorInfo(C3, "acct3", {"code"}, 1.0),
        ),
        preferred=(),
    )
    w = World(cfg)
    w.take()
    w.deliver(C2, Propose("t1", 1, 4))
    out = w.deliver(C3, Propose("t1", 1, 6))
    assert (C3, AcceptProposal("t1", 1, 6)) in out
    assert (C2, RejectProposal("t1", 1, "not_selected")) in out


# ----------------------------------------------------------------- the protocol


def test_happy_path_awards_the_best_and_pays_once() -> None:
    w = World()
    assert w.balance("buyer") == 90  # the budget is in escrow
    cfps = w.take()
    # C4 lacks the required capability: not invited
    assert sorted(to for to, _ in cfps) == [C2, C3]
    assert all(isinstance(m, CallForProposals) and m.round == 1 for _, m in cfps)
    assert w.deliver(C2, Propose("t1", 1, 5)) == []
    out = w.deliver(C3, Propose("t1", 1, 6))  # dearer but has the preferred "test"
    assert out == [(C3, AcceptProposal("t1", 1, 6)), (C2, RejectProposal("t1", 1, "not_selected"))]
    assert CancelTimer("deadline") in w.timers  # everyone answered: evaluated early
    assert w.core.state == "awarded"
    assert w.deliver(C3, InformDone("t1", 1, "ok")) == [(C3, Paid("t1", 1, 6))]
    assert w.core.state == "done"
    assert (w.balance("acct3"), w.balance("buyer")) == (6, 94)
    assert not w.ledger.ledger.holds()
    # a retried result is acknowledged again, not paid again
    assert w.deliver(C3, InformDone("t1", 1, "ok")) == [(C3, Paid("t1", 1, 6))]
    assert w.balance("acct3") == 6


@pytest.mark.parametrize(
    ("src", "price", "reason"),
    [
        (9, 3, "unknown_contractor"),
        (C2, -1, "bad_price"),
        (C2, "3", "bad_price"),
        (C2, True, "bad_price"),
        (C2, 11, "over_budget"),
        (C4, 3, "unqualified"),
        (C2, 3, None),
    ],
)
def test_bad_proposals_are_refused_with_a_reason(src: int, price: Any, reason: str | None) -> None:
    w = World()
    w.take()
    out = w.deliver(src, Propose("t1", 1, price))
    if reason is None:
        assert out == [] and C2 in w.core.proposals
    else:
        assert out == [(src, RejectProposal("t1", 1, reason))]
        assert w.core.proposals == {}


def test_a_late_proposal_is_refused() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    w.fire("deadline", 5.0)
    assert w.core.state == "awarded" and w.core.winner == C2
    assert w.deliver(C3, Propose("t1", 1, 1)) == [(C3, RejectProposal("t1", 1, "late"))]
    assert w.core.winner == C2


def test_a_second_different_proposal_is_a_duplicate_and_the_first_stands() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    assert w.deliver(C2, Propose("t1", 1, 2)) == [(C2, RejectProposal("t1", 1, "duplicate"))]
    assert w.core.proposals[C2].price == 5
    w.deliver(C3, Refuse("t1", 1))
    assert w.core.winner == C2 and w.core.price == 5


def test_a_timed_out_contractor_is_revoked_and_never_paid() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    w.deliver(C3, Refuse("t1", 1))
    assert w.core.winner == C2
    out = w.fire("execution", 26.0)
    assert (C2, Cancel("t1", 1)) in out
    # the revoked contractor is not invited again, and its proposals are refused
    assert [to for to, m in out if isinstance(m, CallForProposals) and m.round == 2] == [C3]
    assert w.deliver(C2, Propose("t1", 2, 1)) == [(C2, RejectProposal("t1", 2, "revoked"))]
    w.deliver(C3, Propose("t1", 2, 7))
    # the slow contractor of round 1 reports late: cancelled, not paid
    assert w.deliver(C2, InformDone("t1", 1)) == [(C2, Cancel("t1", 1))]
    w.fire("deadline", 31.0)
    assert w.core.winner == C3
    assert w.deliver(C3, InformDone("t1", 2)) == [(C3, Paid("t1", 2, 7))]
    assert (w.balance("acct2"), w.balance("acct3"), w.balance("buyer")) == (0, 7, 93)
    assert w.core.revoked == [(1, C2)]


def test_failures_past_max_rounds_fail_the_task_and_release_the_escrow() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    w.deliver(C3, Refuse("t1", 1))
    assert w.core.state == "awarded"
    w.deliver(C2, Failure("t1", 1, "disk full"))
    w.take()
    w.deliver(C3, Propose("t1", 2, 9))  # C3, the only one invited, is awarded at once
    assert w.core.state == "awarded" and w.core.winner == C3
    w.deliver(C3, Failure("t1", 2, "disk full"))
    assert w.core.state == "failed" and w.core.reason == "failure"
    assert w.balance("buyer") == 100 and not w.ledger.ledger.holds()
    assert w.core.revoked == [(1, C2), (2, C3)]
    assert w.deliver(C2, InformDone("t1", 2)) == [(C2, Cancel("t1", 2))]
    assert w.balance("acct2") == 0


def test_a_round_without_proposals_is_re_announced() -> None:
    w = World()
    w.take()
    out = w.fire("deadline", 5.0)
    assert w.core.round == 2 and {m.round for _, m in out} == {2}
    w.fire("deadline", 10.0)
    assert w.core.state == "failed" and w.core.reason == "no_proposal"
    assert w.balance("buyer") == 100


def test_an_unfunded_buyer_fails_before_any_call() -> None:
    w = World(funds=3)
    assert w.take() == []
    assert w.core.state == "failed" and w.core.reason == "insufficient_funds"


def test_a_restart_keeps_the_deadline_and_the_award() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    fresh = Manager(w.cfg)
    fresh.restore(w.core.snapshot_persistent())
    effects = fresh.on_start(3.0, random.Random(0))
    assert SetTimer("deadline", 2.0) in effects  # 5 s from the first start, not from now
    resent = [e.to for e in effects if isinstance(e, Send)]
    assert resent == [C3]  # only the contractor that has not answered
    w.core = fresh
    w.deliver(C3, Refuse("t1", 1))
    assert fresh.winner == C2
    again = Manager(w.cfg)
    again.restore(fresh.snapshot_persistent())
    effects = again.on_start(10.0, random.Random(0))
    assert Send(C2, AcceptProposal("t1", 1, 5)) in effects
    assert SetTimer("execution", 11.0) in effects  # awarded at 1.0, timeout 20 s


def test_a_settle_re_sent_after_a_restart_is_not_a_refusal() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    w.deliver(C3, Refuse("t1", 1))
    before = w.core.snapshot_persistent()
    w.deliver(C2, InformDone("t1", 1))
    snap = w.core.snapshot_persistent()
    assert snap != before
    fresh = Manager(w.cfg)
    fresh.restore(snap)
    fresh._unanswered["settle"] = w.ledger_log[-1][0]  # as if the answer was lost
    w.core = fresh
    w.run(fresh.on_start(30.0, random.Random(0)))
    assert fresh.state == "done" and fresh.reason == ""
    assert w.balance("acct2") == 5


def test_status_and_unknown_ops() -> None:
    w = World()
    (reply,) = w.core.on_client(0.0, ClientRequest("c", "status"))
    assert reply.value == ("cfp", 1, None, 0, "")
    (reply,) = w.core.on_client(0.0, ClientRequest("c", "nope"))
    assert not reply.ok and "unknown op 'nope'" in reply.value


def test_contractors_from_registry_rows() -> None:
    rows = [(2, "a2", ["code"]), (3, "a3", ("plan",))]
    infos = contractors_from(rows, {3: 0.9})
    assert infos == (ContractorInfo(2, "a2", {"code"}, 0.5), ContractorInfo(3, "a3", {"plan"}, 0.9))


def test_a_restart_while_escrowing_re_sends_the_same_hold() -> None:
    cfg = config()
    core = Manager(cfg)
    (persist, send) = core.on_start(0.0, random.Random(0))
    assert isinstance(persist, Persist) and isinstance(send, Send) and send.to == LEDGER
    fresh = Manager(cfg)
    fresh.restore(core.snapshot_persistent())
    effects = fresh.on_start(1.0, random.Random(0))
    assert [e for e in effects if isinstance(e, Send)] == [send]  # the ledger sees a retry


def test_a_duplicated_hold_answer_does_not_announce_twice() -> None:
    w = World()
    w.take()
    hold, result = next((c, r) for c, r in w.ledger_log if type(c).__name__ == "Hold")
    from trio_foundation.protocols.auction import LedgerAnswer

    assert w.core.on_message(2.0, LEDGER, LedgerAnswer(hold, result)) == []
    assert w.core.round == 1


def test_an_uninvited_refusal_does_not_close_the_round_early() -> None:
    w = World()
    w.take()
    w.deliver(C4, Refuse("t1", 1))  # C4 lacks "code": not invited
    w.deliver(C2, Propose("t1", 1, 5))
    assert w.core.state == "cfp"  # still waiting for C3
    w.deliver(C3, Refuse("t1", 1))
    assert w.core.state == "awarded" and w.core.winner == C2


def test_messages_of_another_task_are_ignored() -> None:
    w = World()
    w.take()
    assert w.deliver(C2, Propose("other", 1, 5)) == []
    assert w.deliver(C2, "garbage") == []
    assert w.core.proposals == {}


def test_a_task_id_with_a_slash_is_refused() -> None:
    """Task "t/1" round 2 and auction "t" bidder 1 receipt 2 would share hold id "t/1/2"."""
    with pytest.raises(ValueError, match="task must not contain '/'"):
        config(task="t/1")
