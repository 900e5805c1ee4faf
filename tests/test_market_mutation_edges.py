"""coordination/market.py: registration, defaults, busy contractors and a caller that leaves
(mutation survivors).

Under trio's autojump clock, as ``tests/test_market.py``; each test runs under a
``fail_after`` so an allocation that never ends fails the test instead of
hanging it.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_foundation.coordination.market import Market
from trio_foundation.protocols.contract_net import CallForProposals, Weights
from trio_foundation.protocols.ledger import Ledger, Mint, Open
from trio_foundation.protocols.reputation import Reputation
from trio_foundation.registry import Index, Registry


def _market(**kwargs: Any) -> Market:
    ledger = Ledger()
    ledger.apply(Open("buyer"))
    ledger.apply(Mint("treasury", "buyer", 100))
    registry = Registry(indexes=[Index("capabilities", multi=True), Index("account")])
    return Market(registry, ledger, **kwargs)


def _price(price: int | None) -> Any:
    async def propose(cfp: CallForProposals) -> int | None:
        await trio.lowlevel.checkpoint()
        return price

    return propose


async def _serve(
    nursery: trio.Nursery, market: Market, name: str, price: int | None, perform: Any, **kw: Any
) -> None:
    caps = kw.pop("capabilities", {"code"})
    await nursery.start(
        lambda task_status: market.serve_contractor(
            name,
            capabilities=caps,
            account=f"acct-{name}",
            propose=_price(price),
            perform=perform,
            task_status=task_status,
        )
    )


def test_the_defaults_and_the_given_reputation() -> None:
    given = Reputation(60.0)
    assert _market(reputation=given).reputation is given
    default = _market().reputation
    assert isinstance(default, Reputation)
    assert default.half_life == 3600.0


@pytest.mark.parametrize("field", ["mailbox_size", "max_jobs"])
@pytest.mark.parametrize("bad", [True, 0, -1, 2.0])
def test_bounds_are_ints_at_least_one(field: str, bad: object) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must be an int >= 1, got {bad!r}$"):
        _market(**{field: bad})


async def test_a_contractor_is_registered_with_its_capabilities_and_account(
    autojump_clock: Any,
) -> None:
    market = _market()

    async def perform(payload: Any) -> Any:
        return payload

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await _serve(nursery, market, "w", 1, perform, capabilities={"code", "plan"})
            (entry,) = market.registry.select(all_of={"capabilities": "plan"}).entries
            assert entry.key == "w"
            assert dict(entry.meta) == {
                "capabilities": frozenset({"code", "plan"}),
                "account": "acct-w",
            }
            assert market.registry.select(all_of={"account": "acct-w"}).entries == (entry,)
            nursery.cancel_scope.cancel()
    assert len(market.registry) == 0


async def test_an_award_beyond_max_jobs_is_answered_busy_at_once(autojump_clock: Any) -> None:
    market = _market(max_jobs=1)
    release = trio.Event()

    async def perform(payload: Any) -> Any:
        if payload == "long":
            await release.wait()
        return payload

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await _serve(nursery, market, "solo", 2, perform)
            long_job: list[Any] = []

            async def first() -> None:
                long_job.append(
                    await market.allocate(
                        "long", budget=5, buyer="buyer", deadline=1.0, execution_timeout=500.0
                    )
                )

            nursery.start_soon(first)
            await trio.sleep(5.0)  # "long" is awarded and running
            start = trio.current_time()
            busy = await market.allocate(
                "short", budget=5, buyer="buyer", deadline=1.0, execution_timeout=100.0,
                max_rounds=1,
            )  # fmt: skip
            # refused by the busy contractor at once, not revoked after 100 s
            assert (busy.state, busy.reason, busy.rounds) == ("failed", "failure", 1)
            assert trio.current_time() - start < 10.0
            release.set()
            await trio.sleep(1.0)
            assert long_job[0].state == "done" and long_job[0].result == "long"
            nursery.cancel_scope.cancel()


async def test_a_caller_that_leaves_cancels_the_awarded_job(autojump_clock: Any) -> None:
    market = _market()
    cancelled = trio.Event()

    async def perform(payload: Any) -> Any:
        try:
            await trio.sleep(1000.0)
        except trio.Cancelled:
            cancelled.set()
            raise
        return payload

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await _serve(nursery, market, "w", 3, perform)
            with trio.move_on_after(5.0):
                await market.allocate(
                    "job", budget=10, buyer="buyer", deadline=1.0, execution_timeout=900.0
                )
            await trio.sleep(1.0)
            assert cancelled.is_set()  # the Cancel reached the contractor and stopped the job
            assert market.statistics().abandoned == 1
            nursery.cancel_scope.cancel()


async def test_the_given_weights_decide_the_winner(autojump_clock: Any) -> None:
    market = _market(reputation=Reputation(600.0))

    async def perform(payload: Any) -> Any:
        return payload

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await _serve(nursery, market, "cheap", 2, perform)
            await _serve(nursery, market, "skilled", 9, perform, capabilities={"code", "gpu"})
            by_default = await market.allocate(
                "a", budget=10, buyer="buyer", deadline=1.0, execution_timeout=5.0,
                preferred={"gpu"},
            )  # fmt: skip
            by_capability = await market.allocate(
                "b", budget=10, buyer="buyer", deadline=1.0, execution_timeout=5.0,
                preferred={"gpu"}, weights=Weights(price=0.0, capability=1.0, reputation=0.0),
            )  # fmt: skip
            nursery.cancel_scope.cancel()
    assert by_default.winner == "cheap"
    assert by_capability.winner == "skilled"


async def test_contractors_lists_only_this_markets_seats(autojump_clock: Any) -> None:
    """Markets may share a registry with each other and with other entries."""
    ledger = Ledger()
    registry = Registry(indexes=[Index("capabilities", multi=True), Index("account")])
    mine, other = Market(registry, ledger), Market(registry, ledger)

    async def perform(payload: Any) -> Any:
        return payload

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await _serve(nursery, mine, "a", 1, perform)
            await _serve(nursery, other, "b", 1, perform)
            async with registry.register("c", {"account": "acct-c"}, value="not a seat"):
                assert [c.account for c in mine.contractors()] == ["acct-a"]
                assert [c.account for c in other.contractors()] == ["acct-b"]
            nursery.cancel_scope.cancel()


async def test_time_to_award_and_elapsed_count_from_the_call(autojump_clock: Any) -> None:
    """On trio's clock, from the call (not from 0): the award when the one invited
    contractor's proposal arrives, 0.4 s in; the result 2 s of work later."""
    market = _market()

    async def propose(cfp: CallForProposals) -> int | None:
        await trio.sleep(0.4)
        return 3

    async def perform(payload: Any) -> Any:
        await trio.sleep(2.0)
        return payload

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: market.serve_contractor(
                    "w",
                    capabilities={"code"},
                    account="acct-w",
                    propose=propose,
                    perform=perform,
                    task_status=task_status,
                )
            )
            await trio.sleep(100.0)
            done = await market.allocate(
                "job", budget=5, buyer="buyer", deadline=1.0, execution_timeout=50.0
            )
            nursery.cancel_scope.cancel()
    assert (done.state, done.winner, done.price, done.result) == ("done", "w", 3, "job")
    assert done.time_to_award == pytest.approx(0.4)
    assert done.elapsed == pytest.approx(2.4)


async def test_tasks_are_named_in_order_and_a_refusal_ends_the_round_at_once(
    autojump_clock: Any,
) -> None:
    """Unnamed tasks are ``task-1``, ``task-2``, ...; a contractor that refuses (its
    propose returns None) answers at once, so the round does not wait for its deadline."""
    market = _market()

    async def perform(payload: Any) -> Any:
        return payload

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await _serve(nursery, market, "no", None, perform)
            start = trio.current_time()
            refused = await market.allocate(
                "x", budget=5, buyer="buyer", deadline=1.0, execution_timeout=5.0, max_rounds=1
            )
            assert trio.current_time() - start < 1.0  # before the 1 s deadline
            await _serve(nursery, market, "yes", 2, perform)
            done = await market.allocate(
                "y", budget=5, buyer="buyer", deadline=1.0, execution_timeout=5.0
            )
            nursery.cancel_scope.cancel()
    assert (refused.task, refused.state, refused.reason) == ("task-1", "failed", "no_proposal")
    assert (done.task, done.state, done.winner) == ("task-2", "done", "yes")


async def test_a_task_id_in_use_is_refused_by_name(autojump_clock: Any) -> None:
    market = _market()
    release = trio.Event()

    async def perform(payload: Any) -> Any:
        await release.wait()
        return payload

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await _serve(nursery, market, "w", 2, perform)

            async def first() -> None:
                await market.allocate(
                    "a", budget=5, buyer="buyer", deadline=1.0, execution_timeout=50.0, task="t"
                )

            nursery.start_soon(first)
            await trio.sleep(2.0)
            with pytest.raises(ValueError, match=r"^task 't' is already being allocated$"):
                await market.allocate(
                    "b", budget=5, buyer="buyer", deadline=1.0, execution_timeout=5.0, task="t"
                )
            with pytest.raises(ValueError, match=r"^task 't' is already being allocated$"):
                await market.auction(
                    "b", seller="buyer", deadline=1.0, execution_timeout=5.0, task="t"
                )
            release.set()
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()
