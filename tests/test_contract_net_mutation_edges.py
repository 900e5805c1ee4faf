"""Exact edges of the contract-net manager (protocols/contract_net.py) that the
mutation run of ``protocols/`` found unchecked."""

from __future__ import annotations

import random
import re

import pytest
from tests.test_contract_net import C2, C3, C4, World, config

from trio_foundation.protocols.contract_net import (
    AcceptProposal,
    Cancel,
    ContractorInfo,
    InformDone,
    Manager,
    Paid,
    Propose,
    Refuse,
    RejectProposal,
    Weights,
    contractors_from,
)
from trio_foundation.protocols.effects import ClientRequest, Reply, Send, SetTimer
from trio_foundation.protocols.ledger import Ok, Release


@pytest.mark.parametrize(
    "weights", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 2.0, 1.0)]
)
def test_any_one_positive_weight_is_enough(weights: tuple[float, float, float]) -> None:
    w = Weights(*weights)
    assert (w.price, w.capability, w.reputation) == weights


def test_all_weights_zero_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^the weights must not all be 0$"):
        Weights(0.0, 0.0, 0.0)


def test_an_empty_capability_is_refused_naming_every_capability() -> None:
    with pytest.raises(
        TypeError, match=re.escape("""capabilities must be non-empty strs, got ["''", "'x'"]""")
    ):
        contractors_from([(2, "acct2", ["x", ""])])


def test_equal_offers_go_to_the_earlier_proposal_not_the_lower_node() -> None:
    cfg = config(
        contractors=(
            ContractorInfo(C2, "acct2", {"code"}, 0.5),
            ContractorInfo(C3, "acct3", {"code"}, 0.5),
        ),
        preferred=(),
    )
    w = World(cfg)
    w.take()
    assert w.deliver(C3, Propose("t1", 1, 5)) == []
    out = w.deliver(C2, Propose("t1", 1, 5))
    assert [p.receipt for p in (w.core.proposals[C3], w.core.proposals[C2])] == [1, 2]
    assert out == [
        (C3, AcceptProposal("t1", 1, 5)),
        (C2, RejectProposal("t1", 1, "not_selected")),
    ]


def test_a_re_announced_round_persists_no_execution_deadline() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    w.deliver(C3, Refuse("t1", 1))
    assert w.core.snapshot_persistent()[9] == 21.0  # awarded at 1.0, timeout 20 s
    w.fire("execution", 21.0)
    assert (w.core.state, w.core.round) == ("cfp", 2)
    assert w.core.snapshot_persistent()[9] is None


def test_an_answered_settle_is_persisted_and_not_re_sent_after_a_restart() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    w.deliver(C3, Refuse("t1", 1))
    w.deliver(C2, InformDone("t1", 1))
    snap = w.core.snapshot_persistent()
    assert (snap[0], snap[-1]) == ("done", ())  # nothing left for the ledger to answer
    fresh = Manager(w.cfg)
    fresh.restore(snap)
    assert [e for e in fresh.on_start(30.0, random.Random(0)) if isinstance(e, Send)] == []


def test_a_settlement_the_ledger_refuses_releases_the_escrow_to_the_buyer() -> None:
    cfg = config(
        contractors=(ContractorInfo(C2, "closed-account", {"code"}, 0.5),),
        preferred=(),
    )
    w = World(cfg)
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    assert w.core.winner == C2
    assert w.deliver(C2, InformDone("t1", 1)) == [(C2, Paid("t1", 1, 5))]
    assert w.core.reason == "settlement refused: unknown_account"
    assert [type(c).__name__ for c, _ in w.ledger_log] == ["Hold", "Settle", "Release"]
    release, result = w.ledger_log[-1]
    assert release == Release("t1") and isinstance(result, Ok)
    assert w.balance("buyer") == 100 and not w.ledger.ledger.holds()
    assert w.core.snapshot_persistent()[-1] == ()


def test_a_proposal_at_exactly_the_budget_is_valid() -> None:
    w = World()
    w.take()
    assert w.deliver(C2, Propose("t1", 1, 10)) == []  # budget 10
    assert w.core.proposals[C2].price == 10


@pytest.mark.parametrize(
    ("field", "value", "error", "text"),
    [
        ("budget", "10", TypeError, "budget must be an int, got str"),
        ("budget", 0, ValueError, "budget must be >= 1, got 0"),
        ("max_rounds", True, TypeError, "max_rounds must be an int, got bool"),
    ],
)
def test_bad_int_fields_are_named_with_their_type(
    field: str, value: object, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(text)}$"):
        config(**{field: value})


def test_a_restart_after_the_deadline_passed_fires_it_at_once() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    fresh = Manager(w.cfg)
    fresh.restore(w.core.snapshot_persistent())
    assert SetTimer("deadline", 0.0) in fresh.on_start(9.0, random.Random(0))  # due at 5.0


def test_a_restart_after_the_execution_timeout_passed_fires_it_at_once() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    w.deliver(C3, Refuse("t1", 1))
    assert w.core.state == "awarded"
    fresh = Manager(w.cfg)
    fresh.restore(w.core.snapshot_persistent())
    assert SetTimer("execution", 0.0) in fresh.on_start(40.0, random.Random(0))  # due at 21.0


def test_an_answered_release_is_persisted_and_not_re_sent_after_a_restart() -> None:
    w = World()
    w.take()
    w.fire("deadline", 5.0)
    w.fire("deadline", 10.0)  # two rounds without a proposal: failed, escrow released
    assert (w.core.state, w.core.reason) == ("failed", "no_proposal")
    assert w.balance("buyer") == 100
    snap = w.core.snapshot_persistent()
    assert snap[-1] == ()
    fresh = Manager(w.cfg)
    fresh.restore(snap)
    assert [e for e in fresh.on_start(30.0, random.Random(0)) if isinstance(e, Send)] == []


def test_a_refusal_then_a_proposal_is_a_duplicate() -> None:
    w = World()
    w.take()
    w.deliver(C2, Refuse("t1", 1))
    assert w.deliver(C2, Propose("t1", 1, 5)) == [(C2, RejectProposal("t1", 1, "duplicate"))]


def test_a_repeated_refusal_does_not_close_the_round_early() -> None:
    w = World()
    w.take()
    w.deliver(C2, Refuse("t1", 1))
    assert w.deliver(C2, Refuse("t1", 1)) == []
    assert (w.core.state, w.core.round) == ("cfp", 1)  # still waiting for C3


def test_a_deadline_and_an_execution_timeout_below_one_second_are_accepted() -> None:
    c = config(deadline=0.5, execution_timeout=0.25)
    assert (c.deadline, c.execution_timeout) == (0.5, 0.25)
    with pytest.raises(ValueError, match=r"^deadline must be > 0 seconds and finite, got 0$"):
        config(deadline=0)


@pytest.mark.parametrize(
    ("fields", "error", "text"),
    [
        ({"account": ""}, ValueError, "account must be a non-empty str, got ''"),
        ({"reputation": 1.5}, ValueError, "reputation must be in [0, 1], got 1.5"),
        ({"reputation": True}, ValueError, "reputation must be in [0, 1], got True"),
        (
            {"capabilities": "code"},
            TypeError,
            "capabilities must be a collection of str, got the str 'code'",
        ),
    ],
)
def test_a_bad_contractor_is_named(
    fields: dict[str, object], error: type[Exception], text: str
) -> None:
    args: dict[str, object] = {"node": 2, "account": "acct2", "capabilities": {"code"}, **fields}
    with pytest.raises(error, match=f"^{re.escape(text)}$"):
        ContractorInfo(**args)  # type: ignore[arg-type]


def test_reputation_bounds_are_accepted() -> None:
    assert ContractorInfo(2, "a", {"x"}, 0).reputation == 0
    assert ContractorInfo(2, "a", {"x"}, 1).reputation == 1


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"buyer": ""}, "buyer must be a non-empty str, got ''"),
        ({"task": ""}, "task must be a non-empty str, got ''"),
        ({"budget": 0}, "budget must be >= 1, got 0"),
        ({"deadline": None}, "deadline is required: a call for proposals without one is refused"),
    ],
)
def test_a_bad_task_is_named(fields: dict[str, object], text: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
        config(**fields)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"deadline": 0}, "deadline must be > 0 seconds and finite, got 0"),
        (
            {"execution_timeout": float("inf")},
            "execution_timeout must be > 0 seconds and finite, got inf",
        ),
    ],
)
def test_a_bad_duration_is_named(fields: dict[str, object], text: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
        config(**fields)


@pytest.mark.parametrize("name", ["price", "capability", "reputation"])
def test_a_negative_weight_is_named(name: str) -> None:
    args = {"price": 1.0, "capability": 1.0, "reputation": 1.0, name: -1.0}
    with pytest.raises(ValueError, match=f"^weight {name} must be a number >= 0, got -1.0$"):
        Weights(**args)


def test_the_lowest_bounds_are_accepted() -> None:
    c = config(budget=1, max_rounds=1)
    assert (c.budget, c.max_rounds) == (1, 1)
    assert ContractorInfo(0, "acct0", {"code"}).node == 0


def test_a_refusal_from_a_contractor_never_invited_is_not_counted() -> None:
    w = World()
    w.take()
    before = w.core.snapshot_persistent()
    # C4 lacks "code": not invited; its refusal changes nothing, not even the durable state
    assert w.core.on_message(1.0, C4, Refuse("t1", 1)) == []
    assert w.core.snapshot_persistent() == before
    assert w.deliver(C2, Propose("t1", 1, 5)) == []  # C3 has not answered yet
    assert (w.core.state, w.core.winner) == ("cfp", None)


def test_a_result_for_another_round_is_cancelled_and_not_settled() -> None:
    w = World()
    w.take()
    w.deliver(C2, Propose("t1", 1, 5))
    w.deliver(C3, Refuse("t1", 1))
    assert (w.core.state, w.core.winner) == ("awarded", C2)
    assert w.deliver(C2, InformDone("t1", 2)) == [(C2, Cancel("t1", 2))]
    assert w.core.state == "awarded" and w.balance("acct2") == 0
    assert w.deliver(C2, InformDone("t1", 1)) == [(C2, Paid("t1", 1, 5))]
    assert w.deliver(C2, InformDone("t1", 2)) == [(C2, Cancel("t1", 2))]
    assert w.balance("acct2") == 5  # paid once


def test_an_unknown_client_op_is_refused_to_the_asking_client() -> None:
    w = World()
    assert w.core.on_client(0.0, ClientRequest("c9", "award")) == [
        Reply("c9", "unknown op 'award'", ok=False)
    ]


def test_a_fresh_manager_reports_no_winner_and_no_price() -> None:
    manager = Manager(config())
    assert manager.on_client(0.0, ClientRequest("s", "status")) == [
        Reply("s", ("escrowing", 0, None, 0, ""))
    ]


def test_a_timer_of_another_state_does_nothing() -> None:
    w = World()
    w.take()
    assert w.core.on_timer(1.0, "execution") == []  # in cfp: no award to revoke
    w.deliver(C2, Propose("t1", 1, 5))
    w.deliver(C3, Refuse("t1", 1))
    assert w.core.state == "awarded"
    assert w.core.on_timer(5.0, "deadline") == []  # the round was evaluated already
    assert (w.core.state, w.core.winner) == ("awarded", C2)
