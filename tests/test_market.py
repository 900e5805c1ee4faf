"""coordination/market.py: contract-net allocation among registered contractors (Trio)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.coordination.market import Market
from trio_foundation.protocols.contract_net import CallForProposals
from trio_foundation.protocols.ledger import Ledger, Mint, Open
from trio_foundation.protocols.reputation import Reputation
from trio_foundation.registry import Index, Registry


def make_market(funds: int = 100) -> Market:
    ledger = Ledger()
    ledger.apply(Open("buyer"))
    if funds:
        ledger.apply(Mint("treasury", "buyer", funds))
    registry = Registry(indexes=[Index("capabilities", multi=True)])
    return Market(registry, ledger, reputation=Reputation(600.0))


def fixed(price: int | None, delay: float = 0.0) -> Any:
    async def propose(cfp: CallForProposals) -> int | None:
        await trio.sleep(delay)
        return price

    return propose


def work(seconds: float, result: Any = "ok", fail: bool = False) -> Any:
    async def perform(payload: Any) -> Any:
        await trio.sleep(seconds)
        if fail:
            raise RuntimeError("broken tool")
        return (result, payload)

    return perform


def conserved(market: Market) -> None:
    ledger = market.ledger
    total = sum(ledger.balances().values()) + sum(n for _, n in ledger.holds().values())
    assert total == ledger.supply
    assert not ledger.holds()


async def test_the_best_proposal_is_awarded_paid_and_reputed(autojump_clock: Any) -> None:
    market = make_market()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: market.serve_contractor(
                "cheap", capabilities={"code"}, account="a-cheap", propose=fixed(3),
                perform=work(1.0), task_status=task_status,
            )
        )  # fmt: skip
        await nursery.start(
            lambda task_status: market.serve_contractor(
                "dear", capabilities={"code"}, account="a-dear", propose=fixed(8),
                perform=work(1.0), task_status=task_status,
            )
        )  # fmt: skip
        await nursery.start(
            lambda task_status: market.serve_contractor(
                "planner", capabilities={"plan"}, account="a-plan", propose=fixed(0),
                perform=work(1.0), task_status=task_status,
            )
        )  # fmt: skip
        assert len(market.registry) == 3
        outcome = await market.allocate(
            "job", budget=10, buyer="buyer", deadline=2.0, execution_timeout=5.0,
            required={"code"},
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert outcome.state == "done" and outcome.winner == "cheap" and outcome.price == 3
    assert outcome.result == ("ok", "job") and outcome.rounds == 1
    assert outcome.time_to_award == 0.0  # every invited contractor answered at once
    assert outcome.elapsed == pytest.approx(1.0)
    assert market.ledger.balance("a-cheap") == 3 and market.ledger.balance("buyer") == 97
    assert market.reputation.score("cheap", trio.current_time()) > 0.5
    stats = market.statistics()
    assert (stats.allocated, stats.credits_paid, stats.contractors, stats.active) == (1, 3, 0, 0)
    conserved(market)


async def test_a_crashed_contractors_task_is_re_announced(autojump_clock: Any) -> None:
    market = make_market()
    async with trio.open_nursery() as nursery:
        crashing = trio.CancelScope()

        async def crasher(task_status: trio.TaskStatus[None]) -> None:
            with crashing:
                await market.serve_contractor(
                    "crasher", capabilities={"code"}, account="a-crash", propose=fixed(1),
                    perform=work(100.0), task_status=task_status,
                )  # fmt: skip

        await nursery.start(crasher)
        await nursery.start(
            lambda task_status: market.serve_contractor(
                "steady", capabilities={"code"}, account="a-steady", propose=fixed(6),
                perform=work(1.0), task_status=task_status,
            )
        )  # fmt: skip

        async def crash_soon() -> None:
            await trio.sleep(0.5)  # the crasher holds the award: it dies
            crashing.cancel()

        nursery.start_soon(crash_soon)
        outcome = await market.allocate(
            "job", budget=10, buyer="buyer", deadline=2.0, execution_timeout=5.0,
            required={"code"},
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert outcome.state == "done" and outcome.winner == "steady" and outcome.rounds == 2
    assert market.ledger.balance("a-crash") == 0 and market.ledger.balance("a-steady") == 6
    now = trio.current_time()
    assert market.reputation.score("crasher", now) < 0.5 < market.reputation.score("steady", now)
    conserved(market)


async def test_failures_past_max_rounds_release_the_escrow(autojump_clock: Any) -> None:
    market = make_market()
    async with trio.open_nursery() as nursery:
        for name in ("broken", "wrecked"):
            await nursery.start(
                lambda task_status, name=name: market.serve_contractor(
                    name, capabilities={"code"}, account=name, propose=fixed(2),
                    perform=work(0.1, fail=True), task_status=task_status,
                )
            )  # fmt: skip
        outcome = await market.allocate(
            "job", budget=10, buyer="buyer", deadline=1.0, execution_timeout=5.0, max_rounds=2
        )
        nursery.cancel_scope.cancel()
    assert outcome.state == "failed" and outcome.reason == "failure" and outcome.rounds == 2
    assert outcome.winner is None and outcome.price == 0
    assert market.ledger.balance("buyer") == 100
    assert market.statistics().failed == 1
    conserved(market)


async def test_no_contractor_and_no_funds_fail_cleanly(autojump_clock: Any) -> None:
    market = make_market(funds=5)
    outcome = await market.allocate(
        "job", budget=10, buyer="buyer", deadline=1.0, execution_timeout=1.0
    )
    assert outcome.state == "failed" and outcome.reason == "insufficient_funds"
    market.ledger.apply(Mint("treasury", "buyer", 100))
    outcome = await market.allocate(
        "job", budget=10, buyer="buyer", deadline=1.0, execution_timeout=1.0
    )
    assert outcome.state == "failed" and outcome.reason == "no_proposal"
    conserved(market)


async def test_bad_input_is_refused_by_name() -> None:
    market = make_market()
    with pytest.raises(ValueError, match="deadline is required"):
        await market.allocate("x", budget=5, buyer="buyer", deadline=None, execution_timeout=1)
    with pytest.raises(ValueError, match="budget must be >= 1"):
        await market.allocate("x", budget=-1, buyer="buyer", deadline=1, execution_timeout=1)
    with pytest.raises(ValueError, match="account must be a non-empty str"):
        await market.serve_contractor(
            "a", capabilities=(), account="", propose=fixed(1), perform=work(1)
        )
    with pytest.raises(TypeError, match="collection of str"):
        await market.serve_contractor(
            "a", capabilities="code", account="x", propose=fixed(1), perform=work(1)
        )
    with pytest.raises(ValueError, match="mailbox_size must be an int >= 1"):
        Market(market.registry, market.ledger, mailbox_size=0)
    assert market.statistics().active == 0


async def test_a_caller_that_leaves_holds_nothing(autojump_clock: Any) -> None:
    market = make_market()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: market.serve_contractor(
                "slow", capabilities={"code"}, account="a-slow", propose=fixed(4),
                perform=work(50.0), task_status=task_status,
            )
        )  # fmt: skip
        with trio.move_on_after(3.0):
            await market.allocate(
                "job", budget=10, buyer="buyer", deadline=1.0, execution_timeout=100.0
            )
        assert market.ledger.balance("buyer") == 100 and not market.ledger.holds()
        await trio.sleep(0.1)
        stats = market.statistics()
        assert (stats.abandoned, stats.active, stats.allocated) == (1, 0, 0)
        nursery.cancel_scope.cancel()
    conserved(market)


async def test_a_duplicate_running_task_id_is_refused(autojump_clock: Any) -> None:
    market = make_market()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: market.serve_contractor(
                "w", capabilities={"code"}, account="a-w", propose=fixed(1, delay=1.0),
                perform=work(1.0), task_status=task_status,
            )
        )  # fmt: skip

        async def first() -> None:
            await market.allocate(
                "a", budget=5, buyer="buyer", deadline=5.0, execution_timeout=5.0, task="t"
            )

        nursery.start_soon(first)
        await trio.sleep(0.5)
        with pytest.raises(ValueError, match="task 't' is already being allocated"):
            await market.allocate(
                "b", budget=5, buyer="buyer", deadline=5.0, execution_timeout=5.0, task="t"
            )
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert market.statistics().allocated == 1
    conserved(market)


async def test_contract_net_refusal_reasons_are_visible(autojump_clock: Any) -> None:
    market = make_market()
    async with trio.open_nursery() as nursery:
        for name, price in (("cheap", 3), ("dear", 50), ("close", 4), ("bad", -2)):
            await nursery.start(
                lambda task_status, name=name, price=price: market.serve_contractor(
                    name, capabilities={"code"}, account=name, propose=fixed(price),
                    perform=work(1.0), task_status=task_status,
                )
            )  # fmt: skip
        outcome = await market.allocate(
            "job", budget=10, buyer="buyer", deadline=2.0, execution_timeout=5.0
        )
        nursery.cancel_scope.cancel()
    assert outcome.winner == "cheap" and outcome.method == "contract_net"
    assert outcome.refused == {"dear": "over_budget", "close": "not_selected", "bad": "bad_price"}
    conserved(market)
